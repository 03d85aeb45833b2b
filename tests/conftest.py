"""Shared fixtures. Per-area fixtures live in the test modules that need them."""

from __future__ import annotations

import inspect
import os
import types
from collections.abc import Iterator
from typing import Any

import aiohttp
import pytest
from aioresponses import aioresponses
from aioresponses import core as aioresponses_core
from hypothesis import settings
from yarl import URL

# CI gets more examples; local runs stay quick.
settings.register_profile("ci", max_examples=200, deadline=None)
settings.register_profile("dev", max_examples=60, deadline=None)
settings.load_profile("ci" if os.environ.get("CI") else "dev")


class _CompatResponse(aiohttp.ClientResponse):
    """aioresponses 0.7.9 does not pass aiohttp 3.14's new ``stream_writer`` argument."""

    def __init__(self, method: str, url: URL, **kwargs: Any) -> None:
        kwargs.setdefault("stream_writer", types.SimpleNamespace(output_size=0))
        super().__init__(method, url, **kwargs)


@pytest.fixture
def mocked(monkeypatch: pytest.MonkeyPatch) -> Iterator[aioresponses]:
    """aioresponses, patched to work with the installed aiohttp."""
    if "stream_writer" in inspect.signature(aiohttp.ClientResponse.__init__).parameters:
        monkeypatch.setattr(aioresponses_core, "ClientResponse", _CompatResponse)
    with aioresponses() as m:
        yield m
