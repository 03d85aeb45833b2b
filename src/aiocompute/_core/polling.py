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
mentioned in the :class:`WaitTimeout` if the deadline passes). An unreadable answer
(:class:`ProtocolError`: a truncated body, a proxy's HTML page) is read again too, up to three
times in a row for an id, then fails the waits on that id only; any other error from the read
is raised by every wait whose id was in the failed request. An id absent from a read is handed to
``on_missing`` (if given); after ``missing_after`` consecutive absences the wait raises
:class:`NotFoundError`.

Light polls, settled results
----------------------------
A poll only needs each id's state, but a wait must return the whole resource. An API whose
reads can be narrowed (e.g. a ``fields`` list) gives a light ``fetch_many`` and a ``settle(ids)
-> {id: resource}`` full read: when a batch of light reads brings ids to a wait's named
target, they are read once more through ``settle`` (one call for the batch, made as soon as
its light read is in, while the tick's other batches may still be in flight) and the full
resources go to the waits. A wait whose own code decides on every
read (a predicate ``until``, or its own ``failed`` check) may look at any field, so all its
reads are settled. So ``settle`` costs one small read per finishing batch, while the polls
that see nothing new stay light. If ``settle`` fails (whatever the error: it is not retried)
or leaves an id out, the wait gets the light resource: a wait that reached its target never
fails because the full read did, and the next light poll would meet a lasting error anyway.
A settled resource's state is read again (it may have moved on since the light read) and
decides the wait.

Where the parts live
--------------------
- :mod:`.polling` (here): :class:`Poller`, what an API builds and its resources call: the
  public waits, their arguments, wait tokens; and :class:`PerIdFetcher`;
- :mod:`.schedule`: the scheduling decisions (which ids are due, batches, cadence, Retry-After),
  plain code with no I/O;
- :mod:`.poll_loop`: the shared loop that runs them: driving, reads, ``settle``, mail;
- :mod:`.wait_group`: one call's ids, deadline, hooks and outcome, fed through a mailbox;
- :mod:`.wait_types`: the values waits take and give; :mod:`.states`: the state tables.

Light resources still reach: :class:`UnreachableState` / :class:`WaitTimeout` ``last``, the
poller's own ``failed`` and ``detail_of`` (the API makes its light reads carry what these
need), ``on_poll`` / ``on_transition`` hooks (except for the read that ends the wait at its
target), :meth:`Poller.watch` events, and a wait's ``last`` between settled reads.
"""

from __future__ import annotations

import random
import time
from collections.abc import (
    AsyncGenerator,
    Awaitable,
    Callable,
    Collection,
    Iterable,
    Mapping,
    Sequence,
)
from typing import Generic, Literal, TypeVar, overload

import anyio

from .._exceptions import NotFoundError, WaitTimeout
from .checks import count
from .poll_loop import PollLoop, is_retryable
from .states import StateTable
from .wait_group import (
    DONE,
    Target,
    WaitGroup,
    WaitRules,
    check_ids,
    check_timeout,
    make_target,
)
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

R = TypeVar("R")


# --------------------------------------------------------------------------------------------
# Per-id reads
# --------------------------------------------------------------------------------------------


class PerIdFetcher(Generic[R]):
    """A ``fetch_many`` made of one read per id, at most ``concurrency`` at a time.

    An id whose read raises :class:`NotFoundError` is left out of the result (the poller's
    missing-id policy applies). If other reads fail, the whole call raises one of their
    errors, a non-retryable one first, so that a real problem is not retried away.
    A :class:`Poller` given one polls only the ids that are due (every id costs a request).
    """

    def __init__(self, fetch_one: Callable[[str], Awaitable[R]], concurrency: int) -> None:
        count(concurrency, "concurrency", minimum=1)
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
            fatal = [e for e in errors if not is_retryable(e)]
            raise (fatal or errors)[0]
        return found


def per_id_fetcher(
    fetch_one: Callable[[str], Awaitable[R]], concurrency: int = 8
) -> PerIdFetcher[R]:
    """Build a ``fetch_many`` from ``fetch_one(id)`` for APIs that read one id per request."""
    return PerIdFetcher(fetch_one, concurrency)


# --------------------------------------------------------------------------------------------
# The engine: what an API builds, and what its resources call
# --------------------------------------------------------------------------------------------


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
      ``fetch_many`` call that brought any. On any error, or for an id it leaves out, the
      light resource is used. Light resources may still be seen in ``WaitTimeout.last`` /
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
            count(value, name, minimum=1)
        self.table = table
        self.kind = kind or table.name
        self.cadence = cadence or PollCadence()
        self.max_batch = max_batch
        self.top_up = (not isinstance(fetch_many, PerIdFetcher)) if top_up is None else top_up
        self.batch_concurrency = batch_concurrency
        self.missing_after = missing_after
        self.cancel_timeout = check_timeout(cancel_timeout)
        self._rules = WaitRules(
            table,
            failed=failed,
            detail_of=detail_of,
            cancel_remote=cancel_remote,
            cancel_timeout=self.cancel_timeout,
        )
        self._loop: PollLoop[R] = PollLoop(
            table,
            fetch_many,
            state_of=state_of,
            kind=self.kind,
            cadence=self.cadence,
            max_batch=max_batch,
            top_up=self.top_up,
            batch_concurrency=batch_concurrency,
            missing_after=missing_after,
            on_missing=on_missing,
            settle=settle,
            rng=rng or random.Random(),
        )

    # -- lifetime ---------------------------------------------------------------------------

    async def __aenter__(self) -> Poller[R]:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """End every wait in progress (they raise :class:`~aiocompute.ClientClosedError`) and
        refuse new ones. Idempotent."""
        await self._loop.aclose()

    @property
    def closed(self) -> bool:
        """Whether :meth:`aclose` was called."""
        return self._loop.closed

    @property
    def watched_ids(self) -> frozenset[str]:
        """The ids somebody is waiting on right now."""
        return self._loop.watched_ids

    @property
    def stats(self) -> PollerStats:
        """Counters of this poller's loop (see :class:`PollerStats`)."""
        return self._loop.stats

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

        ``until`` is a state name (in any case), a collection of names, ``"done"`` (any
        terminal state), or a predicate on the resource. ``timeout`` (seconds, finite,
        required) ends the wait with :class:`WaitTimeout`. A state from which ``until`` can
        no longer come, or a ``failed`` reason (this one or the poller's), ends it at once
        with :class:`UnreachableState`; except that ``"done"`` returns the resource however
        it ended (the poller's ``failed`` is not consulted; a wait's own one still is).
        ``on_transition`` / ``on_poll`` (sync or async) are called in this task for each
        change / read. ``on_cancel="cancel"`` asks the server to cancel the resource
        (``cancel_remote``, shielded) if the wait times out or is cancelled. ``leaving``
        names states the resource is expected to leave (e.g. ``suspended`` right after
        asking to resume): while in them the wait keeps polling instead of giving up.
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
        id_list = check_ids(ids)
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
        id_list = check_ids(ids)
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
        id_list = check_ids(ids)
        stop_at = frozenset() if until is None else self._target(until).names or frozenset()
        group = self._group(id_list, None, timeout, None, None, None, "detach", (), stop_at)
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
        id_list = check_ids(ids)
        if not id_list:
            raise ValueError("a wait token needs at least one id")
        target = self._target(until)
        assert target.names is not None
        deadline = time.time() + check_timeout(timeout)
        return WaitToken(
            kind=self.kind,
            ids=tuple(dict.fromkeys(id_list)),
            # "done" stays "done": a resumed wait must take any end as this one would.
            until=(DONE,) if target.any_end else tuple(sorted(target.names)),
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

    def _target(self, until: Until[R]) -> Target[R]:
        return make_target(self.table, until)

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
        stop_at: frozenset[str] = frozenset(),
    ) -> WaitGroup[R]:
        seconds = check_timeout(timeout)
        target = None if until is None else self._target(until)
        if on_cancel not in ("detach", "cancel"):
            raise ValueError(f"on_cancel must be 'detach' or 'cancel', got {on_cancel!r}")
        if on_cancel == "cancel" and self._rules.cancel_remote is None:
            raise ValueError(f"{self.table.name} waits cannot cancel remotely (no cancel_remote)")
        if isinstance(leaving, str):
            leaving = [leaving]
        self._loop.check_open()
        return WaitGroup(
            self._loop,
            self._rules,
            ids,
            target,
            seconds,
            failed,
            on_transition,
            on_poll,
            on_cancel == "cancel",
            frozenset(self.table.normalize(s) for s in leaving),
            stop_at,
        )
