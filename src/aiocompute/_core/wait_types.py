"""The values that waits take and give: cadence, events, results, tokens, counters.

Plain frozen data (plus :class:`PollerStats`'s counters) shared by the waiter engine
(:mod:`.polling`), the scheduler (:mod:`.schedule`), one call's bookkeeping
(:mod:`.wait_group`), the resources, the sync twins and the CLI. No I/O here.
"""

from __future__ import annotations

import json
import math
import time
from collections import deque
from collections.abc import Awaitable, Callable, Collection, Mapping, Sequence
from typing import Generic, Literal, TypeVar, Union

from attrs import define, field, frozen

from .checks import number, validator

__all__ = [
    "FetchMany",
    "OnCancel",
    "PollCadence",
    "PollEvent",
    "PollerStats",
    "TransitionEvent",
    "Until",
    "WaitResult",
    "WaitToken",
]

R = TypeVar("R")

#: A read of many ids at once: returns the resources it found, keyed by id.
FetchMany = Callable[[Sequence[str]], Awaitable[Mapping[str, R]]]
#: What a wait waits for: a state name, a collection of names, or a predicate on the resource.
Until = Union[str, Collection[str], Callable[[R], bool]]  # noqa: UP007 (generic alias)
#: ``"detach"`` (just stop waiting) or ``"cancel"`` (also ask the server to cancel).
OnCancel = Literal["detach", "cancel"]


_positive = validator(number, "PollCadence", above=0)


@frozen
class PollCadence:
    """How often to poll: exponential backoff with jitter.

    - ``initial``: the interval after a new wait or a change of state;
    - ``factor``: growth after each poll that saw no change, up to ``max``;
    - ``jitter``: each interval is multiplied by a random factor in ``[1-jitter, 1+jitter]``;
    - ``fast``: the interval (no growth) for an id in one of the table's fast states;
    - ``min_gap``: the least time from the end of one tick of the shared loop to the start
      of the next, whatever is due (it bounds the request rate when waits keep arriving).

    The defaults bottom out at 0.1 s: with shared reads a tick is one request however many
    ids it covers, and waiters that change often keep the loop there. ``fast`` equals
    ``initial`` by default: a fast state is simply never backed off.
    """

    initial: float = field(default=0.1, validator=_positive)
    max: float = field(default=2.0, validator=_positive)
    factor: float = field(default=1.5, validator=validator(number, "PollCadence", minimum=1))
    jitter: float = field(
        default=0.1, validator=validator(number, "PollCadence", minimum=0, below=1)
    )
    fast: float = field(default=0.1, validator=_positive)
    min_gap: float = field(default=0.05, validator=_positive)

    def __attrs_post_init__(self) -> None:
        for name in ("initial", "fast", "min_gap"):
            if getattr(self, name) > self.max:
                raise ValueError(
                    f"PollCadence.{name} ({getattr(self, name)}) exceeds max ({self.max})"
                )


@frozen
class TransitionEvent(Generic[R]):
    """A change of state seen by a wait. ``old_state`` is None for the first state a wait
    sees; ``at`` is the monotonic time (``anyio.current_time()``) of the read."""

    id: str
    old_state: str | None
    new_state: str
    resource: R
    at: float


@frozen
class PollEvent(Generic[R]):
    """One read of one id during a wait: ``attempt`` counts this wait's successful reads."""

    id: str
    state: str
    resource: R
    at: float
    attempt: int


@frozen
class WaitResult(Generic[R]):
    """How one id's wait ended, as yielded by :meth:`Poller.as_completed`.

    ``resource`` is the resource in its target state, or the last one seen (maybe None)
    when ``error`` says why the wait failed.
    """

    id: str
    resource: R | None
    error: BaseException | None = None

    @property
    def ok(self) -> bool:
        """True when the target was reached."""
        return self.error is None

    def unwrap(self) -> R:
        """The resource, or raise the error."""
        if self.error is not None:
            raise self.error
        assert self.resource is not None  # a success always carries its resource
        return self.resource


_TOKEN_VERSION = 1


def _token_error(problem: str) -> ValueError:
    return ValueError(f"invalid wait token: {problem}")


@frozen
class WaitToken:
    """A wait that can be taken up again later, e.g. by another process after a restart.

    ``deadline`` is absolute wall-clock time (``time.time()`` seconds), so the remaining time
    survives the trip. Make one with :meth:`Poller.token`, store :meth:`to_json`, and give
    :meth:`from_json`'s result to the client's ``resume_wait``.
    """

    kind: str
    ids: tuple[str, ...]
    until: tuple[str, ...]
    deadline: float

    def remaining(self, now: float | None = None) -> float:
        """Seconds left before the deadline (negative once it has passed)."""
        return self.deadline - (time.time() if now is None else now)

    def to_json(self) -> str:
        """A compact JSON text of the token."""
        body = {
            "v": _TOKEN_VERSION,
            "kind": self.kind,
            "ids": list(self.ids),
            "until": list(self.until),
            "deadline": self.deadline,
        }
        return json.dumps(body, separators=(",", ":"), sort_keys=True)

    @classmethod
    def from_json(cls, text: str | bytes) -> WaitToken:
        """Read a token written by :meth:`to_json`; ValueError says what is wrong with it."""
        if not isinstance(text, (str, bytes, bytearray)):
            raise TypeError(f"a wait token is JSON text, got {type(text).__name__}")
        problem: str | None = None
        try:
            data = json.loads(text)
        except ValueError as exc:
            problem = f"not JSON ({exc})"
        except RecursionError:
            problem = "nested too deeply"
        if problem is not None:
            raise _token_error(problem)
        if not isinstance(data, dict):
            raise _token_error("expected a JSON object")
        if data.get("v") != _TOKEN_VERSION:
            raise _token_error(f"unsupported version {data.get('v')!r} (expected 1)")
        kind, ids, until, deadline = (data.get(k) for k in ("kind", "ids", "until", "deadline"))
        if not isinstance(kind, str) or not kind:
            raise _token_error("'kind' must be a non-empty string")
        for key, value in (("ids", ids), ("until", until)):
            if (
                not isinstance(value, list)
                or not value
                or not all(isinstance(v, str) and v for v in value)
            ):
                raise _token_error(f"{key!r} must be a non-empty list of non-empty strings")
        if (
            isinstance(deadline, bool)
            or not isinstance(deadline, (int, float))
            or not math.isfinite(deadline)
        ):
            raise _token_error("'deadline' must be a finite number (seconds since the epoch)")
        assert isinstance(ids, list)  # checked just above
        assert isinstance(until, list)
        return cls(kind=kind, ids=tuple(ids), until=tuple(until), deadline=float(deadline))


@define
class PollerStats:
    """Counters of one :class:`Poller`, for tests, benchmarks and the curious.

    ``fetch_calls`` counts ``fetch_many`` calls (requests, for shared reads); ``intervals``
    keeps, for recent ticks, the planned time from the end of the tick to the next one;
    ``settle_calls`` / ``ids_settled`` / ``settle_errors`` count the full reads of a poller
    given ``settle`` (failed ones fell back to the light resource).
    """

    ticks: int = 0
    fetch_calls: int = 0
    ids_fetched: int = 0
    retried_errors: int = 0
    failed_fetches: int = 0
    unknown_states: dict[str, int] = field(factory=dict)
    intervals: deque[float] = field(factory=lambda: deque(maxlen=512))
    settle_calls: int = 0
    ids_settled: int = 0
    settle_errors: int = 0
