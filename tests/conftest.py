"""Shared fixtures. Per-area fixtures live in the test modules that need them; shared
constants and helpers (quick policies, building emulators, virtual time, Ctrl-C) in ``helpers.py``.

Emulators:

- ``emulator``: a factory, ``await emulator(seed=..., workbench=...)``, for a started
  :class:`Emulator` (arguments as :func:`helpers.make_emulator`), stopped after the test;
- ``emu``: one such emulator, set up by the nearest ``@pytest.mark.emulator(...)`` mark
  (same arguments; a module sets its own with ``pytestmark = pytest.mark.emulator(...)``);
- ``threaded_emulator``: one emulator per module, served by its own event-loop thread, for
  sync code (the sync twins) and other processes; set up by the module's ``emulator`` mark;
- ``command_emulator``: one emulator per module on a virtual clock, for the CLI's ``main()``:
  in a test that takes it, ``asyncio.run`` (which ``main()`` calls) runs on the emulator's
  loop, so a command's waits and the emulator's timings take no real time.

Virtual time: ``@pytest.mark.virtual_time`` (or a module's ``pytestmark``) runs an async test,
its async fixtures and the emulators they start on a :class:`helpers.VirtualTimeLoop`, where
time moves only when every task waits: a test of a 2 s launch takes no 2 s. A test that
hands work to a thread of its own (a sync client) opts out with ``virtual_time(False)``.

Ctrl-C: with ``@pytest.mark.usefixtures("interruptible")``, SIGINT raises KeyboardInterrupt
during the test, in pytest and in the processes it starts, even if pytest's parent ignores
SIGINT (``nohup``, ``trap "" INT``, some CI runners).
"""

from __future__ import annotations

import asyncio
import inspect
import os
import types
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import aiohttp
import pytest
from aioresponses import aioresponses
from aioresponses import core as aioresponses_core
from anyio.from_thread import start_blocking_portal
from hypothesis import settings
from yarl import URL

from aiocompute.emulator import Emulator
from helpers import (
    EmulatorFactory,
    VirtualTimeLoop,
    emulator_on_virtual_time,
    emulators,
    make_emulator,
    run_on,
    sigint_raises_keyboard_interrupt,
)

# CI gets more examples; local runs stay quick.
settings.register_profile("ci", max_examples=200, deadline=None)
settings.register_profile("dev", max_examples=60, deadline=None)
settings.load_profile("ci" if os.environ.get("CI") else "dev")


class _CompatResponse(aiohttp.ClientResponse):
    """aioresponses 0.7.9 does not pass aiohttp 3.14's new ``stream_writer`` argument."""

    def __init__(self, method: str, url: URL, **kwargs: Any) -> None:
        kwargs.setdefault("stream_writer", types.SimpleNamespace(output_size=0))
        super().__init__(method, url, **kwargs)


@pytest.fixture(autouse=True)
def _no_machine_ca_bundle(monkeypatch: pytest.MonkeyPatch) -> None:
    """The machine's CA settings do not reach the tests (a test about them sets its own).

    Where SSL_CERT_FILE / SSL_CERT_DIR are set (some CI images, Nix shells), every client
    made with ``trust_env`` loads that bundle into a context of its own: about 50 ms each,
    nearly half of the default run's CPU time on a machine that sets them.
    """
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    monkeypatch.delenv("SSL_CERT_DIR", raising=False)


def pytest_asyncio_loop_factories(
    config: pytest.Config, item: pytest.Item
) -> dict[str, Callable[[], asyncio.AbstractEventLoop]]:
    """The event loop of each async test: virtual time where the test is marked so (the
    closest mark decides: ``virtual_time(False)`` on a test of a marked module opts out)."""
    mark = item.get_closest_marker("virtual_time")
    if mark is not None and (not mark.args or mark.args[0]):
        return {"virtual_time": VirtualTimeLoop}
    return {"asyncio": asyncio.new_event_loop}


@pytest.fixture
def mocked(monkeypatch: pytest.MonkeyPatch) -> Iterator[aioresponses]:
    """aioresponses, patched to work with the installed aiohttp."""
    if "stream_writer" in inspect.signature(aiohttp.ClientResponse.__init__).parameters:
        monkeypatch.setattr(aioresponses_core, "ClientResponse", _CompatResponse)
    with aioresponses() as m:
        yield m


# -- emulators --------------------------------------------------------------------------------


def _marked_settings(node: pytest.Item | pytest.Collector) -> dict[str, Any]:
    """The keyword arguments of the nearest ``@pytest.mark.emulator(...)``, if any."""
    mark = node.get_closest_marker("emulator")
    if mark is None:
        return {}
    if mark.args:
        raise TypeError("@pytest.mark.emulator takes keyword arguments only")
    return dict(mark.kwargs)


@pytest.fixture
async def emulator() -> AsyncIterator[EmulatorFactory]:
    """``await emulator(seed=..., config=..., **parts)``: a started emulator, stopped after
    the test; see :func:`helpers.emulators`."""
    async with emulators() as start:
        yield start


@pytest.fixture
async def emu(emulator: EmulatorFactory, request: pytest.FixtureRequest) -> Emulator:
    """A started emulator, set up by the nearest ``@pytest.mark.emulator(...)``."""
    return await emulator(**_marked_settings(request.node))


@pytest.fixture(scope="module")
def threaded_emulator(request: pytest.FixtureRequest) -> Iterator[Emulator]:
    """One emulator for the module, served by its own event-loop thread (through an anyio
    blocking portal), so sync code can call it from the test thread; set up by the module's
    ``emulator`` mark (a mark on a single test does not reach a module's fixture)."""
    server = make_emulator(**_marked_settings(request.node))
    with start_blocking_portal() as portal:
        portal.call(server.start)
        try:
            yield server
        finally:
            portal.call(server.stop)


@pytest.fixture(scope="module")
def _command_loop(request: pytest.FixtureRequest) -> Iterator[tuple[VirtualTimeLoop, Emulator]]:
    with emulator_on_virtual_time(**_marked_settings(request.node)) as loop_and_emulator:
        yield loop_and_emulator


@pytest.fixture
def command_emulator(
    _command_loop: tuple[VirtualTimeLoop, Emulator], monkeypatch: pytest.MonkeyPatch
) -> Emulator:
    """The module's emulator on virtual time, with ``asyncio.run`` running on its loop during
    the test (see the module docstring)."""
    loop, emu = _command_loop
    monkeypatch.setattr(asyncio, "run", run_on(loop))
    return emu


# -- Ctrl-C -------------------------------------------------------------------------------------


@pytest.fixture
def interruptible() -> Iterator[None]:
    """SIGINT raises KeyboardInterrupt during the test, in pytest and in the processes the
    test starts, whether or not pytest's parent ignores SIGINT (see
    :func:`helpers.sigint_raises_keyboard_interrupt`)."""
    with sigint_raises_keyboard_interrupt():
        yield
