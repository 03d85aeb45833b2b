"""Shared fixtures. Per-area fixtures live in the test modules that need them."""

from __future__ import annotations

import os

from hypothesis import settings

# CI gets more examples; local runs stay quick.
settings.register_profile("ci", max_examples=200, deadline=None)
settings.register_profile("dev", max_examples=60, deadline=None)
settings.load_profile("ci" if os.environ.get("CI") else "dev")
