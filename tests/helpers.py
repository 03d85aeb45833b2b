"""What many test modules share: quick policies, building emulators, virtual time, Ctrl-C.

Imported as ``helpers`` (``from helpers import QUICK_POLL``), like ``netkit``: ``tests/`` has
no ``__init__.py`` and pytest's default "prepend" import mode puts it on ``sys.path``. The
fixtures built on these (``emulator``, ``emu``, ``threaded_emulator``, ``interruptible``) live
in ``conftest.py``.
"""

from __future__ import annotations

import asyncio
import contextlib
import selectors
import signal
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Iterator
from typing import Any, TypeVar
from unittest import mock

import attrs

from aiocompute import PollCadence, RateGovernor, ResumePolicy, RetryPolicy
from aiocompute.emulator import Emulator, EmulatorConfig

# -- quick policies -----------------------------------------------------------------------------

#: Polls every 20..50 ms, without jitter: waits against the emulator's fast timings.
QUICK_POLL = PollCadence(initial=0.02, max=0.05, fast=0.02, min_gap=0.01, jitter=0.0)


def quick_retry(base: RetryPolicy | None = None, **changes: Any) -> RetryPolicy:
    """``base`` (default: ``RetryPolicy()``) with backoffs of 10..20 ms and a server's
    ``Retry-After`` capped at 0.1 s, then ``changes``."""
    quick: dict[str, Any] = {"backoff_initial": 0.01, "backoff_max": 0.02, "retry_after_max": 0.1}
    return (base if base is not None else RetryPolicy()).replace(**{**quick, **changes})


#: The default retry policy, with quick backoffs (see :func:`quick_retry`).
QUICK_RETRY = quick_retry()

#: Up to three stream reconnects, 10..20 ms apart.
QUICK_RESUME = ResumePolicy(max_reconnects=3, backoff_initial=0.01, backoff_max=0.02)


def quick_governor() -> RateGovernor:
    """A client's rate governor (one per client: it belongs to one event loop) that, after
    a 429, paces at 100 requests/s or more and honours a ``Retry-After`` for 10 ms at most.

    The default one paces at 1 request/s after a 429 and pauses for the whole Retry-After:
    a second of real time per refusal, where a test is about what is sent, not the pace.
    """
    return RateGovernor(min_rate=100.0, max_pause=0.01)


# -- emulators --------------------------------------------------------------------------------


def make_emulator(*, seed: int = 0, config: EmulatorConfig | None = None, **parts: Any) -> Emulator:
    """An :class:`Emulator`, not started yet (``async with make_emulator(...) as emu:``).

    ``parts`` are :class:`EmulatorConfig` fields (``workbench=``, ``qiskit=``, ``faults=``...),
    applied to ``config`` (default: ``EmulatorConfig()``).
    """
    base = config if config is not None else EmulatorConfig()
    return Emulator(config=attrs.evolve(base, **parts), seed=seed)


EmulatorFactory = Callable[..., Awaitable[Emulator]]


@contextlib.asynccontextmanager
async def emulators() -> AsyncIterator[EmulatorFactory]:
    """``async with emulators() as start:``, then ``emu = await start(seed=..., **parts)``
    (arguments as :func:`make_emulator`) for a started emulator; on the way out every one
    is stopped. On a :class:`VirtualTimeLoop` the emulators run on its clock. The
    ``emulator`` fixture is this, around a test."""
    async with contextlib.AsyncExitStack() as stack:

        async def start(**settings: Any) -> Emulator:
            on_virtual_time = isinstance(asyncio.get_running_loop(), VirtualTimeLoop)
            make = make_emulator_on_loop_clock if on_virtual_time else make_emulator
            return await stack.enter_async_context(make(**settings))

        yield start


def make_emulator_on_loop_clock(**settings: Any) -> Emulator:
    """:func:`make_emulator`, on the running event loop's clock instead of ``time.monotonic()``.

    On a real loop the two are the same clock; on a :class:`VirtualTimeLoop` the emulator's
    timings (state transitions, token lifetimes) then follow the virtual clock. The Emulator
    takes no clock argument, so this builds it while ``time.monotonic`` reads the loop (its
    wall-clock offset and start instants are taken then), and swaps its runtime's ``now``.
    """
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:  # no loop yet (a test of settings): the usual clock
        return make_emulator(**settings)
    if not isinstance(loop, VirtualTimeLoop):
        return make_emulator(**settings)  # a real loop's clock is time.monotonic()
    with mock.patch.object(time, "monotonic", loop.time):
        emu = make_emulator(**settings)
    emu._runtime.now = loop.time  # type: ignore[method-assign]
    return emu


# -- virtual time -------------------------------------------------------------------------------

T = TypeVar("T")


class _InstantSelector(selectors.DefaultSelector):
    """Polls for real I/O without blocking; where the loop would sleep until its next timer,
    moves the virtual clock forward by that much instead, unless work handed to another
    thread is still running: then it waits for real, the virtual clock standing still."""

    def __init__(self) -> None:
        super().__init__()
        self.now = 0.0
        #: Calls handed to an executor and not finished (aiohttp reads .netrc and proxy
        #: settings in one, with ``trust_env``): their end wakes the loop from another thread.
        self.threads_busy = 0

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        events = super().select(0)
        if events or timeout == 0:
            return events
        if self.threads_busy:
            events = super().select(timeout)
            if not events and timeout is not None:
                self.now += timeout  # the thread outlasted the next timer, for real
            return events
        if timeout is None:
            # No timer at all: only another thread could still wake the loop. Give it a
            # moment of real time, then call it a deadlock rather than hang the test run.
            events = super().select(5.0)
            if not events:
                raise RuntimeError("virtual-time loop: every task waits and no timer is set")
            return events
        self.now += timeout
        return events


class VirtualTimeLoop(asyncio.SelectorEventLoop):
    """An asyncio loop on a virtual clock (starting at 0): time moves only when every task
    waits, and then straight to the next timer. anyio (``sleep``, ``current_time``, cancel
    scope deadlines) reads this clock too.

    Real I/O still works (loopback HTTP to an emulator on the same loop included): a socket
    that is ready is served before time moves, and calls run in an executor take no virtual
    time (the loop waits for them for real).
    """

    def __init__(self) -> None:
        self._instant = _InstantSelector()
        super().__init__(self._instant)

    def time(self) -> float:
        return self._instant.now

    def run_in_executor(
        self, executor: Any, func: Callable[..., T], *args: Any
    ) -> asyncio.Future[T]:
        future = super().run_in_executor(executor, func, *args)
        self._instant.threads_busy += 1
        future.add_done_callback(self._thread_done)
        return future

    def _thread_done(self, _future: asyncio.Future[Any]) -> None:
        self._instant.threads_busy -= 1


@contextlib.contextmanager
def emulator_on_virtual_time(**settings: Any) -> Iterator[tuple[VirtualTimeLoop, Emulator]]:
    """A started emulator (arguments as :func:`make_emulator`) on a :class:`VirtualTimeLoop`
    of its own, which runs only while something is run on it (``loop.run_until_complete``):
    the emulator and what runs there share one virtual clock. Stopped on the way out."""
    loop = VirtualTimeLoop()

    async def start() -> Emulator:
        emu = make_emulator_on_loop_clock(**settings)
        await emu.start()
        return emu

    try:
        emu = loop.run_until_complete(start())
        try:
            yield loop, emu
        finally:
            loop.run_until_complete(emu.stop())
    finally:
        leftovers = asyncio.all_tasks(loop)
        for task in leftovers:
            task.cancel()
        if leftovers:
            loop.run_until_complete(asyncio.gather(*leftovers, return_exceptions=True))
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.run_until_complete(loop.shutdown_default_executor())
        loop.close()


def run_on(loop: asyncio.AbstractEventLoop) -> Callable[..., Any]:
    """A stand-in for :func:`asyncio.run` that runs the coroutine on ``loop`` (left open for
    the next one), for code that calls ``asyncio.run`` itself (the CLI's ``main()``)."""

    def run(main: Coroutine[Any, Any, T], *, debug: bool | None = None) -> T:
        return loop.run_until_complete(main)

    return run


def pass_time(seconds: float) -> None:
    """Let ``seconds`` pass on the clock the CLI's commands run on: with the
    ``command_emulator`` fixture, its virtual clock (``asyncio.run`` runs on that loop); else
    for real."""
    asyncio.run(asyncio.sleep(seconds))


# -- Ctrl-C -------------------------------------------------------------------------------------


@contextlib.contextmanager
def sigint_raises_keyboard_interrupt() -> Iterator[None]:
    """Inside, SIGINT raises KeyboardInterrupt in this process, and a child process started
    here starts with SIGINT at its default (so Python in it raises KeyboardInterrupt too).

    Python installs its KeyboardInterrupt handler only if SIGINT was not ignored when it
    started. A parent that ignores SIGINT (``nohup``, ``trap "" INT``, some CI runners)
    passes SIG_IGN on to pytest and, across fork and exec, to every child; then neither
    ``_thread.interrupt_main()`` nor ``send_signal(SIGINT)`` interrupts anything. A signal
    with a handler is reset to its default across exec; an ignored one stays ignored.
    """
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        if previous is not None:  # None: set outside Python; nothing to restore it with
            signal.signal(signal.SIGINT, previous)
