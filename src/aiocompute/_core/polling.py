"""The one waiter engine: deadlines, cadence, coalesced polling.

Every API resource with a state machine drives its ``wait`` / ``wait_all`` / ``as_completed`` /
``watch`` through a :class:`Poller`; this module knows no API's names. An API supplies:

- a :class:`~.states.StateTable` (which states are transient, terminal, resumable, fast...);
- ``fetch_many(ids) -> {id: resource}``: one read covering many ids (or, for APIs that can
  only read one id at a time, :func:`per_id_fetcher` builds one from ``fetch_one``);
- ``state_of(resource)`` and optionally ``detail_of``, ``failed``, ``on_missing`` and
  ``cancel_remote``.

How the polling is shared
-------------------------
All waits on one :class:`Poller` (typically one per client per resource kind) share ONE
polling loop: each tick calls ``fetch_many`` once (or once per ``max_batch`` ids) for every id
somebody is waiting on, and every waiter whose id reached its target is woken in that same tick.
A read that changes nothing a wait decides on (same state, no hooks or checks that look at
every read) does not wake its task; it is still kept as the wait's ``last`` resource.

There is no background task. Whichever waiting task finds the loop unattended *drives* it: it
runs the ticks while it waits for its own result. When its wait ends (or it is cancelled) it
hands the loop to another waiting task. So a Poller needs no start or stop, can be built in a
client's ``__init__`` outside any event loop, works unchanged behind a blocking portal, and can
never leak a task: the loop runs only while somebody is inside a wait. :meth:`Poller.aclose`
(also ``async with poller``) ends the waits still in progress with
:class:`~aiocompute.ClientClosedError` and refuses new ones.

Cadence (see :class:`PollCadence`)
----------------------------------
Each id has its own interval: it starts at ``initial``, grows by ``factor`` after every poll
that saw no change, up to a cap, and goes back to ``initial`` when the id changes state; ids in
a ``fast`` state are polled every ``fast`` seconds. Intervals count from the start of a read,
so reads stay an interval apart however long they take. A tick starts when the first id is
due, never sooner than ``min_gap`` after the previous tick ended (which also spaces the reads
that new waits ask for), nor before a server's Retry-After.

What a tick fetches depends on what a request costs:

- *shared* reads (the default: one request reads many ids): a tick fetches the due ids and
  fills the rest of its last batch with the ids due soonest (with no ``max_batch``: all ids).
  The riders are free and cut their detection lag. Because a request costs the same however
  many ids it covers, the cap on the interval shrinks with the number of ids, as
  ``max * sqrt(requests_per_tick / ids)`` (never below ``initial``: the square-root law
  that balances one request against the summed lag of all waiters), and a transition of any
  id resets every id to ``initial`` (resources launched together tend to change together).
  1,000 waits on sessions that start within 1-3 s then cost about 10 requests a second
  (~2% of polling each session every second) with a detection lag around ``initial``.
- *per-id* reads (``fetch_many`` built by :func:`per_id_fetcher`, or ``top_up=False``): every
  id costs a request, so a tick fetches only the due ids and each id keeps its own backoff.

Errors while polling: :class:`TransportError` (``retryable``), :class:`ServerError` and
:class:`RateLimitError` are retried until the wait's deadline (counted, logged at DEBUG, and
mentioned in the :class:`WaitTimeout` if the deadline passes); any other error from the read is
raised by every wait whose id was in the failed request. An id absent from a read is handed to
``on_missing`` (if given); after ``missing_after`` consecutive absences the wait raises
:class:`NotFoundError`.

Light polls, settled results
----------------------------
A poll only needs each id's state, but a wait must return the whole resource. An API whose
reads can be narrowed (e.g. a ``fields`` list) gives a light ``fetch_many`` and a ``settle(ids)
-> {id: resource}`` full read: when a tick's light reads bring ids to a wait's named target,
the tick reads all of them once more through ``settle`` (one call per tick, ``max_batch`` ids
per call) and hands the full resources to the waits. A wait whose own code decides on every
read (a predicate ``until``, or its own ``failed`` check) may look at any field, so all its
reads are settled. So ``settle`` costs one small read per finishing batch, while the polls
that see nothing new stay light. If ``settle`` fails (whatever the error: it is not retried)
or leaves an id out, the wait gets the light resource: a wait that reached its target never
fails because the full read did, and the next light poll would meet a lasting error anyway.
A settled resource's state is read again (it may have moved on since the light read) and
decides the wait.

Light resources still reach: :class:`UnreachableState` / :class:`WaitTimeout` ``last``, the
poller's own ``failed`` and ``detail_of`` (the API makes its light reads carry what these
need), ``on_poll`` / ``on_transition`` hooks (except for the read that ends the wait at its
target), :meth:`Poller.watch` events, and a wait's ``last`` between settled reads.
"""

from __future__ import annotations

import inspect
import logging
import math
import random
import time
from collections import deque
from collections.abc import (
    AsyncGenerator,
    Awaitable,
    Callable,
    Collection,
    Iterable,
    Mapping,
    Sequence,
)
from typing import Any, Generic, Literal, TypeVar, overload

import anyio
from attrs import frozen

from .._exceptions import (
    ClientClosedError,
    NotFoundError,
    ProtocolError,
    RateLimitError,
    ServerError,
    TransportError,
    UnreachableState,
    WaitError,
    WaitTimeout,
)
from .states import StateTable
from .wait_types import (
    FetchMany,
    OnCancel,
    PollCadence,
    PollerStats,
    PollEvent,
    TransitionEvent,
    Until,
    WaitResult,
    WaitToken,
)

__all__ = ["PerIdFetcher", "Poller", "per_id_fetcher"]

logger = logging.getLogger("aiocompute.polling")

R = TypeVar("R")


# --------------------------------------------------------------------------------------------
# Per-id reads
# --------------------------------------------------------------------------------------------


def _is_retryable(exc: BaseException) -> bool:
    if isinstance(exc, TransportError):
        return exc.retryable
    return isinstance(exc, (ServerError, RateLimitError))


class PerIdFetcher(Generic[R]):
    """A ``fetch_many`` made of one read per id, at most ``concurrency`` at a time.

    An id whose read raises :class:`NotFoundError` is left out of the result (the poller's
    missing-id policy applies). If other reads fail, the whole call raises one of their
    errors, a non-retryable one first, so that a real problem is not retried away.
    A :class:`Poller` given one polls only the ids that are due (every id costs a request).
    """

    def __init__(self, fetch_one: Callable[[str], Awaitable[R]], concurrency: int) -> None:
        if isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1:
            raise ValueError(f"concurrency must be a positive integer, got {concurrency!r}")
        self.fetch_one = fetch_one
        self.concurrency = concurrency
        self._limiter: anyio.CapacityLimiter | None = None

    async def __call__(self, ids: Sequence[str]) -> dict[str, R]:
        if self._limiter is None:
            # Made at first use, inside the event loop, and shared by concurrent calls.
            self._limiter = anyio.CapacityLimiter(self.concurrency)
        limiter = self._limiter
        found: dict[str, R] = {}
        errors: list[Exception] = []

        async def read(one: str) -> None:
            async with limiter:
                try:
                    found[one] = await self.fetch_one(one)
                except NotFoundError:
                    pass
                except Exception as exc:  # gathered: one failed read must not hide the others
                    errors.append(exc)

        async with anyio.create_task_group() as tg:
            for one in dict.fromkeys(ids):
                tg.start_soon(read, one)
        if errors:
            fatal = [e for e in errors if not _is_retryable(e)]
            raise (fatal or errors)[0]
        return found


def per_id_fetcher(
    fetch_one: Callable[[str], Awaitable[R]], concurrency: int = 8
) -> PerIdFetcher[R]:
    """Build a ``fetch_many`` from ``fetch_one(id)`` for APIs that read one id per request."""
    return PerIdFetcher(fetch_one, concurrency)


# --------------------------------------------------------------------------------------------
# The engine
# --------------------------------------------------------------------------------------------


@frozen
class _Target(Generic[R]):
    names: frozenset[str] | None
    predicate: Callable[[R], bool] | None
    label: str


class _Tracked(Generic[R]):
    """What the loop knows about one id somebody waits on."""

    __slots__ = ("due", "id", "interval", "misses", "state", "subs")

    def __init__(self, id: str, now: float, initial: float) -> None:
        self.id = id
        self.subs: dict[_Sub[R], None] = {}  # ordered set
        self.state: str | None = None
        self.interval = initial
        self.due = now
        self.misses = 0


class _Seen(Generic[R]):
    """Mail for a wait: a read of one id."""

    __slots__ = ("at", "id", "resource", "state")

    def __init__(self, id: str, resource: R, state: str, at: float) -> None:
        self.id, self.resource, self.state, self.at = id, resource, state, at


class _Failed:
    """Mail for a wait: its id cannot be read (a non-retryable error, or not found)."""

    __slots__ = ("error", "id")

    def __init__(self, id: str, error: BaseException) -> None:
        self.id, self.error = id, error


class _Sub(Generic[R]):
    """One wait's mailbox: the loop posts reads and failures, the waiting task reads them."""

    __slots__ = (
        "attempts",
        "errors",
        "every_read",
        "full_reads",
        "inbox",
        "last_error",
        "min_seq",
        "quiet",
        "seen_state",
        "targets",
        "wake",
    )

    def __init__(
        self,
        min_seq: int,
        every_read: bool,
        targets: frozenset[str] | None = None,
        full_reads: bool = False,
    ) -> None:
        self.inbox: deque[_Seen[R] | _Failed] = deque()
        self.wake = anyio.Event()
        self.min_seq = min_seq  # reads from ticks started before registration are stale
        self.every_read = every_read  # hooks or checks that look at every read
        # What makes a read worth a full (settled) read: see the module docstring.
        self.targets = targets
        self.full_reads = full_reads
        self.seen_state: dict[str, str] = {}
        self.quiet: dict[str, _Seen[R]] = {}
        self.attempts: dict[str, int] = {}
        self.errors: dict[str, int] = {}
        self.last_error: dict[str, BaseException] = {}

    def post(self, item: _Seen[R] | _Failed) -> None:
        if isinstance(item, _Seen):
            self.quiet.pop(item.id, None)
        self.inbox.append(item)
        self.wake.set()

    def wants_full(self, one: str, state: str) -> bool:
        """Whether this wait would rather see the full resource for this read of ``one``."""
        if self.full_reads:
            return True
        return self.targets is not None and state in self.targets

    def post_read(self, item: _Seen[R]) -> None:
        """Post a read, but wake the waiting task only if it can change the outcome: with
        a thousand waiters, waking each on every unchanged read would dominate the CPU."""
        if self.every_read or self.seen_state.get(item.id) != item.state:
            self.seen_state[item.id] = item.state
            self.post(item)
        else:
            self.quiet[item.id] = item  # only the newest matters (for WaitError.last)


class _Progress(Generic[R]):
    __slots__ = ("history", "last", "reads", "state")

    def __init__(self) -> None:
        self.last: R | None = None
        self.state: str | None = None
        self.history: list[tuple[str, float]] = []
        self.reads = 0


def _check_timeout(timeout: object) -> float:
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)):
        raise TypeError(f"timeout must be a number of seconds, got {timeout!r}")
    if not math.isfinite(timeout) or timeout <= 0:
        raise ValueError(
            f"timeout must be a positive, finite number of seconds, got {timeout!r}: "
            "every wait needs a deadline"
        )
    return float(timeout)


def _check_ids(ids: Iterable[str]) -> list[str]:
    if isinstance(ids, (str, bytes)):
        raise TypeError(f"ids must be a collection of ids, not the single string {ids!r}")
    out = list(ids)
    for one in out:
        if not isinstance(one, str) or not one:
            raise ValueError(f"ids must be non-empty strings, got {one!r}")
    return out


async def _call_hook(hook: Callable[[Any], object] | None, event: object) -> None:
    if hook is None:
        return
    result = hook(event)
    if inspect.isawaitable(result):
        await result


class Poller(Generic[R]):
    """Waits for resources of one kind to reach states, sharing one polling loop.

    Arguments (given by the API package, not by end users):

    - ``table``: the :class:`StateTable`;
    - ``fetch_many(ids) -> {id: resource}``: reads many ids (ids it does not return are
      "missing"); see :func:`per_id_fetcher` for one-id-at-a-time APIs;
    - ``state_of(resource) -> str``; ``detail_of(resource) -> str | None``: the server's
      status message, quoted when a wait fails;
    - ``failed(resource) -> str | None``: a failure that is not a state (e.g. a job that
      finished with a non-zero exit code): a reason ends the wait with UnreachableState;
    - ``kind``: the name in wait tokens (default: the table's name);
    - ``cadence``: a :class:`PollCadence`; ``max_batch``: most ids per ``fetch_many`` call;
      ``top_up``: whether riders fill each batch (default: yes unless ``fetch_many`` is a
      :class:`PerIdFetcher`); ``batch_concurrency``: batches read at once in one tick;
    - ``missing_after``: consecutive reads without an id before its waits raise
      NotFoundError; ``on_missing(ids) -> {id: resource}``: consulted first for missing ids
      (e.g. to find an ended session in the history);
    - ``cancel_remote(id)``: what ``on_cancel="cancel"`` calls, shielded, within
      ``cancel_timeout`` seconds, when a wait times out or is cancelled;
    - ``settle(ids) -> {id: resource}``: a full read, for a light ``fetch_many``: ids whose
      reads reach a wait's named target (and every read of a wait with a predicate or its
      own ``failed``) are read once more through it before the waits get them, one call per
      tick for all of them. On any error, or for an id it leaves out, the light resource is
      used. Light resources may still be seen in ``WaitTimeout.last`` /
      ``UnreachableState.last``, by the poller's ``failed`` and ``detail_of`` (so light
      reads must carry what those need), by ``on_poll`` / ``on_transition`` before the
      final read, and in :meth:`watch` events; see the module docstring;
    - ``rng``: the source of jitter (seed it for reproducible runs).
    """

    def __init__(
        self,
        table: StateTable,
        fetch_many: FetchMany[R],
        *,
        state_of: Callable[[R], str],
        detail_of: Callable[[R], str | None] | None = None,
        failed: Callable[[R], str | None] | None = None,
        kind: str | None = None,
        cadence: PollCadence | None = None,
        max_batch: int | None = None,
        top_up: bool | None = None,
        batch_concurrency: int = 4,
        missing_after: int = 3,
        on_missing: Callable[[Sequence[str]], Awaitable[Mapping[str, R]]] | None = None,
        cancel_remote: Callable[[str], Awaitable[object]] | None = None,
        cancel_timeout: float = 10.0,
        settle: Callable[[Sequence[str]], Awaitable[Mapping[str, R]]] | None = None,
        rng: random.Random | None = None,
    ) -> None:
        for name, value in (
            ("max_batch", max_batch),
            ("batch_concurrency", batch_concurrency),
            ("missing_after", missing_after),
        ):
            if value is None and name == "max_batch":
                continue
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        self.table = table
        self.kind = kind or table.name
        self.cadence = cadence or PollCadence()
        self.max_batch = max_batch
        self.top_up = (not isinstance(fetch_many, PerIdFetcher)) if top_up is None else top_up
        self.batch_concurrency = batch_concurrency
        self.missing_after = missing_after
        self.cancel_timeout = _check_timeout(cancel_timeout)
        self.stats = PollerStats()
        self._fetch_many = fetch_many
        self._state_of = state_of
        self._detail_of = detail_of
        self._failed = failed
        self._on_missing = on_missing
        self._cancel_remote = cancel_remote
        self._settle_read = settle
        self._rng = rng or random.Random()
        self._tracked: dict[str, _Tracked[R]] = {}
        self._driver: _Sub[R] | None = None
        self._idle: dict[_Sub[R], None] = {}  # waiting tasks that may take over the loop
        self._kick: anyio.Event | None = None
        self._tick_scope: anyio.CancelScope | None = None
        self._seq = 0
        self._last_tick_end = -math.inf
        self._hold_until = -math.inf
        self._closed = False

    # -- lifetime ---------------------------------------------------------------------------

    async def __aenter__(self) -> Poller[R]:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """End every wait in progress (they raise :class:`~aiocompute.ClientClosedError`) and
        refuse new ones. Idempotent."""
        self._closed = True
        if self._tick_scope is not None:
            self._tick_scope.cancel()
        if self._kick is not None:
            self._kick.set()
        for sub in list(self._idle):
            sub.wake.set()
        for tracked in self._tracked.values():
            for sub in tracked.subs:
                sub.wake.set()
        await anyio.lowlevel.checkpoint()

    @property
    def closed(self) -> bool:
        """Whether :meth:`aclose` was called."""
        return self._closed

    @property
    def watched_ids(self) -> frozenset[str]:
        """The ids somebody is waiting on right now."""
        return frozenset(self._tracked)

    def _check_open(self) -> None:
        if self._closed:
            raise ClientClosedError(f"the {self.table.name} poller is closed (so is its client)")

    # -- public waits -----------------------------------------------------------------------

    async def wait(
        self,
        id: str,
        until: Until[R],
        *,
        timeout: float,  # noqa: ASYNC109 (the wait's deadline, applied as a scope)
        failed: Callable[[R], str | None] | None = None,
        on_transition: Callable[[TransitionEvent[R]], object] | None = None,
        on_poll: Callable[[PollEvent[R]], object] | None = None,
        on_cancel: OnCancel = "detach",
        leaving: Collection[str] = (),
    ) -> R:
        """Wait until resource ``id`` reaches ``until``; return it in that state.

        ``until`` is a state name, a collection of names, or a predicate on the resource.
        ``timeout`` (seconds, finite, required) ends the wait with :class:`WaitTimeout`. A
        state from which ``until`` can no longer come, or a ``failed`` reason (this one or
        the poller's), ends it at once with :class:`UnreachableState`. ``on_transition`` /
        ``on_poll`` (sync or async) are called in this task for each change / read.
        ``on_cancel="cancel"`` asks the server to cancel the resource (``cancel_remote``,
        shielded) if the wait times out or is cancelled. ``leaving`` names states the
        resource is expected to leave (e.g. ``suspended`` right after asking to resume):
        while in them the wait keeps polling instead of giving up.
        """
        results = await self.wait_all(
            [id],
            until,
            timeout=timeout,
            failed=failed,
            on_transition=on_transition,
            on_poll=on_poll,
            on_cancel=on_cancel,
            leaving=leaving,
        )
        return results[0]

    @overload
    async def wait_all(
        self,
        ids: Iterable[str],
        until: Until[R],
        *,
        timeout: float,  # noqa: ASYNC109 (the wait's deadline, applied as a scope)
        return_exceptions: Literal[False] = False,
        failed: Callable[[R], str | None] | None = None,
        on_transition: Callable[[TransitionEvent[R]], object] | None = None,
        on_poll: Callable[[PollEvent[R]], object] | None = None,
        on_cancel: OnCancel = "detach",
        leaving: Collection[str] = (),
    ) -> list[R]: ...

    @overload
    async def wait_all(
        self,
        ids: Iterable[str],
        until: Until[R],
        *,
        timeout: float,  # noqa: ASYNC109 (the wait's deadline, applied as a scope)
        return_exceptions: Literal[True],
        failed: Callable[[R], str | None] | None = None,
        on_transition: Callable[[TransitionEvent[R]], object] | None = None,
        on_poll: Callable[[PollEvent[R]], object] | None = None,
        on_cancel: OnCancel = "detach",
        leaving: Collection[str] = (),
    ) -> list[R | BaseException]: ...

    async def wait_all(
        self,
        ids: Iterable[str],
        until: Until[R],
        *,
        timeout: float,  # noqa: ASYNC109 (the wait's deadline, applied as a scope)
        return_exceptions: bool = False,
        failed: Callable[[R], str | None] | None = None,
        on_transition: Callable[[TransitionEvent[R]], object] | None = None,
        on_poll: Callable[[PollEvent[R]], object] | None = None,
        on_cancel: OnCancel = "detach",
        leaving: Collection[str] = (),
    ) -> list[R] | list[R | BaseException]:
        """Wait for every id (one shared deadline); results in the order of ``ids``.

        Without ``return_exceptions`` the first failure is raised at once (the other waits
        are dropped) and a timeout raises one :class:`WaitTimeout` naming the ids still
        pending; with it, each id's error takes its place in the list. ``on_cancel`` applies
        to a timeout or a cancellation only. Other arguments as in :meth:`wait`.
        """
        id_list = _check_ids(ids)
        group = self._group(
            id_list, until, timeout, failed, on_transition, on_poll, on_cancel, leaving
        )
        results: dict[str, WaitResult[R]] = {}
        try:
            while not group.finished:
                done = await group.step()
                for result in done:
                    results[result.id] = result
                if not return_exceptions:
                    timeouts = [r for r in done if isinstance(r.error, WaitTimeout)]
                    if timeouts:
                        raise group.merge_timeouts(timeouts)
                    for result in done:
                        if result.error is not None:
                            raise result.error
        except anyio.get_cancelled_exc_class():
            await group.cancelled()
            raise
        finally:
            group.close()
        if return_exceptions:
            out: list[R | BaseException] = []
            for one in id_list:
                result = results[one]
                out.append(result.error if result.error is not None else result.unwrap())
            return out
        return [results[one].unwrap() for one in id_list]

    async def as_completed(
        self,
        ids: Iterable[str],
        until: Until[R],
        *,
        timeout: float,  # noqa: ASYNC109 (the wait's deadline, applied as a scope)
        failed: Callable[[R], str | None] | None = None,
        on_transition: Callable[[TransitionEvent[R]], object] | None = None,
        on_poll: Callable[[PollEvent[R]], object] | None = None,
        on_cancel: OnCancel = "detach",
        leaving: Collection[str] = (),
    ) -> AsyncGenerator[WaitResult[R], None]:
        """Yield one :class:`WaitResult` per distinct id, in the order they finish.

        Nothing is raised for a single id: a failure or the deadline comes as a result with
        ``error`` set (``result.unwrap()`` raises it); only cancellation propagates. Leaving
        the loop early just stops waiting; close the iterator (``aclosing``) to stop at once.
        """
        id_list = _check_ids(ids)
        group = self._group(
            id_list, until, timeout, failed, on_transition, on_poll, on_cancel, leaving
        )
        try:
            while not group.finished:
                try:
                    done = await group.step()
                except anyio.get_cancelled_exc_class():
                    await group.cancelled()
                    raise
                for result in done:
                    yield result
        finally:
            group.close()

    async def watch(
        self,
        ids: Iterable[str],
        *,
        timeout: float,  # noqa: ASYNC109 (the wait's deadline, applied as a scope)
        until: str | Collection[str] | None = None,
    ) -> AsyncGenerator[TransitionEvent[R], None]:
        """Yield every change of state of ``ids`` (the first state seen has ``old_state``
        None), in the order seen, until each id is settled (terminal or resumable) or in
        one of the ``until`` states (e.g. ``"running"``, a stable state a resource may
        stay in for ever).

        Raises :class:`WaitTimeout` if the deadline passes first, and an id's read error
        (e.g. NotFoundError) as soon as it happens.
        """
        id_list = _check_ids(ids)
        group = self._group(id_list, None, timeout, None, None, None, "detach", ())
        if until is not None:
            group.stop_at = self._target(until).names or frozenset()
        try:
            while not group.finished:
                done = await group.step()
                while group.events:
                    yield group.events.popleft()
                for result in done:
                    if result.error is not None:
                        raise result.error
        finally:
            group.close()

    # -- tokens -----------------------------------------------------------------------------

    def token(
        self, ids: Iterable[str], until: str | Collection[str], *, timeout: float
    ) -> WaitToken:
        """A :class:`WaitToken` for waiting on ``ids`` until ``until`` (state names only)
        within ``timeout`` seconds from now."""
        if callable(until):
            raise TypeError("a wait token needs state names, not a predicate")
        id_list = _check_ids(ids)
        if not id_list:
            raise ValueError("a wait token needs at least one id")
        target = self._target(until)
        assert target.names is not None
        deadline = time.time() + _check_timeout(timeout)
        return WaitToken(
            kind=self.kind,
            ids=tuple(dict.fromkeys(id_list)),
            until=tuple(sorted(target.names)),
            deadline=deadline,
        )

    async def resume(
        self,
        token: WaitToken,
        *,
        failed: Callable[[R], str | None] | None = None,
        on_transition: Callable[[TransitionEvent[R]], object] | None = None,
        on_poll: Callable[[PollEvent[R]], object] | None = None,
        on_cancel: OnCancel = "detach",
    ) -> list[R]:
        """Take up the wait a token describes, with the time it has left.

        ValueError if the token is for another kind of resource or names states this table
        does not know; :class:`WaitTimeout` at once if its deadline has passed.
        """
        if not isinstance(token, WaitToken):
            raise TypeError(f"expected a WaitToken, got {type(token).__name__}")
        if token.kind != self.kind:
            raise ValueError(f"this wait token is for {token.kind!r}, not {self.kind!r}")
        self._target(token.until)  # validates the names
        remaining = token.remaining()
        if remaining <= 0:
            raise WaitTimeout(
                f"the deadline of this {self.table.name} wait passed {-remaining:.1f} s "
                f"before it was resumed ({len(token.ids)} id(s))"
            )
        return await self.wait_all(
            token.ids,
            token.until,
            timeout=remaining,
            failed=failed,
            on_transition=on_transition,
            on_poll=on_poll,
            on_cancel=on_cancel,
        )

    # -- waits: internals -------------------------------------------------------------------

    def _target(self, until: Until[R]) -> _Target[R]:
        if callable(until):
            name = getattr(until, "__qualname__", "")
            label = "the awaited condition" if not name or "<lambda>" in name else name
            return _Target(names=None, predicate=until, label=label)
        if isinstance(until, str):
            raw: list[str] = [until]
        elif isinstance(until, Iterable):
            raw = list(until)
        else:
            raise TypeError(f"until must be a state name, names, or a predicate, got {until!r}")
        if not raw or not all(isinstance(n, str) for n in raw):
            raise ValueError(f"until must name at least one state, got {until!r}")
        names = frozenset(self.table.normalize(n) for n in raw)
        unknown = names - self.table.states
        if unknown:
            raise ValueError(
                f"{self.table.name} has no state {', '.join(map(repr, sorted(unknown)))}; "
                f"known: {', '.join(sorted(self.table.states))}"
            )
        ordered = sorted(names)
        label = repr(ordered[0]) if len(ordered) == 1 else "one of " + ", ".join(map(repr, ordered))
        return _Target(names=names, predicate=None, label=label)

    def _group(
        self,
        ids: list[str],
        until: Until[R] | None,
        timeout: float,
        failed: Callable[[R], str | None] | None,
        on_transition: Callable[[TransitionEvent[R]], object] | None,
        on_poll: Callable[[PollEvent[R]], object] | None,
        on_cancel: str,
        leaving: Collection[str],
    ) -> _Group[R]:
        seconds = _check_timeout(timeout)
        target = None if until is None else self._target(until)
        if on_cancel not in ("detach", "cancel"):
            raise ValueError(f"on_cancel must be 'detach' or 'cancel', got {on_cancel!r}")
        if on_cancel == "cancel" and self._cancel_remote is None:
            raise ValueError(f"{self.table.name} waits cannot cancel remotely (no cancel_remote)")
        if isinstance(leaving, str):
            leaving = [leaving]
        self._check_open()
        return _Group(
            self,
            ids,
            target,
            seconds,
            failed,
            on_transition,
            on_poll,
            on_cancel == "cancel",
            frozenset(self.table.normalize(s) for s in leaving),
        )

    def _register(self, sub: _Sub[R], ids: Iterable[str]) -> None:
        now = anyio.current_time()
        for one in ids:
            tracked = self._tracked.get(one)
            if tracked is None:
                tracked = self._tracked[one] = _Tracked(one, now, self.cadence.initial)
            tracked.subs[sub] = None
            tracked.due = now  # a new waiter needs a fresh read, not a cached one
            sub.attempts.setdefault(one, 0)
        if self._kick is not None:
            self._kick.set()

    def _unregister(self, sub: _Sub[R], one: str) -> None:
        tracked = self._tracked.get(one)
        if tracked is not None:
            tracked.subs.pop(sub, None)
            if not tracked.subs:
                del self._tracked[one]

    async def _pump(self, sub: _Sub[R], deadline: float) -> None:
        """Return once ``sub`` has mail or the deadline has passed; drive the loop meanwhile
        if nobody else does."""
        try:
            while not sub.inbox:
                self._check_open()
                now = anyio.current_time()
                if now >= deadline:
                    return
                if self._driver is None:
                    self._driver = sub
                    try:
                        await self._drive(sub, deadline)
                    finally:
                        self._driver = None
                else:
                    sub.wake = anyio.Event()
                    self._idle[sub] = None
                    try:
                        with anyio.move_on_after(deadline - now):
                            await sub.wake.wait()
                    finally:
                        self._idle.pop(sub, None)
        finally:
            # Hand the loop over (whether we drove it or were about to take it over).
            if self._driver is None:
                for successor in self._idle:
                    successor.wake.set()
                    break

    async def _drive(self, me: _Sub[R], deadline: float) -> None:
        while not me.inbox and not self._closed:
            now = anyio.current_time()
            if now >= deadline:
                return
            when = self._next_tick_time()
            if when > now:
                self._kick = anyio.Event()
                with anyio.move_on_after(min(when, deadline) - now):
                    await self._kick.wait()
                continue
            # Let waits started in the same instant register, so one read covers them all.
            await anyio.lowlevel.checkpoint()
            await self._tick()

    def _next_tick_time(self) -> float:
        if not self._tracked:
            return math.inf
        due = min(t.due for t in self._tracked.values())
        return max(due, self._last_tick_end + self.cadence.min_gap, self._hold_until)

    def _cap(self) -> float:
        """The longest interval any id may back off to, given how many ids share a tick."""
        c = self.cadence
        n = len(self._tracked)
        if not self.top_up or n <= 1:
            return c.max
        per_tick = math.ceil(n / self.max_batch) if self.max_batch else 1
        return min(c.max, max(c.initial, c.max * math.sqrt(per_tick / n)))

    def _jittered(self, interval: float) -> float:
        j = self.cadence.jitter
        return interval * self._rng.uniform(1 - j, 1 + j) if j else interval

    async def _tick(self) -> None:
        now = anyio.current_time()
        self._seq += 1
        seq = self._seq
        trackers = sorted(self._tracked.values(), key=lambda t: t.due)
        due = [t for t in trackers if t.due <= now]
        if not due:
            return
        chosen = due
        if self.top_up:
            room = len(trackers)
            if self.max_batch:
                room = math.ceil(len(due) / self.max_batch) * self.max_batch
            chosen = trackers[:room]
        ids = [t.id for t in chosen]
        size = self.max_batch or len(ids)
        batches = [ids[i : i + size] for i in range(0, len(ids), size)]
        self.stats.ticks += 1
        outcomes: list[Mapping[str, R] | Exception] = [{} for _ in batches]

        async def run(index: int, limiter: anyio.Semaphore | None = None) -> None:
            if limiter is None:
                outcomes[index] = await self._read(batches[index])
                return
            async with limiter:
                outcomes[index] = await self._read(batches[index])

        with anyio.CancelScope() as scope:
            self._tick_scope = scope
            try:
                if len(batches) == 1:
                    await run(0)
                else:
                    limiter = anyio.Semaphore(self.batch_concurrency)
                    async with anyio.create_task_group() as tg:
                        for index in range(len(batches)):
                            tg.start_soon(run, index, limiter)
            finally:
                self._tick_scope = None
        if scope.cancel_called:
            return  # closed meanwhile
        end = self._last_tick_end = anyio.current_time()
        changed = False
        fetched: list[_Tracked[R]] = []
        held: list[tuple[list[_Sub[R]], _Seen[R]]] = []
        for batch, outcome in zip(batches, outcomes, strict=True):
            if isinstance(outcome, Exception):
                self._settle_error(batch, outcome, seq, end)
            else:
                changed |= self._settle(batch, outcome, seq, now, end, fetched, held)
        c = self.cadence
        if changed and self.top_up:
            # Activity clusters: after any change, everybody is polled at the initial rate.
            for tracked in fetched:
                tracked.interval = c.initial
                tracked.due = min(tracked.due, now + self._jittered(c.initial))
        if self._tracked:
            self.stats.intervals.append(self._next_tick_time() - now)
        if held:
            # After the light reads are posted, so waits they woke run meanwhile.
            await self._post_full(held)

    async def _post_full(self, held: list[tuple[list[_Sub[R]], _Seen[R]]]) -> None:
        """Read the held ids through ``settle`` (one call per ``max_batch`` ids) and post the
        full resources; the light one stays where the full read fails or lacks an id."""
        settle = self._settle_read
        assert settle is not None
        ids = list(dict.fromkeys(seen.id for _, seen in held))
        size = self.max_batch or len(ids)
        batches = [ids[i : i + size] for i in range(0, len(ids), size)]
        got: dict[str, R] = {}

        async def run(batch: list[str], limiter: anyio.Semaphore | None = None) -> None:
            self.stats.settle_calls += 1
            self.stats.ids_settled += len(batch)
            try:
                if limiter is None:
                    found = await settle(batch)
                else:
                    async with limiter:
                        found = await settle(batch)
                got.update((one, found[one]) for one in batch if one in found)
            except Exception as exc:  # the light read is good enough: never fail the wait
                self.stats.settle_errors += 1
                logger.debug("full read of %s failed, using the polled one: %r", self.kind, exc)

        with anyio.CancelScope() as scope:
            self._tick_scope = scope
            try:
                if len(batches) == 1:
                    await run(batches[0])
                else:
                    limiter = anyio.Semaphore(self.batch_concurrency)
                    async with anyio.create_task_group() as tg:
                        for batch in batches:
                            tg.start_soon(run, batch, limiter)
            finally:
                self._tick_scope = None
        if scope.cancel_called:
            return  # closed meanwhile
        for subs, seen in held:
            full = got.get(seen.id)
            if full is not None:
                try:
                    state = self.table.normalize(self._state_of(full))
                    if isinstance(state, str):
                        seen = _Seen(seen.id, full, state, seen.at)
                except Exception:  # an unreadable full read: keep the light one
                    self.stats.settle_errors += 1
            for sub in subs:
                sub.post_read(seen)

    async def _read(self, ids: list[str]) -> Mapping[str, R] | Exception:
        """One ``fetch_many`` (plus ``on_missing``); errors are returned, not raised."""
        self.stats.fetch_calls += 1
        self.stats.ids_fetched += len(ids)
        try:
            got = dict(await self._fetch_many(ids))
            missing = [one for one in ids if one not in got]
            if missing and self._on_missing is not None:
                extra = await self._on_missing(missing)
                got.update((one, extra[one]) for one in missing if one in extra)
            return got
        except Exception as exc:  # classified by the caller; cancellation passes through
            return exc

    def _eligible(self, tracked: _Tracked[R], seq: int) -> list[_Sub[R]]:
        return [s for s in tracked.subs if s.min_seq <= seq]

    def _settle(
        self,
        batch: list[str],
        got: Mapping[str, R],
        seq: int,
        start: float,
        end: float,
        fetched: list[_Tracked[R]],
        held: list[tuple[list[_Sub[R]], _Seen[R]]],
    ) -> bool:
        """Apply one successful read. Intervals count from the tick's start, so reads stay
        ``interval`` apart however long a read takes (``min_gap`` still spaces them). Reads
        that a wait wants in full (with ``settle``) go to ``held`` instead of being posted."""
        c = self.cadence
        cap = self._cap()
        changed = False
        for one in batch:
            tracked = self._tracked.get(one)
            if tracked is None:
                continue  # nobody waits any more
            subs = self._eligible(tracked, seq)
            for sub in subs:
                sub.attempts[one] = sub.attempts.get(one, 0) + 1
            if one not in got:
                tracked.misses += 1
                if tracked.misses >= self.missing_after:
                    error = NotFoundError(
                        f"{self.table.name} {one!r} was not found ({tracked.misses} reads in a row)"
                    )
                    for sub in subs:
                        sub.post(_Failed(one, error))
                tracked.interval = c.initial  # maybe not visible yet: look again soon
                tracked.due = start + self._jittered(c.initial)
                continue
            resource = got[one]
            try:
                state = self.table.normalize(self._state_of(resource))
                if not isinstance(state, str):
                    raise TypeError(f"state_of returned {type(state).__name__}")
            except Exception as exc:
                bad = ProtocolError(f"could not read the state of {self.table.name} {one!r}: {exc}")
                for sub in subs:
                    sub.post(_Failed(one, bad))
                tracked.due = start + self._jittered(tracked.interval)
                continue
            if not self.table.is_known(state):
                count = self.stats.unknown_states.get(state, 0)
                if not count:
                    logger.warning(
                        "unknown %s state %r (treated as transient)", self.table.name, state
                    )
                self.stats.unknown_states[state] = count + 1
            tracked.misses = 0
            moved = tracked.state is not None and tracked.state != state
            changed |= moved
            if moved or tracked.state is None:
                tracked.interval = c.initial
            else:
                tracked.interval = min(tracked.interval * c.factor, cap)
            tracked.state = state
            step = c.fast if state in self.table.fast else tracked.interval
            tracked.due = start + self._jittered(step)
            if len(subs) < len(tracked.subs):
                tracked.due = end  # a waiter that joined mid-read still needs its own read
            fetched.append(tracked)
            seen = _Seen(one, resource, state, end)
            if self._settle_read is not None and any(s.wants_full(one, state) for s in subs):
                held.append((subs, seen))
                continue
            for sub in subs:
                sub.post_read(seen)
        return changed

    def _settle_error(self, batch: list[str], error: Exception, seq: int, end: float) -> None:
        c = self.cadence
        retry = _is_retryable(error)
        if retry:
            self.stats.retried_errors += 1
            logger.debug("polling %s failed, will retry: %r", self.table.name, error)
            if isinstance(error, RateLimitError) and error.retry_after:
                self._hold_until = max(self._hold_until, end + error.retry_after)
        else:
            self.stats.failed_fetches += 1
        for one in batch:
            tracked = self._tracked.get(one)
            if tracked is None:
                continue
            subs = self._eligible(tracked, seq)
            for sub in subs:
                sub.attempts[one] = sub.attempts.get(one, 0) + 1
                if retry:
                    sub.errors[one] = sub.errors.get(one, 0) + 1
                    sub.last_error[one] = error
                else:
                    sub.post(_Failed(one, error))
            # A struggling server gets room: back off up to max, whatever the number of ids.
            tracked.interval = min(tracked.interval * c.factor, c.max)
            tracked.due = end + self._jittered(tracked.interval)


class _Group(Generic[R]):
    """One call of wait / wait_all / as_completed / watch: its ids, deadline and progress."""

    def __init__(
        self,
        poller: Poller[R],
        ids: list[str],
        target: _Target[R] | None,
        timeout: float,
        failed: Callable[[R], str | None] | None,
        on_transition: Callable[[TransitionEvent[R]], object] | None,
        on_poll: Callable[[PollEvent[R]], object] | None,
        cancel_remote: bool,
        leaving: frozenset[str],
    ) -> None:
        self.poller = poller
        self.target = target
        self.timeout = timeout
        self.started = anyio.current_time()
        self.deadline = self.started + timeout
        self.failed = failed
        self.on_transition = on_transition
        self.on_poll = on_poll
        self.cancel_remote = cancel_remote
        self.leaving = leaving
        # watch(): states besides settled ones at which an id is done (e.g. "running").
        self.stop_at: frozenset[str] = frozenset()
        self.total = len(dict.fromkeys(ids))
        self.pending: dict[str, _Progress[R]] = {one: _Progress() for one in ids}
        self.events: deque[TransitionEvent[R]] = deque()
        self.cancel_outcome: dict[str, BaseException | None] = {}
        every_read = on_poll is not None or failed is not None or poller._failed is not None
        if target is not None and target.predicate is not None:
            every_read = True
        # The wait's own code decides on every read: it may look at any field.
        decides = failed is not None or (target is not None and target.predicate is not None)
        self.sub: _Sub[R] = _Sub(
            poller._seq + 1,
            every_read,
            targets=target.names if target is not None else None,
            full_reads=decides,
        )
        poller._register(self.sub, self.pending)

    @property
    def finished(self) -> bool:
        return not self.pending

    def close(self) -> None:
        for one in list(self.sub.attempts):
            self.poller._unregister(self.sub, one)
        self.pending.clear()

    async def step(self) -> list[WaitResult[R]]:
        """Wait for news; return the ids that finished (all pending ones at the deadline)."""
        done: list[WaitResult[R]] = []
        with anyio.CancelScope(deadline=self.deadline):
            await self.poller._pump(self.sub, self.deadline)
            while self.sub.inbox:
                item = self.sub.inbox.popleft()
                if item.id not in self.pending:
                    continue
                if isinstance(item, _Failed):
                    done.append(self._finish(item.id, self.pending[item.id].last, item.error))
                else:
                    result = await self._observe(item.id, item.resource, item.state, item.at)
                    if result is not None:
                        done.append(result)
            self._absorb_quiet()
        if self.pending and anyio.current_time() >= self.deadline:
            done.extend(await self._time_out())
        return done

    def _finish(self, one: str, resource: R | None, error: BaseException | None) -> WaitResult[R]:
        del self.pending[one]
        self.poller._unregister(self.sub, one)
        return WaitResult(one, resource, error)

    async def _observe(self, one: str, resource: R, state: str, at: float) -> WaitResult[R] | None:
        progress = self.pending[one]
        old = progress.state
        progress.last, progress.state = resource, state
        progress.reads += 1
        await _call_hook(self.on_poll, PollEvent(one, state, resource, at, progress.reads))
        if state != old:
            progress.history.append((state, at))
            event = TransitionEvent(one, old, state, resource, at)
            if self.target is None:
                self.events.append(event)
            await _call_hook(self.on_transition, event)
        table = self.poller.table
        if self.target is None:  # watching: done once nothing more can happen
            done = table.is_settled(state) or state in self.stop_at
            return self._finish(one, resource, None) if done else None
        reason = self._failure(resource)
        if reason is not None:
            return self._finish(one, resource, self._unreachable(one, f"failed: {reason}"))
        target = self.target
        if target.names is not None:
            if state in target.names:
                return self._finish(one, resource, None)
            reachable = state in self.leaving or any(
                table.can_reach(state, n) for n in target.names
            )
        else:
            assert target.predicate is not None
            if target.predicate(resource):
                return self._finish(one, resource, None)
            reachable = state in self.leaving or not table.is_settled(state)
        if not reachable:
            return self._finish(
                one,
                resource,
                self._unreachable(
                    one, f"is {state!r}, from which {target.label} cannot be reached"
                ),
            )
        return None

    def _failure(self, resource: R) -> str | None:
        for check in (self.poller._failed, self.failed):
            if check is not None:
                reason = check(resource)
                if reason:
                    return reason
        return None

    def _detail(self, resource: R | None) -> str | None:
        if resource is None or self.poller._detail_of is None:
            return None
        try:
            return self.poller._detail_of(resource)
        except Exception:  # a detail is a nicety: never let it hide the real error
            return None

    def _unreachable(self, one: str, what: str) -> UnreachableState:
        progress = self.pending[one]
        assert self.target is not None
        message = f"{self.poller.table.name} {one!r} {what}"
        if progress.state is not None and what.startswith("failed"):
            message += f" (state {progress.state!r}, waiting for {self.target.label})"
        detail = self._detail(progress.last)
        if detail:
            message += f"; server says: {detail}"
        return UnreachableState(message, **self._attrs(one))

    def _attrs(self, one: str) -> dict[str, Any]:
        progress = self.pending[one]
        return {
            "last": progress.last,
            "history": list(progress.history),
            "attempts": self.sub.attempts.get(one, 0),
            "elapsed": anyio.current_time() - self.started,
        }

    def _absorb_quiet(self) -> None:
        """Take the newest unchanged reads (posted without waking us) as the last seen."""
        for one, item in self.sub.quiet.items():
            progress = self.pending.get(one)
            if progress is not None:
                progress.last = item.resource
        self.sub.quiet.clear()

    async def _time_out(self) -> list[WaitResult[R]]:
        self._absorb_quiet()
        ids = list(self.pending)
        if self.cancel_remote:
            await self._cancel(ids)
        label = self.target.label if self.target is not None else "a settled state"
        results = []
        for one in ids:
            progress = self.pending[one]
            state = f"last state {progress.state!r}" if progress.state else "no state read"
            notes = [state, f"{self.sub.attempts.get(one, 0)} reads"]
            errors = self.sub.errors.get(one, 0)
            if errors:
                notes.append(f"{errors} failed, last: {self.sub.last_error[one]}")
            if one in self.cancel_outcome:
                outcome = self.cancel_outcome[one]
                notes.append("cancel requested" if outcome is None else f"cancel failed: {outcome}")
            error = WaitTimeout(
                f"{self.poller.table.name} {one!r} did not reach {label} within "
                f"{self.timeout:g} s ({'; '.join(notes)})",
                **self._attrs(one),
            )
            results.append(self._finish(one, progress.last, error))
        return results

    def merge_timeouts(self, timed_out: list[WaitResult[R]]) -> BaseException:
        """One error for a wait_all whose deadline passed: the first pending id's details,
        and a message naming the others."""
        first = timed_out[0].error
        assert isinstance(first, WaitError)
        if len(timed_out) == 1:
            return first
        shown = ", ".join(repr(r.id) for r in timed_out[:5])
        more = ", ..." if len(timed_out) > 5 else ""
        return WaitTimeout(
            f"{len(timed_out)} of {self.total} {self.poller.table.name} waits timed out "
            f"({shown}{more}); first: {first}",
            last=first.last,
            history=first.history,
            attempts=first.attempts,
            elapsed=first.elapsed,
        )

    async def cancelled(self) -> None:
        """The waiting task was cancelled: honour ``on_cancel="cancel"`` for pending ids."""
        if self.cancel_remote and self.pending:
            await self._cancel(list(self.pending))

    async def _cancel(self, ids: list[str]) -> None:
        cancel = self.poller._cancel_remote
        assert cancel is not None
        todo = [one for one in ids if one not in self.cancel_outcome]

        async def one_cancel(one: str) -> None:
            try:
                await cancel(one)
                self.cancel_outcome[one] = None
            except Exception as exc:
                logger.warning("could not cancel %s %r: %r", self.poller.table.name, one, exc)
                self.cancel_outcome[one] = exc

        for one in todo:
            self.cancel_outcome[one] = TimeoutError("cancel did not finish in time")
        # Shielded: the cancel must go out even though this task is being cancelled.
        with anyio.CancelScope(shield=True), anyio.move_on_after(self.poller.cancel_timeout):
            async with anyio.create_task_group() as tg:
                for one in todo:
                    tg.start_soon(one_cancel, one)
