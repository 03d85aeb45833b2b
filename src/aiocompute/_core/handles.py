"""Scoped handles: a resource launched for the length of an ``async with`` block.

Idle sessions cost money and quota, and a process that dies between a launch and its
cleanup leaves them running. Every API offers the same verb pattern on its session-like
resource (``wb.sessions.launched``, ``q.sessions.opened``, ``ls.sessions.created``,
``et.batches.created``), all built on :func:`scoped`:

1. launch (a create that is never blindly retried);
2. wait until it is ready (``until``, within ``timeout``), unless ``until`` is None;
3. yield a :class:`Handle` (``.id``, ``.resource``, ``.refresh()``, ``.wait()``, ``.stop()``);
4. on ANY exit (normal end, error, task cancellation, ``KeyboardInterrupt`` in the sync
   twin, and a failure or cancellation while waiting in step 2) run the ``on_exit`` action
   ("stop", "close", "delete"... or "leave"), shielded from cancellation and bounded by
   ``cleanup_timeout`` seconds.

A cleanup that fails while another error is on its way out is logged, not raised over it.
A resource the server no longer has (:class:`~aiocompute.NotFoundError`) counts as cleaned.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Iterator, Mapping
from typing import Any, Generic, TypeVar

import anyio

from .._exceptions import NotFoundError
from .checks import seconds
from .resources import WaitableResource
from .wait_types import Until

__all__ = ["LEAVE", "Handle", "InFlight", "scoped"]

R = TypeVar("R")

logger = logging.getLogger("aiocompute.handles")

#: The ``on_exit`` that leaves the resource as it is.
LEAVE = "leave"

#: What ``cleanup_timeout`` is by default: long enough for a stop request and its retries.
DEFAULT_CLEANUP_TIMEOUT = 30.0


class Handle(Generic[R]):
    """A resource launched by a scoped ``async with``: its ``id``, the resource as last read
    (``resource``; None until first read), and ways to read, wait for and stop it early.

    ``stop()`` runs the block's ``on_exit`` action now (stop, close, delete...); leaving the
    block afterwards does not run it again.
    """

    def __init__(
        self,
        id: str,
        *,
        waits: WaitableResource[R],
        get: Callable[[str], Awaitable[R]],
        action: Callable[[str], Awaitable[object]] | None,
        resource: R | None = None,
    ) -> None:
        self.id = id
        self.resource = resource
        self._waits = waits
        self._get = get
        self._action = action
        self._done = False

    async def refresh(self) -> R:
        """Read the resource again; also kept in :attr:`resource`."""
        self.resource = await self._get(self.id)
        return self.resource

    async def wait(
        self,
        until: Until[R] | None = None,
        *,
        timeout: float | None = None,  # noqa: ASYNC109 (the wait's deadline, as in wait())
    ) -> R:
        """Wait for the resource like ``<resource>.wait(id, until, timeout=...)``."""
        self.resource = await self._waits.wait(self.id, until, timeout=timeout)
        return self.resource

    async def stop(self) -> None:
        """Run the ``on_exit`` action now (nothing for ``"leave"``). Idempotent."""
        if self._done:
            return
        self._done = True
        if self._action is not None:
            await self._action(self.id)

    @property
    def stopped(self) -> bool:
        """Whether the ``on_exit`` action ran (by :meth:`stop` or on leaving the block)."""
        return self._done

    def __repr__(self) -> str:
        return f"{type(self).__name__}(id={self.id!r}, stopped={self._done})"


class InFlight:
    """Counts the calls in progress per key, so that a cleanup can let them finish first.

    A Qiskit session handle stops its session taking jobs on exit; a job run that is still
    being submitted to that session at that moment (started in the block, in another task)
    must get in first, or it would be refused. Runs hold ``track(session_id)`` while they
    submit; the cleanup awaits :meth:`settled` (bounded by its own timeout) before draining.
    """

    def __init__(self) -> None:
        self._counts: dict[str, int] = {}
        self._idle: dict[str, anyio.Event] = {}

    def busy(self, key: str) -> int:
        """How many calls for ``key`` are in progress."""
        return self._counts.get(key, 0)

    @contextlib.contextmanager
    def track(self, key: str) -> Iterator[None]:
        """Count a call for ``key`` while the block runs."""
        count = self._counts.get(key, 0)
        if count == 0:
            self._idle[key] = anyio.Event()  # made inside the running loop, on first use
        self._counts[key] = count + 1
        try:
            yield
        finally:
            left = self._counts[key] - 1
            if left:
                self._counts[key] = left
            else:
                del self._counts[key]
                self._idle.pop(key).set()

    async def settled(self, key: str) -> None:
        """Return once no call for ``key`` is in progress (at once if none is)."""
        while key in self._idle:
            await self._idle[key].wait()


def check_on_exit(on_exit: object, actions: Collection[str]) -> str:
    """``on_exit``, checked against the API's actions (and ``"leave"``)."""
    allowed = [*actions, LEAVE]
    if not isinstance(on_exit, str) or on_exit not in allowed:
        raise ValueError(f"on_exit must be one of {allowed}, got {on_exit!r}")
    return on_exit


@contextlib.asynccontextmanager
async def scoped(
    launch: Callable[[], Awaitable[str]],
    *,
    waits: WaitableResource[R],
    get: Callable[[str], Awaitable[R]],
    until: Until[R] | None,
    timeout: float | None,  # noqa: ASYNC109 (the wait's deadline, as in wait())
    on_exit: str,
    actions: Mapping[str, Callable[[str], Awaitable[object]]],
    cleanup_timeout: float = DEFAULT_CLEANUP_TIMEOUT,
    first: R | None = None,
) -> AsyncIterator[Handle[R]]:
    """Launch, wait, yield a :class:`Handle`, and clean up on any exit (module docs).

    ``launch`` returns the new id; ``actions`` maps each ``on_exit`` name the API allows
    to what it does with an id; ``first`` is the resource as the launch answered, if any.
    """
    check_on_exit(on_exit, actions)
    seconds(cleanup_timeout, "cleanup_timeout")
    if timeout is not None:
        # Before the launch: a bad deadline must not leave a resource launched for nothing.
        seconds(timeout, "timeout")
    new_id = await launch()
    handle = Handle(new_id, waits=waits, get=get, action=actions.get(on_exit), resource=first)
    failed = False
    try:
        if until is not None:
            await handle.wait(until, timeout=timeout)
        yield handle
    except BaseException:
        failed = True
        raise
    finally:
        await _clean_up(handle, on_exit, cleanup_timeout, quiet=failed)


async def _clean_up(handle: Handle[Any], on_exit: str, limit: float, *, quiet: bool) -> None:
    # Shielded: a cancelled task (or Ctrl-C in the sync twin) must still stop what it
    # launched; bounded, so that a dead server cannot hold the exit for ever.
    error: Exception | None = None
    with anyio.CancelScope(shield=True), anyio.move_on_after(limit) as scope:
        try:
            await handle.stop()
        except NotFoundError:
            pass  # already gone: nothing left to clean up
        except Exception as exc:
            error = exc
    if scope.cancelled_caught:
        logger.warning(
            "%r: on_exit=%r did not finish within %g s; the resource may still exist",
            handle,
            on_exit,
            limit,
        )
    if error is not None:
        if quiet:
            # The block's own error is on its way out: report this one beside it.
            logger.warning("%r: on_exit=%r failed: %s", handle, on_exit, error)
        else:
            raise error
