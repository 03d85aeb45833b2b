"""The hand-written runtime behind the generated sync twins (API-agnostic): the base
classes of the generated clients and resources.

The event-loop thread, the way calls are handed to it (threading model, Ctrl-C) and the
adapters (:class:`SyncIterator`, :class:`SyncPaginator`, :class:`SyncContextManager`,
:class:`SyncHandle`) are in :mod:`._loop`; they are importable from here too, where the
generated module looks for them.

Adapters
--------
- :class:`SyncWaitableResource`: the waiting methods, written once for every resource with a
  state machine (the generated resource twins subclass it).
"""

from __future__ import annotations

import contextlib
import copy as _copy
import warnings
from collections.abc import Callable, Collection, Iterable, Mapping
from types import TracebackType
from typing import Any, ClassVar, Generic, ParamSpec, TypeVar

from .._core.http_config import Timeouts
from .._core.resources import BaseClient, WaitableResource
from .._core.retries import RetryPolicy
from .._core.wait_types import OnCancel, PollEvent, TransitionEvent, Until, WaitResult, WaitToken
from .._exceptions import ClientClosedError
from ._loop import (
    SyncContextManager,
    SyncHandle,
    SyncIterator,
    SyncPaginator,
    _Runner,
)

__all__ = [
    "ClientClosedError",
    "SyncClient",
    "SyncContextManager",
    "SyncHandle",
    "SyncIterator",
    "SyncPaginator",
    "SyncResource",
    "SyncWaitableResource",
]

R = TypeVar("R")
P = ParamSpec("P")


class SyncResource:
    """Base of the generated resource twins (``client.sessions``...).

    ``_resources`` lists nested resources as ``(attribute, twin class)``; they are built here
    from the async resource's attributes of the same names.
    """

    _resources: ClassVar[tuple[tuple[str, type[SyncResource]], ...]] = ()
    _async: Any

    def __init__(self, runner: _Runner, resource: Any) -> None:
        self._runner = runner
        self._async = resource
        _bind_resources(self, runner, resource)

    def __repr__(self) -> str:
        return f"<sync {self._async!r}>"


class SyncWaitableResource(SyncResource, Generic[R]):
    """Blocking twin of :class:`~aiocompute._core.resources.WaitableResource`, written once
    for every resource with a state machine: ``wait`` / ``wait_all`` / ``as_completed`` /
    ``watch`` / ``wait_token`` / ``resume_wait``, with the async methods' names, parameters
    and docstrings (a test checks them). A generated resource twin subclasses it with its
    resource type (``WorkbenchSessionsResource(SyncWaitableResource[Session])``) and adds
    its API's own methods.
    """

    _async: WaitableResource[R]

    def wait(
        self,
        id: str,
        until: Until[R] | None = None,
        *,
        timeout: float | None = None,
        on_transition: Callable[[TransitionEvent[R]], object] | None = None,
        on_poll: Callable[[PollEvent[R]], object] | None = None,
        on_cancel: OnCancel = "detach",
    ) -> R:
        """Wait until ``id`` reaches ``until``; return it in that state.

        Raises :class:`~aiocompute.WaitTimeout` when ``timeout`` passes first, and
        :class:`~aiocompute.UnreachableState` at once when a state is reached from which the
        target can never come. ``until="done"`` returns the resource in whichever terminal
        state it ended (a job that failed included: look at its state or exit code).
        ``on_transition`` / ``on_poll`` are called (sync or async) on each change / read.
        ``on_cancel="cancel"`` stops the remote resource if the wait times out or is
        cancelled (``"detach"``, the default, leaves it running).
        """
        return self._runner.call(
            self._async.wait,
            id,
            until,
            timeout=timeout,
            on_transition=on_transition,
            on_poll=on_poll,
            on_cancel=on_cancel,
        )

    def wait_all(
        self,
        ids: Iterable[str],
        until: Until[R] | None = None,
        *,
        timeout: float | None = None,
        return_exceptions: bool = False,
        on_transition: Callable[[TransitionEvent[R]], object] | None = None,
        on_cancel: OnCancel = "detach",
    ) -> list[Any]:
        """Wait for every id under one deadline; results in the order of ``ids``.

        All ids are polled together (one request per tick where the API allows). Without
        ``return_exceptions`` the first failure is raised; with it, each id's error takes
        its place in the list.
        """
        return self._runner.call(
            self._async.wait_all,
            ids,
            until,
            timeout=timeout,
            return_exceptions=return_exceptions,
            on_transition=on_transition,
            on_cancel=on_cancel,
        )

    def as_completed(
        self,
        ids: Iterable[str],
        until: Until[R] | None = None,
        *,
        timeout: float | None = None,
    ) -> SyncIterator[WaitResult[R]]:
        """Yield a :class:`~aiocompute.WaitResult` per id as each finishes (reaches the
        target, fails, or times out); ``result.unwrap()`` returns the resource or raises.

        Sync twin: returns a :class:`~aiocompute.sync.SyncIterator`; ``close()`` it or use
        ``with`` to stop early.
        """
        return self._runner.iterate(self._async.as_completed, ids, until, timeout=timeout)

    def watch(
        self,
        ids: Iterable[str],
        until: str | Collection[str] | None = None,
        *,
        timeout: float | None = None,
    ) -> SyncIterator[TransitionEvent[R]]:
        """Yield every change of state of ``ids`` until each has settled (terminal or
        resumable) or reached ``until`` (default: the resource's usual target, e.g.
        ``"running"`` for sessions, a state it may otherwise stay in for ever).

        Sync twin: returns a :class:`~aiocompute.sync.SyncIterator`; ``close()`` it or use
        ``with`` to stop early.
        """
        return self._runner.iterate(self._async.watch, ids, until, timeout=timeout)

    def wait_token(
        self,
        ids: Iterable[str],
        until: str | Collection[str] | None = None,
        *,
        timeout: float | None = None,
    ) -> WaitToken:
        """A JSON-serialisable token (``.to_json()``) with the ids, target and deadline, so
        that another process can continue the wait with :meth:`resume_wait`.
        """
        return self._runner.call_sync(self._async.wait_token, ids, until, timeout=timeout)

    def resume_wait(self, token: WaitToken | str) -> list[R]:
        """Continue a wait described by a token (or its JSON) until its original deadline."""
        return self._runner.call(self._async.resume_wait, token)


def _bind_resources(twin: SyncClient | SyncResource, runner: _Runner, target: Any) -> None:
    for name, cls in type(twin)._resources:
        setattr(twin, name, cls(runner, getattr(target, name)))


class SyncClient:
    """Base of the generated sync clients: lifetime and the event-loop thread.

    The subclass's ``__init__`` has the async client's signature and passes the async class
    and the arguments here; the async client is constructed in the new loop thread. Use the
    client as ``with Client(...) as c:`` or call :meth:`close`. A client dropped unclosed
    emits a :class:`ResourceWarning` and is closed by its finalizer.
    """

    _resources: ClassVar[tuple[tuple[str, type[SyncResource]], ...]] = ()
    _async: Any
    _runner: _Runner

    #: True for a :meth:`with_options` copy, which shares its original's loop thread.
    _copy_of: SyncClient | None = None
    _copy_closed = False

    def __init__(
        self, factory: Callable[P, BaseClient], /, *args: P.args, **kwargs: P.kwargs
    ) -> None:
        runner = _Runner(name=f"aiocompute-sync-{type(self).__name__}")
        try:
            self._async = runner.call_sync(factory, *args, **kwargs)
            _bind_resources(self, runner, self._async)
        except BaseException:
            # A bad argument (missing token...) must not leave a thread behind.
            runner.close(_noop)
            raise
        self._runner = runner

    def with_options(
        self: _C,
        *,
        timeouts: Timeouts | None = None,
        retry: RetryPolicy | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> _C:
        """A light copy with other timeouts, retry policy or extra headers, sharing this
        client's connections and event-loop thread (see the async ``with_options``).
        Closing the copy leaves the original open."""
        if self.closed:
            raise ClientClosedError("this sync client is closed; create a new one")
        clone = _copy.copy(self)
        clone._copy_of = self
        clone._copy_closed = False
        clone._async = self._runner.call_sync(
            self._async.with_options, timeouts=timeouts, retry=retry, headers=headers
        )
        _bind_resources(clone, self._runner, clone._async)
        return clone

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called (or the client could not be built)."""
        runner: _Runner | None = getattr(self, "_runner", None)
        return runner is None or not runner._accepting or self._copy_closed

    def close(self) -> None:
        """Close the async client (ends waits and streams, closes connections), then stop
        the event-loop thread. Idempotent. Cannot be called from that thread. A
        :meth:`with_options` copy only ends its own waits."""
        runner: _Runner | None = getattr(self, "_runner", None)
        if runner is None:
            return
        if self._copy_of is not None:
            if not self.closed:
                self._copy_closed = True
                runner.call(self._async.aclose)
            return
        runner.close(self._async.aclose)

    def __enter__(self: _C) -> _C:
        if self.closed:
            raise ClientClosedError("this sync client is closed; create a new one")
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __del__(self, _warn: Callable[..., None] = warnings.warn) -> None:
        runner = getattr(self, "_runner", None)
        if runner is None or not runner._accepting or self._copy_of is not None:
            return
        with contextlib.suppress(Exception):  # warnings may be errors; never raise here
            _warn(
                f"unclosed sync {self._async!r}: use `with` or call close()",
                ResourceWarning,
                source=self,
            )
        with contextlib.suppress(Exception):
            runner.close_soon(self._async.aclose)

    def __repr__(self) -> str:
        inner = getattr(self, "_async", None)
        return f"<sync {inner!r}>"


_C = TypeVar("_C", bound=SyncClient)


async def _noop() -> None:
    pass
