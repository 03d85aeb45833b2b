"""One call of ``wait`` / ``wait_all`` / ``as_completed`` / ``watch``: its ids, target,
deadline, hooks and progress, and the mailbox through which the polling loop feeds it.

A :class:`WaitGroup` sees the loop only through :class:`Feed` (subscribe its mailbox, wait
for mail, leave an id) and the resource kind's :class:`WaitRules` (state table, failure
check, detail, remote cancel); it knows nothing of how reads are scheduled or made.
"""

from __future__ import annotations

import inspect
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, Generic, Protocol, TypeVar

import anyio
from attrs import frozen

from .._exceptions import UnreachableState, WaitError, WaitTimeout
from .checks import seconds
from .states import StateTable
from .wait_types import PollEvent, TransitionEvent, Until, WaitResult

__all__ = [
    "DONE",
    "Failed",
    "Feed",
    "Mailbox",
    "Seen",
    "Target",
    "WaitGroup",
    "WaitRules",
    "call_hook",
    "check_ids",
    "check_timeout",
    "make_target",
]

logger = logging.getLogger("aiocompute.polling")

R = TypeVar("R")


# --------------------------------------------------------------------------------------------
# Arguments
# --------------------------------------------------------------------------------------------


#: The ``until`` that means "ended, however it ended": any terminal state of the table.
DONE = "done"


@frozen
class Target(Generic[R]):
    """What a wait waits for: state ``names`` or a ``predicate``; ``label`` names it in
    error messages. ``any_end``: the target is ``"done"`` (every terminal state), reached
    however the resource ended, so the resource kind's own failure check (e.g. a job that
    finished with a non-zero exit code) does not turn it into an error."""

    names: frozenset[str] | None
    predicate: Callable[[R], bool] | None
    label: str
    any_end: bool = False


def _state_name(table: StateTable, name: str) -> str:
    """``name`` as the table spells it: normalized, else matched ignoring case (the CLI and
    the library read ``until`` alike: ``finished`` is Workbench's ``Finished``)."""
    normalized = table.normalize(name)
    if normalized in table.states:
        return normalized
    by_case = {state.casefold(): state for state in table.states}
    return by_case.get(normalized.casefold(), normalized)


def make_target(table: StateTable, until: Until[R]) -> Target[R]:
    """Check ``until`` against ``table`` (names matched ignoring case, all known) and label
    it. ``"done"`` (in any case, unless the table has a state of that name) stands for every
    terminal state."""
    if callable(until):
        name = getattr(until, "__qualname__", "")
        label = "the awaited condition" if not name or "<lambda>" in name else name
        return Target(names=None, predicate=until, label=label)
    if isinstance(until, str):
        raw: list[str] = [until]
    elif isinstance(until, Iterable):
        raw = list(until)
    else:
        raise TypeError(f"until must be a state name, names, or a predicate, got {until!r}")
    if not raw or not all(isinstance(n, str) for n in raw):
        raise ValueError(f"until must name at least one state, got {until!r}")
    names = frozenset(_state_name(table, n) for n in raw)
    any_end = DONE not in table.states and any(n.casefold() == DONE for n in names)
    if any_end:
        names = frozenset(n for n in names if n.casefold() != DONE) | table.terminal
    unknown = names - table.states
    if unknown:
        raise ValueError(
            f"{table.name} has no state {', '.join(map(repr, sorted(unknown)))}; "
            f"known: {', '.join(sorted(table.states))} (or {DONE!r}: any terminal state)"
        )
    ordered = sorted(names)
    if any_end:
        label = f"{DONE!r} (any of {', '.join(map(repr, ordered))})"
    elif len(ordered) == 1:
        label = repr(ordered[0])
    else:
        label = "one of " + ", ".join(map(repr, ordered))
    return Target(names=names, predicate=None, label=label, any_end=any_end)


def check_timeout(timeout: object) -> float:
    """``timeout`` as seconds; every wait needs a positive, finite deadline."""
    try:
        return float(seconds(timeout, "timeout"))
    except ValueError:
        # The rule's decision, in the words every wait has always used.
        raise ValueError(
            f"timeout must be a positive, finite number of seconds, got {timeout!r}: "
            "every wait needs a deadline"
        ) from None


def check_ids(ids: Iterable[str]) -> list[str]:
    """``ids`` as a list of non-empty strings (a lone string is refused, not split)."""
    if isinstance(ids, (str, bytes)):
        raise TypeError(f"ids must be a collection of ids, not the single string {ids!r}")
    out = list(ids)
    for one in out:
        if not isinstance(one, str) or not one:
            raise ValueError(f"ids must be non-empty strings, got {one!r}")
    return out


async def call_hook(hook: Callable[[Any], object] | None, event: object) -> None:
    """Call a user's hook, sync or async, if there is one."""
    if hook is None:
        return
    result = hook(event)
    # A sync hook returns None: inspect's ABC check is skipped (10,000 waits: once each).
    if result is not None and inspect.isawaitable(result):
        await result


# --------------------------------------------------------------------------------------------
# Mail from the loop
# --------------------------------------------------------------------------------------------


class Seen(Generic[R]):
    """Mail for a wait: a read of one id."""

    __slots__ = ("at", "id", "resource", "state")

    def __init__(self, id: str, resource: R, state: str, at: float) -> None:
        self.id = id
        self.resource = resource
        self.state = state
        self.at = at


class Failed:
    """Mail for a wait: its id cannot be read (a non-retryable error, or not found)."""

    __slots__ = ("error", "id")

    def __init__(self, id: str, error: BaseException) -> None:
        self.id = id
        self.error = error


class Mailbox(Generic[R]):
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
        self.inbox: deque[Seen[R] | Failed] = deque()
        self.wake = anyio.Event()
        self.min_seq = min_seq  # reads from ticks started before registration are stale
        self.every_read = every_read  # hooks or checks that look at every read
        # What makes a read worth a full (settled) read: see the module docstring.
        self.targets = targets
        self.full_reads = full_reads
        self.seen_state: dict[str, str] = {}
        self.quiet: dict[str, R] = {}
        self.attempts: dict[str, int] = {}
        self.errors: dict[str, int] = {}
        self.last_error: dict[str, BaseException] = {}

    def post(self, item: Seen[R] | Failed) -> None:
        """Put ``item`` in the inbox and wake the waiting task."""
        if isinstance(item, Seen):
            self.quiet.pop(item.id, None)
        if not self.inbox:  # (a task with mail waiting is not asleep: wake it once)
            self.wake.set()
        self.inbox.append(item)

    def wants_full(self, state: str) -> bool:
        """Whether this wait would rather see the full resource for a read in ``state``."""
        if self.full_reads:
            return True
        return self.targets is not None and state in self.targets

    def post_read(self, one: str, resource: R, state: str, at: float) -> None:
        """Post a read, but wake the waiting task only if it can change the outcome: with
        a thousand waiters, waking each on every unchanged read would dominate the CPU."""
        if self.every_read or self.seen_state.get(one) != state:
            self.seen_state[one] = state
            self.post(Seen(one, resource, state, at))
        else:
            self.quiet[one] = resource  # only the newest matters (for WaitError.last)


class Progress(Generic[R]):
    __slots__ = ("history", "last", "reads", "state")

    def __init__(self) -> None:
        self.last: R | None = None
        self.state: str | None = None
        self.history: list[tuple[str, float]] = []
        self.reads = 0


# --------------------------------------------------------------------------------------------
# What a wait sees of the loop and of the resource kind
# --------------------------------------------------------------------------------------------


class Feed(Protocol[R]):
    """The polling loop, as a wait sees it."""

    def subscribe(
        self,
        ids: Iterable[str],
        *,
        every_read: bool,
        targets: frozenset[str] | None,
        full_reads: bool,
    ) -> Mailbox[R]:
        """A mailbox for reads of ``ids``, from the next tick on (see :class:`Mailbox`)."""
        ...

    def leave(self, mailbox: Mailbox[R], one: str) -> None:
        """Stop posting reads of ``one`` to ``mailbox``."""
        ...

    async def next_mail(self, mailbox: Mailbox[R], deadline: float) -> None:
        """Return once ``mailbox`` has mail or ``deadline`` has passed, driving the loop
        meanwhile if nobody else does."""
        ...


@frozen
class WaitRules(Generic[R]):
    """What one kind of resource's waits share, from the :class:`~.polling.Poller`."""

    table: StateTable
    failed: Callable[[R], str | None] | None = None
    detail_of: Callable[[R], str | None] | None = None
    cancel_remote: Callable[[str], Awaitable[object]] | None = None
    cancel_timeout: float = 10.0


# --------------------------------------------------------------------------------------------
# One call
# --------------------------------------------------------------------------------------------


class WaitGroup(Generic[R]):
    """One call of wait / wait_all / as_completed / watch: its ids, deadline and progress."""

    def __init__(
        self,
        feed: Feed[R],
        rules: WaitRules[R],
        ids: list[str],
        target: Target[R] | None,
        timeout: float,
        failed: Callable[[R], str | None] | None,
        on_transition: Callable[[TransitionEvent[R]], object] | None,
        on_poll: Callable[[PollEvent[R]], object] | None,
        cancel_remote: bool,
        leaving: frozenset[str],
        stop_at: frozenset[str] = frozenset(),
    ) -> None:
        self.feed = feed
        self.rules = rules
        self.target = target
        self.timeout = timeout
        self.started = anyio.current_time()
        self.deadline = self.started + timeout
        self.failed = failed
        # Failures that are not states: the resource kind's check (not for "done", which
        # takes an end however it came), then this wait's own.
        kind_check = None if target is not None and target.any_end else rules.failed
        self.checks = [check for check in (kind_check, failed) if check is not None]
        self.on_transition = on_transition
        self.on_poll = on_poll
        self.cancel_remote = cancel_remote
        self.leaving = leaving
        # watch(): states besides settled ones at which an id is done (e.g. "running").
        self.stop_at = stop_at
        self.total = len(dict.fromkeys(ids))
        self.pending: dict[str, Progress[R]] = {one: Progress() for one in ids}
        self.events: deque[TransitionEvent[R]] = deque()
        self.cancel_outcome: dict[str, BaseException | None] = {}
        every_read = on_poll is not None or bool(self.checks)
        if target is not None and target.predicate is not None:
            every_read = True
        # The wait's own code decides on every read: it may look at any field.
        decides = failed is not None or (target is not None and target.predicate is not None)
        self.mailbox: Mailbox[R] = feed.subscribe(
            self.pending,
            every_read=every_read,
            targets=target.names if target is not None else None,
            full_reads=decides,
        )

    @property
    def finished(self) -> bool:
        return not self.pending

    def close(self) -> None:
        for one in self.pending:  # (finished ids have left already)
            self.feed.leave(self.mailbox, one)
        self.pending.clear()

    async def step(self) -> list[WaitResult[R]]:
        """Wait for news; return the ids that finished (all pending ones at the deadline)."""
        done: list[WaitResult[R]] = []
        with anyio.CancelScope(deadline=self.deadline):
            await self.feed.next_mail(self.mailbox, self.deadline)
            while self.mailbox.inbox:
                item = self.mailbox.inbox.popleft()
                if item.id not in self.pending:
                    continue
                if isinstance(item, Failed):
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
        self.feed.leave(self.mailbox, one)
        return WaitResult(one, resource, error)

    async def _observe(self, one: str, resource: R, state: str, at: float) -> WaitResult[R] | None:
        progress = self.pending[one]
        old = progress.state
        progress.last, progress.state = resource, state
        progress.reads += 1
        # Events are built only for someone who looks at them (10,000 waits, every tick).
        if self.on_poll is not None:
            await call_hook(self.on_poll, PollEvent(one, state, resource, at, progress.reads))
        if state != old:
            progress.history.append((state, at))
            if self.target is None or self.on_transition is not None:
                event = TransitionEvent(one, old, state, resource, at)
                if self.target is None:
                    self.events.append(event)
                await call_hook(self.on_transition, event)
        table = self.rules.table
        if self.target is None:  # watching: done once nothing more can happen
            done = table.is_settled(state) or state in self.stop_at
            return self._finish(one, resource, None) if done else None
        reason = self._failure(resource) if self.checks else None
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
        for check in self.checks:
            reason = check(resource)
            if reason:
                return reason
        return None

    def _detail(self, resource: R | None) -> str | None:
        if resource is None or self.rules.detail_of is None:
            return None
        try:
            return self.rules.detail_of(resource)
        except Exception:  # a detail is a nicety: never let it hide the real error
            return None

    def _unreachable(self, one: str, what: str) -> UnreachableState:
        progress = self.pending[one]
        assert self.target is not None
        message = f"{self.rules.table.name} {one!r} {what}"
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
            "attempts": self.mailbox.attempts.get(one, 0),
            "elapsed": anyio.current_time() - self.started,
        }

    def _absorb_quiet(self) -> None:
        """Take the newest unchanged reads (posted without waking us) as the last seen."""
        for one, resource in self.mailbox.quiet.items():
            progress = self.pending.get(one)
            if progress is not None:
                progress.last = resource
        self.mailbox.quiet.clear()

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
            notes = [state, f"{self.mailbox.attempts.get(one, 0)} reads"]
            errors = self.mailbox.errors.get(one, 0)
            if errors:
                notes.append(f"{errors} failed, last: {self.mailbox.last_error[one]}")
            if one in self.cancel_outcome:
                outcome = self.cancel_outcome[one]
                notes.append("cancel requested" if outcome is None else f"cancel failed: {outcome}")
            error = WaitTimeout(
                f"{self.rules.table.name} {one!r} did not reach {label} within "
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
            f"{len(timed_out)} of {self.total} {self.rules.table.name} waits timed out "
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
        cancel = self.rules.cancel_remote
        assert cancel is not None
        todo = [one for one in ids if one not in self.cancel_outcome]

        async def one_cancel(one: str) -> None:
            try:
                await cancel(one)
                self.cancel_outcome[one] = None
            except Exception as exc:
                logger.warning("could not cancel %s %r: %r", self.rules.table.name, one, exc)
                self.cancel_outcome[one] = exc

        for one in todo:
            self.cancel_outcome[one] = TimeoutError("cancel did not finish in time")
        # Shielded: the cancel must go out even though this task is being cancelled.
        with anyio.CancelScope(shield=True), anyio.move_on_after(self.rules.cancel_timeout):
            async with anyio.create_task_group() as tg:
                for one in todo:
                    tg.start_soon(one_cancel, one)
