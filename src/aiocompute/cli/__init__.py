"""The ``aiocompute`` command: ``main(argv) -> exit code`` (see ``aiocompute --help``)."""

from __future__ import annotations

from ._app import main

__all__ = ["main"]
