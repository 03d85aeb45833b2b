"""The event-loop thread of a sync client, its call machinery, and the adapters that
carry async values across it (API-agnostic; the base classes are in :mod:`._runtime`).

Threading model
---------------
Each sync client owns ONE background thread running an asyncio event loop (started with
:func:`anyio.from_thread.start_blocking_portal`). The async client is constructed inside that
loop, so its aiohttp session binds there, and every sync call is handed to the loop as a task
while the calling thread blocks until the outcome is stored. The caller's own
event loop, if it has one (a Jupyter notebook), is never touched, so the sync twins work in
plain scripts and inside a running loop alike.

The portal owns the thread and the loop's lifetime, but calls are handed over with
``loop.call_soon_threadsafe`` rather than ``BlockingPortal.call`` / ``start_task_soon``: the
portal spawns each task through a blocking round trip to the loop thread before waiting for
its result, two hand-offs instead of one. ``benchmarks/bench_sync.py`` measures both side by
side: a no-I/O call costs 196-256 us more than its async twin through the portal, 51-93 us
through the loop directly (runs of 2,000 calls, 2 shared cores, load average 4 to 6),
against a target of 150 us.

Ctrl-C
------
The calling thread waits in short slices (:data:`_TICK`), so a ``KeyboardInterrupt`` reaches
it even where a blocking wait would swallow it (Windows, ``_thread.interrupt_main``). On any
exception raised while a call is in flight (KeyboardInterrupt, SystemExit from a signal
handler), the call's task is cancelled in the loop, the caller waits (bounded by
:data:`_CANCEL_GRACE`) until it has unwound -- streams closed, remote cancellations sent --
and the exception is re-raised.

Adapters
--------
- :class:`SyncIterator`: an async iterator consumed item by item through the loop; closing it
  (``close()``, ``with``, garbage collection, or the client closing) closes the underlying
  async generator, and so the HTTP stream behind it.
- :class:`SyncPaginator`: the twin of :class:`~aiocompute._core.pagination.Paginator`:
  iterable (lazily, page by page), ``.all()`` for a list, ``.pages()`` for whole pages.
- :class:`SyncContextManager`: ``async with`` becomes ``with``; entered and left in one task,
  like ``BlockingPortal.wrap_async_context_manager`` (not used: it waits for the entering
  without slices, and a Ctrl-C there would leave the entering running in the loop).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import sys
import threading
import warnings
import weakref
from collections.abc import (
    AsyncIterable,
    AsyncIterator,
    Awaitable,
    Callable,
    Coroutine,
    Iterator,
)
from contextlib import AbstractAsyncContextManager, AbstractContextManager
from types import TracebackType
from typing import Any, Generic, ParamSpec, TypeVar

from anyio.from_thread import BlockingPortal, start_blocking_portal

from .._core.handles import Handle
from .._core.pagination import Page, Paginator
from .._core.wait_types import Until
from .._exceptions import ClientClosedError

__all__ = [
    "SyncContextManager",
    "SyncHandle",
    "SyncIterator",
    "SyncPaginator",
]

T = TypeVar("T")
R = TypeVar("R")
P = ParamSpec("P")

#: How long a blocked caller waits at a time before looking again, so that Ctrl-C gets in.
_TICK = 0.1
#: How long a cancelled call (or a closing stream) may take to unwind before we give up.
_CANCEL_GRACE = 5.0
#: Marks the end of an async iterator (StopAsyncIteration does not cross a task boundary).
_END: Any = object()


_PENDING, _OK, _ERROR, _CANCELLED = range(4)


class _Call(Generic[T]):
    """One coroutine handed to the loop thread, and the outcome its caller blocks on.

    A bare lock (held until the outcome is stored) rather than a concurrent Future: the
    hand-off is the whole cost of a sync call, and the lock costs less: 55 against 67-72 us
    of CPU time per no-I/O call, both threads counted (6,000 calls each way, interleaved).
    """

    __slots__ = ("coro", "done", "error", "inner", "result", "state", "task")

    def __init__(self, coro: Coroutine[Any, Any, T]) -> None:
        self.done = threading.Lock()
        self.done.acquire()
        self.state = _PENDING
        self.result: T | None = None
        self.error: BaseException | None = None
        self.inner: Coroutine[Any, Any, T] | None = coro  # until it starts
        self.coro: Coroutine[Any, Any, None] | None = self._settle(coro)
        self.task: asyncio.Task[None] | None = None

    # -- in the loop thread

    async def _settle(self, coro: Coroutine[Any, Any, T]) -> None:
        # The outcome is stored from inside the task, so the caller wakes as soon as it is
        # known (not a loop turn later, from a done callback).
        self.inner = None
        try:
            result = await coro
        except asyncio.CancelledError:
            self._finish(_CANCELLED, None, None)  # the coroutine has unwound by now
            raise
        except BaseException as exc:
            self._finish(_ERROR, None, exc)
            if not isinstance(exc, Exception):
                raise
        else:
            self._finish(_OK, result, None)

    def _finish(self, state: int, result: T | None, error: BaseException | None) -> None:
        if self.state == _PENDING:
            self.result, self.error, self.state = result, error, state
            self.done.release()

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        coro, self.coro = self.coro, None
        if coro is None:  # cancelled before it started
            return
        if sys.version_info >= (3, 12):
            # Run the first step at once: a call that needs no I/O finishes here.
            self.task = asyncio.Task(coro, loop=loop, eager_start=True)
        else:
            self.task = loop.create_task(coro)

    def cancel(self, loop: asyncio.AbstractEventLoop) -> None:
        if self.task is not None:
            self.task.cancel()
            loop.call_soon(self._after_cancel)
        elif self.coro is not None:
            self.coro.close()
            self.coro = None
            self._never_started()

    def _after_cancel(self) -> None:
        # A task cancelled before its first step never ran _settle: settle it here.
        if self.task is not None and self.task.done():
            self._never_started()

    def _never_started(self) -> None:
        inner, self.inner = self.inner, None
        if inner is not None:
            inner.close()  # no "coroutine was never awaited" warning
        self._finish(_CANCELLED, None, None)

    # -- in the caller's thread

    def wait(self, timeout: float) -> bool:
        """Whether the outcome is there, waiting up to ``timeout`` seconds for it."""
        if self.done.acquire(timeout=timeout):
            self.done.release()  # stays readable by any later wait
            return True
        return False

    def outcome(self) -> T:
        if self.state == _OK:
            return self.result  # type: ignore[return-value]
        if self.state == _ERROR:
            assert self.error is not None
            raise self.error
        raise ClientClosedError("the sync client was closed while this call was in progress")


async def _invoke(fn: Callable[..., Awaitable[T]], args: Any, kwargs: Any) -> T:
    # fn is called here, in the loop thread, not in the caller's thread.
    return await fn(*args, **kwargs)


async def _invoke_sync(fn: Callable[..., T], args: Any, kwargs: Any) -> T:
    # A plain function run in the loop thread; its result is never awaited (a Paginator is
    # awaitable, yet must come back as an object).
    return fn(*args, **kwargs)


def _loop_thread() -> tuple[asyncio.AbstractEventLoop, threading.Thread]:
    return asyncio.get_running_loop(), threading.current_thread()


class _Runner:
    """The event-loop thread of one sync client, and the ways to run things on it."""

    def __init__(self, name: str) -> None:
        self._portal_cm: AbstractContextManager[BlockingPortal] = start_blocking_portal(
            "asyncio", name=name
        )
        self._portal = self._portal_cm.__enter__()
        try:
            self._loop, self._thread = self._portal.call(_loop_thread)
        except BaseException:
            self._portal_cm.__exit__(None, None, None)
            raise
        self._thread_id = self._thread.ident
        self._accepting = True
        self._closed = False
        self._close_lock = threading.Lock()
        self._iterators: weakref.WeakSet[SyncIterator[Any]] = weakref.WeakSet()

    @property
    def closed(self) -> bool:
        """Whether the loop thread was stopped."""
        return self._closed

    @property
    def thread(self) -> threading.Thread:
        """The loop thread (for tests and diagnostics)."""
        return self._thread

    def in_loop_thread(self) -> bool:
        """Whether the caller runs in this runner's loop thread."""
        return threading.get_ident() == self._thread_id

    # -- running calls -------------------------------------------------------------------

    def call(self, fn: Callable[P, Awaitable[T]], /, *args: P.args, **kwargs: P.kwargs) -> T:
        """Await ``fn(*args, **kwargs)`` in the loop thread and return its result."""
        self._check_usable()
        return self._run(_invoke(fn, args, kwargs))

    def call_sync(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
        """Call the plain function ``fn`` in the loop thread and return its result as is."""
        self._check_usable()
        return self._run(_invoke_sync(fn, args, kwargs))

    def iterate(
        self, fn: Callable[P, AsyncIterable[T]], /, *args: P.args, **kwargs: P.kwargs
    ) -> SyncIterator[T]:
        """A :class:`SyncIterator` over ``fn(*args, **kwargs)``, opened at the first ``next``."""
        self._check_usable()
        return SyncIterator(self, functools.partial(fn, *args, **kwargs))

    def paginate(
        self, fn: Callable[P, Paginator[T]], /, *args: P.args, **kwargs: P.kwargs
    ) -> SyncPaginator[T]:
        """A :class:`SyncPaginator` over the paginator ``fn(*args, **kwargs)`` returns."""
        self._check_usable()
        return SyncPaginator(self, functools.partial(fn, *args, **kwargs))

    def context(
        self,
        fn: Callable[P, AbstractAsyncContextManager[T]],
        /,
        *args: P.args,
        **kwargs: P.kwargs,
    ) -> SyncContextManager[T]:
        """A :class:`SyncContextManager` over the async context manager ``fn`` returns."""
        self._check_usable()
        return SyncContextManager(self, functools.partial(fn, *args, **kwargs))

    def handle(
        self,
        fn: Callable[P, AbstractAsyncContextManager[Handle[R]]],
        /,
        *args: P.args,
        **kwargs: P.kwargs,
    ) -> SyncContextManager[SyncHandle[R]]:
        """A :class:`SyncContextManager` over a scoped handle's ``async with``, giving a
        :class:`SyncHandle`."""
        self._check_usable()
        return SyncContextManager(
            self,
            functools.partial(fn, *args, **kwargs),
            convert=lambda handle: SyncHandle(self, handle),
        )

    def _check_usable(self) -> None:
        if not self._accepting:
            raise ClientClosedError("this sync client is closed; create a new one")
        if threading.get_ident() == self._thread_id:
            raise RuntimeError(
                "a sync aiocompute client cannot be called from its own event-loop thread "
                "(for instance from an on_transition callback): use the async client there"
            )

    def _submit(self, coro: Coroutine[Any, Any, T]) -> _Call[T]:
        call = _Call(coro)
        try:
            self._loop.call_soon_threadsafe(call.start, self._loop)
        except RuntimeError:  # the loop is closed
            if call.coro is not None:
                call.coro.close()
            coro.close()
            raise ClientClosedError("this sync client is closed; create a new one") from None
        return call

    def _run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run ``coro`` in the loop; on an exception in the caller, cancel it and re-raise."""
        call = self._submit(coro)
        try:
            # Short slices: a Ctrl-C gets in between them everywhere (a blocking wait would
            # hold it off on Windows, or under _thread.interrupt_main).
            while not call.wait(_TICK):
                if not self._thread.is_alive():
                    raise ClientClosedError("the sync client's event-loop thread has stopped")
        except BaseException:
            if call.state == _PENDING:
                # Ctrl-C (or another exception raised in this thread) while the call runs:
                # cancel it and let it unwind (close its stream) before re-raising.
                self._cancel(call)
            raise
        return call.outcome()

    def _cancel(self, call: _Call[Any]) -> None:
        with contextlib.suppress(RuntimeError):  # the loop is already closed
            self._loop.call_soon_threadsafe(call.cancel, self._loop)
        call.wait(_CANCEL_GRACE)

    # -- closing -------------------------------------------------------------------------

    def _finalize_iterator(self, aclose: Callable[[], Awaitable[Any]]) -> None:
        """Close an abandoned async iterator, from a finalizer (any thread, must not raise)."""
        if self._closed:
            return
        if self.in_loop_thread():
            self._loop.create_task(_invoke(aclose, (), {}))
            return
        self._submit(_invoke(aclose, (), {})).wait(_CANCEL_GRACE)

    def close(self, aclose: Callable[[], Awaitable[Any]]) -> None:
        """Close live iterators, then the async client (``aclose``), then stop the thread."""
        if self.in_loop_thread():
            raise RuntimeError(
                "a sync aiocompute client cannot be closed from its own event-loop thread"
            )
        with self._close_lock:
            if not self._accepting:
                return
            self._accepting = False
        try:
            for iterator in list(self._iterators):
                with contextlib.suppress(Exception):
                    iterator.close()
            self._run(_invoke(aclose, (), {}))
        finally:
            self._stop()

    def close_soon(self, aclose: Callable[[], Awaitable[Any]]) -> None:
        """Close from a finalizer: blocking from another thread, scheduled from the loop's."""
        if not self.in_loop_thread():
            self.close(aclose)
            return
        with self._close_lock:
            if not self._accepting:
                return
            self._accepting = False

        closed = threading.Event()

        async def shutdown() -> None:
            try:
                await aclose()
            finally:
                closed.set()

        def finish() -> None:
            closed.wait(_CANCEL_GRACE)
            self._stop()

        self._loop.create_task(shutdown())
        # The loop thread cannot stop and join itself: a short-lived helper thread does.
        threading.Thread(target=finish, name="aiocompute-sync-closer", daemon=True).start()

    def _stop(self) -> None:
        # Tasks still running (calls from other threads) are cancelled when the loop ends.
        with contextlib.suppress(RuntimeError):  # already stopped
            self._portal.call(self._portal.stop, True)
        self._closed = True
        self._portal_cm.__exit__(None, None, None)  # joins the thread


class SyncIterator(Iterator[T]):
    """A blocking iterator over an async iterator run in the client's loop thread.

    Items are fetched one at a time, on demand. Leaving early releases what the async
    iterator holds (an HTTP stream, for job output): call :meth:`close`, use
    ``with client.jobs.output(job_id) as chunks:``, or simply drop it (a ``break`` out of a
    ``for`` loop over a temporary closes it as soon as the iterator is garbage collected).
    Closing the client closes its live iterators too.
    """

    def __init__(self, runner: _Runner, open: Callable[[], AsyncIterable[T]]) -> None:
        self._runner = runner
        self._open: Callable[[], AsyncIterable[T]] | None = open
        self._it: AsyncIterator[T] | None = None
        self._closed = False
        runner._iterators.add(self)

    def __iter__(self) -> SyncIterator[T]:
        return self

    async def _step(self) -> T:
        it = self._it
        if it is None:
            assert self._open is not None
            it = self._it = aiter(self._open())
            self._open = None
        try:
            return await anext(it)
        except StopAsyncIteration:
            return _END  # type: ignore[no-any-return]

    def __next__(self) -> T:
        if self._closed:
            raise StopIteration
        self._runner._check_usable()
        try:
            item = self._runner._run(self._step())
        except BaseException:
            # The async iterator raised (it is finished) or the call was interrupted (its
            # task was cancelled): either way it is over; make sure it is closed.
            with contextlib.suppress(Exception):
                self.close()
            raise
        if item is _END:
            self._closed = True
            self._it = None
            raise StopIteration
        return item

    def close(self) -> None:
        """Stop iterating and close the async iterator (its HTTP stream). Idempotent."""
        if self._closed:
            return
        self._closed = True
        self._open = None
        it, self._it = self._it, None
        aclose = getattr(it, "aclose", None)
        if aclose is not None and not self._runner.closed:
            self._runner._run(_invoke(aclose, (), {}))

    def __enter__(self) -> SyncIterator[T]:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __del__(self) -> None:
        if getattr(self, "_closed", True):
            return
        it = self._it
        aclose = getattr(it, "aclose", None)
        if aclose is not None:
            with contextlib.suppress(Exception):  # finalizers must never raise
                self._runner._finalize_iterator(aclose)

    def __repr__(self) -> str:
        state = "closed" if self._closed else ("open" if self._it is not None else "not started")
        return f"<SyncIterator {state}>"


class SyncPaginator(Generic[T]):
    """The blocking twin of a :class:`~aiocompute._core.pagination.Paginator`.

    - ``for item in paginator:`` fetches pages lazily, one request per page, and stops
      fetching when the loop stops; ``list(paginator)`` reads them all;
    - :meth:`all` returns every item as a list (the twin of ``await paginator``);
    - :meth:`pages` iterates whole :class:`~aiocompute._core.pagination.Page` objects.

    Each iteration (or :meth:`all`) starts again from the first page, like the async one.
    """

    def __init__(self, runner: _Runner, open: Callable[[], Paginator[T]]) -> None:
        self._runner = runner
        self._open = open
        self._paginator: Paginator[T] | None = None

    def _get(self) -> Paginator[T]:
        # Runs in the loop thread only, so no lock is needed.
        if self._paginator is None:
            self._paginator = self._open()
        return self._paginator

    def __iter__(self) -> SyncIterator[T]:
        return SyncIterator(self._runner, lambda: aiter(self._get()))

    def pages(self) -> SyncIterator[Page[T]]:
        """Iterate whole pages."""
        return SyncIterator(self._runner, lambda: self._get().pages())

    async def _all(self) -> list[T]:
        return await self._get()

    def all(self) -> list[T]:
        """Every item of every page, as a list."""
        return self._runner.call(self._all)

    # Until 0.x some sync ``list`` methods returned a list (ET Engine) or a listing
    # (Workbench ``SessionListing``): length, indexing and the listing's attributes still
    # work for a release, reading every page, with a DeprecationWarning.

    def _all_deprecated(self, what: str) -> Any:
        warnings.warn(
            f"{what} on a SyncPaginator is deprecated: use .all() for the list "
            "(or iterate the paginator)",
            DeprecationWarning,
            stacklevel=3,
        )
        return self.all()

    def __len__(self) -> int:
        return len(self._all_deprecated("len()"))

    def __getitem__(self, index: Any) -> Any:
        return self._all_deprecated("indexing")[index]

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        items = self.all()
        if not hasattr(items, name):
            raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")
        warnings.warn(
            f"SyncPaginator.{name} is deprecated: use .all().{name}",
            DeprecationWarning,
            stacklevel=2,
        )
        return getattr(items, name)

    def __repr__(self) -> str:
        inner = repr(self._paginator) if self._paginator is not None else "not started"
        return f"<SyncPaginator {inner}>"


class SyncContextManager(AbstractContextManager[T]):
    """The blocking twin of an async context manager: ``with`` instead of ``async with``.

    ``__aenter__`` and ``__aexit__`` run in one task of the client's loop thread, which waits
    in between for the ``with`` block to end (as anyio's
    ``BlockingPortal.wrap_async_context_manager`` does), so cancel scopes and task groups
    may span the block. Ctrl-C while entering or leaving cancels that task, lets it unwind,
    and raises :class:`KeyboardInterrupt`.
    """

    def __init__(
        self,
        runner: _Runner,
        open: Callable[[], AbstractAsyncContextManager[Any]],
        *,
        convert: Callable[[Any], T] | None = None,
    ) -> None:
        self._runner = runner
        self._open = open
        # What the with statement gives for the async value (e.g. a SyncHandle).
        self._convert = convert
        self._task: asyncio.Task[bool | None] | None = None
        self._leave: asyncio.Event | None = None
        self._exc_info: tuple[Any, Any, Any] = (None, None, None)

    async def _hold(self, entered: asyncio.Future[T], leave: asyncio.Event) -> bool | None:
        # The one task that enters the async context manager and, later, leaves it.
        try:
            cm = self._open()
            value = await cm.__aenter__()
        except BaseException as exc:
            if not entered.done():
                entered.set_exception(exc)
            raise
        entered.set_result(value)
        try:
            await leave.wait()
        finally:
            result = await cm.__aexit__(*self._exc_info)
        return result

    async def _enter(self) -> T:
        loop = asyncio.get_running_loop()
        entered: asyncio.Future[T] = loop.create_future()
        self._leave = asyncio.Event()
        self._task = task = loop.create_task(self._hold(entered, self._leave))
        try:
            return await entered
        except BaseException:
            # Entering failed, or this call was cancelled (Ctrl-C): end the holding task
            # and wait until it has unwound (its error is the one raised here).
            self._task = None
            task.cancel()
            with contextlib.suppress(BaseException):
                await task
            raise

    async def _exit(self, task: asyncio.Task[bool | None]) -> bool | None:
        assert self._leave is not None
        self._leave.set()
        return await task  # cancelling this call cancels the task, inside __aexit__ too

    def __enter__(self) -> T:
        if self._task is not None:
            raise RuntimeError("this context manager is already in use")
        self._exc_info = (None, None, None)
        value = self._runner.call(self._enter)
        return value if self._convert is None else self._convert(value)

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        task, self._task = self._task, None
        if task is None:
            return None
        self._exc_info = (exc_type, exc, tb)
        return self._runner.call(self._exit, task)


class SyncHandle(Generic[R]):
    """The blocking twin of a scoped :class:`~aiocompute.Handle`: what ``with
    wb.sessions.launched(...) as s:`` gives in the sync client. ``id``, ``resource`` (as last
    read) and ``stopped`` are read as they are; ``refresh()``, ``wait()`` and ``stop()``
    block until done."""

    def __init__(self, runner: _Runner, handle: Handle[R]) -> None:
        self._runner = runner
        self._async = handle

    @property
    def id(self) -> str:
        """The resource's id."""
        return self._async.id

    @property
    def resource(self) -> R | None:
        """The resource as last read (None until first read)."""
        return self._async.resource

    @property
    def stopped(self) -> bool:
        """Whether the ``on_exit`` action ran."""
        return self._async.stopped

    def refresh(self) -> R:
        """Read the resource again; also kept in :attr:`resource`."""
        return self._runner.call(self._async.refresh)

    def wait(self, until: Until[R] | None = None, *, timeout: float | None = None) -> R:
        """Wait for the resource like ``<resource>.wait(id, until, timeout=...)``."""
        return self._runner.call(self._async.wait, until, timeout=timeout)

    def stop(self) -> None:
        """Run the ``on_exit`` action now (nothing for ``"leave"``). Idempotent."""
        self._runner.call(self._async.stop)

    def __repr__(self) -> str:
        return f"<sync {self._async!r}>"
