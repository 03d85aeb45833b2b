"""The waiter engine's scheduling decisions, with no I/O: when each id is read, and what a
tick reads.

:class:`Schedule` is to the polling loop (:mod:`.poll_loop`) what httpcore's pool logic is
to its connections: it decides, the loop does the reading. It keeps, for every id somebody
waits on, the last state seen, the current interval and the time the id is next due, and
answers four questions:

- when should the next tick start (:meth:`Schedule.next_tick`)?
- which ids does this tick read, in which batches (:meth:`Schedule.plan`)?
- after a read (or a failed one), when is each id due again (:meth:`Schedule.read`,
  :meth:`Schedule.missed`, :meth:`Schedule.failed`, ...)?
- at the end of a tick, what changes for everybody (:meth:`Schedule.finish`)?

The rules are those of :class:`~aiocompute.PollCadence` and the :mod:`.polling` module
docstring. Due times sit in a heap, so a tick that reads a few ids of many costs about as
much as the ids it reads, not as the ids it knows; a shared read of every id (``top_up``
with no ``max_batch``) costs what its request costs anyway.
"""

from __future__ import annotations

import heapq
import math
import random
from collections.abc import Collection

from .wait_types import PollCadence

__all__ = ["Plan", "Schedule"]

# ``_Entry.due`` while a read of the id is in flight: it is not due again until it returns.
_IN_FLIGHT = math.inf


class _Entry:
    """What the schedule knows about one id."""

    __slots__ = ("due", "interval", "key", "misses", "state")

    def __init__(self, interval: float) -> None:
        self.state: str | None = None  # the last state read
        self.interval = interval  # the backoff interval, before jitter
        self.due = _IN_FLIGHT
        self.key = -1  # the heap item that holds ``due`` (older items are stale)
        self.misses = 0  # consecutive reads that did not return the id


class Plan:
    """One tick: which ids it reads, in batches (one ``fetch_many`` call each), and what
    its reads brought (filled in by the :class:`Schedule`'s outcome methods)."""

    __slots__ = ("batches", "cap", "changed", "read", "seq", "settled", "size", "start")

    def __init__(self, seq: int, start: float, batches: list[list[str]], cap: float) -> None:
        self.seq = seq  # ticks planned so far, this one included
        self.start = start
        self.batches = batches
        self.size = sum(map(len, batches))
        self.cap = cap  # the longest interval any id may back off to this tick
        self.changed = False  # some id moved to another state
        self.read: list[str] = []  # ids read successfully (for clustering)
        self.settled = 0  # ids given an outcome (read, missed, failed...)


class Schedule:
    """When each tracked id is read next, and which ids one tick reads.

    ``fast_states`` are polled every ``cadence.fast``; ``max_batch`` is the most ids per
    ``fetch_many`` call; ``top_up`` says whether a request reads many ids for the price of
    one (fill the last batch with the ids due soonest, and shorten every interval when
    anything changes); ``rng`` draws the jitter.
    """

    def __init__(
        self,
        cadence: PollCadence,
        *,
        fast_states: Collection[str],
        max_batch: int | None,
        top_up: bool,
        rng: random.Random,
    ) -> None:
        self.cadence = cadence
        self.fast_states = frozenset(fast_states)
        self.max_batch = max_batch
        self.top_up = top_up
        self._random = rng.random
        # The jitter factor's range, [low, low + span] (see _jittered).
        self._low = 1 - cadence.jitter
        self._span = (1 + cadence.jitter) - self._low
        self._entries: dict[str, _Entry] = {}
        # (due, key, id): an item is current while its entry's key is still ``key``.
        self._heap: list[tuple[float, int, str]] = []
        self._keys = 0
        self.seq = 0
        self._last_tick_end = -math.inf
        self._hold_until = -math.inf

    # -- the ids ----------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, one: object) -> bool:
        return one in self._entries

    def add(self, one: str, now: float) -> None:
        """Track ``one`` (or keep tracking it) and make it due now: a new waiter needs a
        fresh read, not one taken before it came."""
        entry = self._entries.get(one)
        if entry is None:
            entry = self._entries[one] = _Entry(self.cadence.initial)
        self._due(one, entry, now)

    def remove(self, one: str) -> None:
        """Stop tracking ``one`` (nobody waits on it any more)."""
        self._entries.pop(one, None)

    # -- when -------------------------------------------------------------------------------

    def next_tick(self) -> float:
        """When the next tick should start: when the first id is due, but never sooner than
        ``min_gap`` after the last tick ended, nor before a server's Retry-After. ``inf``
        when no id is waiting to be read."""
        heap = self._heap
        entries = self._entries
        while heap:
            due, key, one = heap[0]
            entry = entries.get(one)
            if entry is not None and entry.key == key:
                return max(due, self._last_tick_end + self.cadence.min_gap, self._hold_until)
            heapq.heappop(heap)  # stale: the id was read, rescheduled or dropped since
        return math.inf

    def hold(self, until: float) -> None:
        """Start no tick before ``until`` (a server asked to be left alone)."""
        self._hold_until = max(self._hold_until, until)

    def cap(self) -> float:
        """The longest interval any id may back off to, given how many ids share a tick:
        ``max * sqrt(requests_per_tick / ids)`` for shared reads, ``max`` otherwise."""
        c = self.cadence
        n = len(self._entries)
        if not self.top_up or n <= 1:
            return c.max
        per_tick = math.ceil(n / self.max_batch) if self.max_batch else 1
        return min(c.max, max(c.initial, c.max * math.sqrt(per_tick / n)))

    # -- what a tick reads ------------------------------------------------------------------

    def plan(self, now: float) -> Plan | None:
        """The ids a tick starting at ``now`` reads, or None if none is due. The planned ids
        are in flight until an outcome method (or :meth:`finish`) schedules them again."""
        if self.next_tick() > now:
            return None
        if self.top_up and not self.max_batch:
            # One request reads any number of ids: everybody rides along.
            ids = []
            for one, entry in self._entries.items():
                if entry.due != _IN_FLIGHT:
                    entry.due, entry.key = _IN_FLIGHT, -1
                    ids.append(one)
            self._heap.clear()  # every item is stale now
        else:
            ids = self._take_due(now)
        size = self.max_batch or len(ids)
        batches = [ids[i : i + size] for i in range(0, len(ids), size)]
        self.seq += 1
        return Plan(self.seq, now, batches, self.cap())

    def _take_due(self, now: float) -> list[str]:
        """Pop the due ids, soonest first; with ``top_up``, go on to fill the last batch
        with the ids due next (they ride along for free)."""
        heap = self._heap
        entries = self._entries
        taken: list[str] = []
        room: int | None = None
        while heap:
            due, key, one = heap[0]
            if due > now:
                if not self.top_up or not taken:
                    break
                if room is None:
                    assert self.max_batch is not None  # no max_batch: plan() reads all
                    room = math.ceil(len(taken) / self.max_batch) * self.max_batch
                if len(taken) >= room:
                    break
            heapq.heappop(heap)
            entry = entries.get(one)
            if entry is not None and entry.key == key:
                entry.due, entry.key = _IN_FLIGHT, -1  # taken: its item has left the heap
                taken.append(one)
        return taken

    # -- after a read -----------------------------------------------------------------------

    def read(self, plan: Plan, one: str, state: str) -> None:
        """``one`` was read in ``state``: back off if nothing changed, start over if it did;
        an id in a fast state is read again every ``fast`` seconds. Intervals count from
        the tick's start, so reads stay an interval apart however long they take."""
        # This runs for every id of every tick: the steps of _due and _jittered are written
        # out here (measured: a tick over 10,000 ids, 24-30 -> 18-23 ms of CPU).
        entry = self._entries.get(one)
        if entry is None:
            return
        plan.settled += 1
        c = self.cadence
        entry.misses = 0
        if entry.state == state:
            interval = entry.interval * c.factor
            if interval > plan.cap:
                interval = plan.cap
            entry.interval = interval
        else:
            plan.changed |= entry.state is not None
            entry.interval = interval = c.initial
            entry.state = state
        if state in self.fast_states:
            interval = c.fast
        if c.jitter:
            interval *= self._low + self._span * self._random()
        self._keys += 1
        entry.due = due = plan.start + interval
        entry.key = key = self._keys
        heapq.heappush(self._heap, (due, key, one))
        plan.read.append(one)

    def unreadable(self, plan: Plan, one: str) -> None:
        """``one`` came back, but its state could not be read: try again at its interval."""
        entry = self._entries.get(one)
        if entry is not None:
            plan.settled += 1
            self._due(one, entry, plan.start + self._jittered(entry.interval))

    def missed(self, plan: Plan, one: str) -> int:
        """``one`` was not in the answer (maybe not visible yet): look again soon. Returns
        how many reads in a row have missed it."""
        entry = self._entries.get(one)
        if entry is None:
            return 0
        plan.settled += 1
        entry.misses += 1
        entry.interval = self.cadence.initial
        self._due(one, entry, plan.start + self._jittered(entry.interval))
        return entry.misses

    def failed(self, plan: Plan, one: str, end: float) -> None:
        """The read of ``one`` failed at ``end``: a struggling server gets room, so back off
        up to ``max``, whatever the number of ids."""
        entry = self._entries.get(one)
        if entry is not None:
            plan.settled += 1
            entry.interval = min(entry.interval * self.cadence.factor, self.cadence.max)
            self._due(one, entry, end + self._jittered(entry.interval))

    def again(self, one: str, at: float) -> None:
        """Read ``one`` again at ``at`` (a waiter joined while its read was in flight)."""
        entry = self._entries.get(one)
        if entry is not None:
            self._due(one, entry, at)

    def finish(self, plan: Plan, end: float) -> None:
        """Close the tick that ended at ``end``. With shared reads, a change of any id sets
        every id read back to ``initial`` (activity clusters: resources launched together
        tend to change together). An id the tick did not settle (it was cut short) is due
        at ``end``."""
        self._last_tick_end = end
        c = self.cadence
        if plan.changed and self.top_up:
            for one in plan.read:
                entry = self._entries.get(one)
                if entry is None:
                    continue
                entry.interval = c.initial
                due = plan.start + self._jittered(c.initial)
                if due < entry.due:
                    self._due(one, entry, due)
        if plan.settled < plan.size:  # (or some ids were dropped meanwhile)
            for batch in plan.batches:
                for one in batch:
                    entry = self._entries.get(one)
                    if entry is not None and entry.due == _IN_FLIGHT:
                        self._due(one, entry, end)
        if len(self._heap) > 2 * len(self._entries) + 64:
            self._compact()

    # -- internals --------------------------------------------------------------------------

    def _due(self, one: str, entry: _Entry, when: float) -> None:
        self._keys += 1
        entry.due, entry.key = when, self._keys
        heapq.heappush(self._heap, (when, self._keys, one))

    def _compact(self) -> None:
        """Drop the stale heap items (ids read or rescheduled since they were pushed)."""
        self._heap = [
            (entry.due, entry.key, one)
            for one, entry in self._entries.items()
            if entry.due != _IN_FLIGHT
        ]
        heapq.heapify(self._heap)

    def _jittered(self, interval: float) -> float:
        """``interval`` times a factor drawn from ``[1 - jitter, 1 + jitter]`` (what
        ``rng.uniform`` draws, without its call: this runs for every id read)."""
        if not self.cadence.jitter:
            return interval
        return interval * (self._low + self._span * self._random())
