"""The waiter engine's I/O: the shared polling loop that runs the :class:`~.schedule.Schedule`.

:class:`PollLoop` holds the mailboxes of the waits in progress (one per call, see
:mod:`.wait_group`), lets one waiting task at a time drive the ticks, makes each tick's
reads (``fetch_many``, ``on_missing``, ``settle``) and posts what they bring to the
mailboxes. Every decision about *when* and *which ids* comes from the schedule; how the
loop is shared, handed over and closed is told in the :mod:`.polling` module docstring.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Awaitable, Callable, Collection, Iterable, Mapping, Sequence
from typing import Generic, TypeVar

import anyio
import anyio.lowlevel

from .._exceptions import (
    ClientClosedError,
    NotFoundError,
    ProtocolError,
    RateLimitError,
    ServerError,
    TransportError,
)
from .schedule import Plan, Schedule
from .states import StateTable
from .wait_group import Failed, Mailbox
from .wait_types import FetchMany, PollCadence, PollerStats

__all__ = ["PollLoop", "is_retryable"]

logger = logging.getLogger("aiocompute.polling")

R = TypeVar("R")

#: A read that ``settle`` should redo in full: the mailboxes to post it to, the id, the
#: light resource, its state, and when it was read.
_Held = tuple[list[Mailbox[R]], str, R, str, float]


#: How many unreadable answers in a row an id's waits ride through before they fail.
UNREADABLE_IN_A_ROW = 3


def is_retryable(exc: BaseException) -> bool:
    """Whether a failed read is worth trying again until the wait's deadline."""
    if isinstance(exc, TransportError):
        return exc.retryable
    return isinstance(exc, (ServerError, RateLimitError))


class PollLoop(Generic[R]):
    """The polling loop of one :class:`~.polling.Poller`: mailboxes, driving, reads.

    Arguments as in :class:`~.polling.Poller` (checked there).
    """

    def __init__(
        self,
        table: StateTable,
        fetch_many: FetchMany[R],
        *,
        state_of: Callable[[R], str],
        kind: str,
        cadence: PollCadence,
        max_batch: int | None,
        top_up: bool,
        batch_concurrency: int,
        missing_after: int,
        on_missing: Callable[[Sequence[str]], Awaitable[Mapping[str, R]]] | None,
        settle: Callable[[Sequence[str]], Awaitable[Mapping[str, R]]] | None,
        rng: random.Random,
    ) -> None:
        self.table = table
        self.kind = kind
        self.batch_concurrency = batch_concurrency
        self.missing_after = missing_after
        self.stats = PollerStats()
        self.schedule = Schedule(
            cadence,
            fast_states=table.fast,
            max_batch=max_batch,
            top_up=top_up,
            rng=rng,
        )
        self._fetch_many = fetch_many
        self._state_of = state_of
        self._on_missing = on_missing
        self._settle_read = settle
        self._known = table.states
        self._boxes: dict[str, dict[Mailbox[R], None]] = {}  # id -> its mailboxes (ordered)
        # Unreadable answers in a row, by id (see _apply_error).
        self._unreadable: dict[str, int] = {}
        # The highest min_seq given to a mailbox: a tick planned at or after it has no
        # stale readers (see _apply).
        self._newest_box = 0
        self._driver: Mailbox[R] | None = None
        self._idle: dict[Mailbox[R], None] = {}  # waiting tasks that may take over the loop
        self._kick: anyio.Event | None = None
        self._tick_scope: anyio.CancelScope | None = None
        self.closed = False

    # -- lifetime ---------------------------------------------------------------------------

    async def aclose(self) -> None:
        """Wake every waiting task (they raise ClientClosedError) and end the tick."""
        self.closed = True
        if self._tick_scope is not None:
            self._tick_scope.cancel()
        if self._kick is not None:
            self._kick.set()
        for box in list(self._idle):
            box.wake.set()
        for boxes in self._boxes.values():
            for box in boxes:
                box.wake.set()
        await anyio.lowlevel.checkpoint()

    @property
    def watched_ids(self) -> frozenset[str]:
        """The ids somebody is waiting on right now."""
        return frozenset(self._boxes)

    def check_open(self) -> None:
        """Raise ClientClosedError once the loop is closed."""
        if self.closed:
            raise ClientClosedError(f"the {self.table.name} poller is closed (so is its client)")

    # -- the Feed a wait sees ---------------------------------------------------------------

    def subscribe(
        self,
        ids: Iterable[str],
        *,
        every_read: bool,
        targets: frozenset[str] | None,
        full_reads: bool,
    ) -> Mailbox[R]:
        """A mailbox for reads of ``ids``; reads from ticks already started are stale."""
        box: Mailbox[R] = Mailbox(
            self.schedule.seq + 1, every_read, targets=targets, full_reads=full_reads
        )
        self._newest_box = box.min_seq
        now = anyio.current_time()
        for one in ids:
            boxes = self._boxes.get(one)
            if boxes is None:  # (not setdefault: that builds a dict for every id)
                boxes = self._boxes[one] = {}
            boxes[box] = None
            self.schedule.add(one, now)
            box.attempts[one] = 0
        if self._kick is not None:
            self._kick.set()
        return box

    def leave(self, mailbox: Mailbox[R], one: str) -> None:
        """Stop posting reads of ``one`` to ``mailbox``; forget ids nobody waits on."""
        boxes = self._boxes.get(one)
        if boxes is not None:
            boxes.pop(mailbox, None)
            if not boxes:
                del self._boxes[one]
                self.schedule.remove(one)

    async def next_mail(self, mailbox: Mailbox[R], deadline: float) -> None:
        """Return once ``mailbox`` has mail or the deadline has passed; drive the loop
        meanwhile if nobody else does."""
        try:
            while not mailbox.inbox:
                self.check_open()
                now = anyio.current_time()
                if now >= deadline:
                    return
                if self._driver is None:
                    self._driver = mailbox
                    try:
                        await self._drive(mailbox, deadline)
                    finally:
                        self._driver = None
                else:
                    mailbox.wake = anyio.Event()
                    self._idle[mailbox] = None
                    try:
                        with anyio.move_on_after(deadline - now):
                            await mailbox.wake.wait()
                    finally:
                        self._idle.pop(mailbox, None)
        finally:
            # Hand the loop over (whether we drove it or were about to take it over).
            if self._driver is None:
                for successor in self._idle:
                    successor.wake.set()
                    break

    # -- driving ----------------------------------------------------------------------------

    async def _drive(self, me: Mailbox[R], deadline: float) -> None:
        while not me.inbox and not self.closed:
            now = anyio.current_time()
            if now >= deadline:
                return
            when = self.schedule.next_tick()
            if when > now:
                self._kick = anyio.Event()
                with anyio.move_on_after(min(when, deadline) - now):
                    await self._kick.wait()
                continue
            # Let waits started in the same instant register, so one read covers them all.
            await anyio.lowlevel.checkpoint()
            await self._tick()

    async def _tick(self) -> None:
        now = anyio.current_time()
        plan = self.schedule.plan(now)
        if plan is None:
            return
        self.stats.ticks += 1
        reads_ended = now

        async def one_batch(batch: list[str]) -> None:
            # Each batch goes its own way (read, post, settle, post) while the others are
            # in flight, so the server answers one while the client decodes another.
            nonlocal reads_ended
            outcome = await self._read(batch)
            end = anyio.current_time()
            reads_ended = max(reads_ended, end)
            if isinstance(outcome, Exception):
                self._apply_error(plan, batch, outcome, end)
                return
            held: list[_Held[R]] = []
            self._apply(plan, batch, outcome, end, held)
            if held:
                # After the light reads are posted, so waits they woke run meanwhile.
                await self._post_full(held)

        try:
            with anyio.CancelScope() as self._tick_scope:
                if len(plan.batches) == 1:
                    await one_batch(plan.batches[0])
                else:
                    limiter = anyio.Semaphore(self.batch_concurrency)

                    async def limited(batch: list[str]) -> None:
                        async with limiter:
                            await one_batch(batch)

                    async with anyio.create_task_group() as tg:
                        for batch in plan.batches:
                            tg.start_soon(limited, batch)
        finally:
            self._tick_scope = None
            # min_gap counts from the end of the polls, not of the full reads.
            self.schedule.finish(plan, reads_ended)
        if self._boxes:
            self.stats.intervals.append(self.schedule.next_tick() - now)

    # -- reads ------------------------------------------------------------------------------

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

    async def _post_full(self, held: list[_Held[R]]) -> None:
        """Read the held ids of one batch through ``settle`` (one call) and post the full
        resources; the light one stays where the full read fails or lacks an id."""
        settle = self._settle_read
        assert settle is not None
        ids = list(dict.fromkeys(one for _, one, _, _, _ in held))
        self.stats.settle_calls += 1
        self.stats.ids_settled += len(ids)
        got: Mapping[str, R] = {}
        try:
            got = await settle(ids)
        except Exception as exc:  # the light read is good enough: never fail the wait
            self.stats.settle_errors += 1
            logger.debug("full read of %s failed, using the polled one: %r", self.kind, exc)
        for boxes, one, resource, state, at in held:
            full = got.get(one)
            if full is not None:
                try:
                    full_state = self.table.normalize(self._state_of(full))
                    if isinstance(full_state, str):
                        resource, state = full, full_state
                except Exception:  # an unreadable full read: keep the light one
                    self.stats.settle_errors += 1
            for box in boxes:
                box.post_read(one, resource, state, at)

    # -- what a read brings -----------------------------------------------------------------

    def _apply(
        self,
        plan: Plan,
        batch: list[str],
        got: Mapping[str, R],
        end: float,
        held: list[_Held[R]],
    ) -> None:
        """Post one successful read to the mailboxes and have the schedule plan the next.
        Reads that a wait wants in full (with ``settle``) go to ``held`` instead. This runs
        for every id of every tick (10,000 ids: 10,000 times), so it stays lean."""
        schedule = self.schedule
        normalize, state_of, known = self.table.normalize, self._state_of, self._known
        settles = self._settle_read is not None
        seq = plan.seq
        # Reads from a tick that started before a wait subscribed are stale to it; unless
        # no wait has subscribed since this tick was planned (the rule), every mailbox of
        # an id reads it, and no list of them is built per id.
        all_fresh = self._newest_box <= seq
        subs: Collection[Mailbox[R]]
        for one in batch:
            boxes = self._boxes.get(one)
            if boxes is None:
                continue  # nobody waits any more
            subs = boxes if all_fresh else [box for box in boxes if box.min_seq <= seq]
            for sub in subs:
                sub.attempts[one] += 1
            if one not in got:
                self._missing(plan, one, subs)
                continue
            resource = got[one]
            if self._unreadable:
                self._unreadable.pop(one, None)  # read again: its streak is over
            try:
                state = normalize(state_of(resource))
                if not isinstance(state, str):
                    raise TypeError(f"state_of returned {type(state).__name__}")
            except Exception as exc:
                bad = ProtocolError(f"could not read the state of {self.table.name} {one!r}: {exc}")
                for sub in subs:
                    sub.post(Failed(one, bad))
                schedule.unreadable(plan, one)
                continue
            if state not in known:
                self._unknown(state)
            schedule.read(plan, one, state)
            if len(subs) < len(boxes):
                schedule.again(one, end)  # a waiter that joined mid-read needs its own read
            if settles:
                for sub in subs:
                    if sub.wants_full(state):
                        # A copy: the mailboxes of ``one`` may change before it is posted.
                        held.append((list(subs), one, resource, state, end))
                        break
                else:
                    for sub in subs:
                        sub.post_read(one, resource, state, end)
            else:
                for sub in subs:
                    sub.post_read(one, resource, state, end)

    def _missing(self, plan: Plan, one: str, subs: Collection[Mailbox[R]]) -> None:
        misses = self.schedule.missed(plan, one)
        if misses >= self.missing_after:
            error = NotFoundError(
                f"{self.table.name} {one!r} was not found ({misses} reads in a row)"
            )
            for sub in subs:
                sub.post(Failed(one, error))

    def _unknown(self, state: str) -> None:
        count = self.stats.unknown_states.get(state, 0)
        if not count:
            logger.warning("unknown %s state %r (treated as transient)", self.table.name, state)
        self.stats.unknown_states[state] = count + 1

    def _apply_error(self, plan: Plan, batch: list[str], error: Exception, end: float) -> None:
        retry = is_retryable(error)
        unreadable = isinstance(error, ProtocolError)
        if retry or unreadable:
            self.stats.retried_errors += 1
            logger.debug("polling %s failed, will retry: %r", self.table.name, error)
            if isinstance(error, RateLimitError) and error.retry_after:
                self.schedule.hold(end + error.retry_after)
        else:
            self.stats.failed_fetches += 1
        for one in batch:
            boxes = self._boxes.get(one)
            if boxes is None:
                continue
            if unreadable:
                # An unreadable answer (a truncated body, a proxy's HTML page with a 200) is
                # read again like a transient error, up to UNREADABLE_IN_A_ROW times in a
                # row for an id; then only the waits on that id fail.
                streak = self._unreadable[one] = self._unreadable.get(one, 0) + 1
                retry = streak <= UNREADABLE_IN_A_ROW
            for sub in [box for box in boxes if box.min_seq <= plan.seq]:
                sub.attempts[one] += 1
                if retry:
                    sub.errors[one] = sub.errors.get(one, 0) + 1
                    sub.last_error[one] = error
                else:
                    sub.post(Failed(one, error))
            if unreadable and not retry:
                del self._unreadable[one]
            self.schedule.failed(plan, one, end)
