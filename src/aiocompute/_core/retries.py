"""Retry policy (pure) and the one async retry driver.

Everything here except :func:`call_with_retries` is pure: it takes plain values and returns
plain values, so the rules can be tested exhaustively without a network or an event loop.

The rules, in one place:

- Reads, and any call the caller declares ``idempotent``, are retried on a
  :class:`TransportError` whose ``retryable`` is true, and on an :class:`APIError` whose status
  is in :attr:`RetryPolicy.retry_statuses` (by default 429, 502, 503, 504).
- A call that may create or destroy something (``idempotent=False``: a launch, a stop) is
  retried only when the request surely never reached the server: a retryable
  :class:`TransportError` with ``sent == False`` (connection refused, DNS failure, connect
  timeout), or a 429, which refuses a request before acting on it. A 503 or a dropped
  connection after sending may mean the launch happened.
- 500 and 4xx other than 429 are never retried by default.
- Waits use exponential backoff with *full jitter*; a server's ``Retry-After`` is honoured
  (see :func:`backoff_delay`).
- The driver stops when the attempts are used up or when the next wait would take the time
  spent past :attr:`RetryPolicy.total_timeout`, and re-raises the last error unchanged, so
  callers can still catch :class:`RateLimitError` and friends.
"""

from __future__ import annotations

import logging
import math
import random
import re
from collections.abc import Awaitable, Callable, Collection
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime
from typing import Any, TypeVar

import anyio
import attrs
from attrs import field, frozen

from .._exceptions import APIError, TransportError
from .checks import count, number

__all__ = [
    "DEFAULT_RETRY",
    "NO_RETRY",
    "RetryPolicy",
    "backoff_delay",
    "call_with_retries",
    "parse_retry_after",
    "should_retry",
]

T = TypeVar("T")

logger = logging.getLogger("aiocompute.retries")


def _non_negative(name: str) -> Callable[[Any, Any, float], None]:
    def check(_inst: Any, _attr: Any, value: float) -> None:
        number(value, f"RetryPolicy.{name}", minimum=0)

    return check


def _check_attempts(_inst: Any, _attr: Any, value: int) -> None:
    count(value, "RetryPolicy.max_attempts", minimum=1)  # 1 = no retry


def _to_statuses(value: Collection[int]) -> frozenset[int]:
    statuses = frozenset(value)
    for status in statuses:
        count(status, "a status in RetryPolicy.retry_statuses", minimum=100, maximum=599)
    return statuses


@frozen
class RetryPolicy:
    """How a call is retried.

    ``max_attempts`` counts every try, the first included (1 = never retry).
    ``backoff_initial`` / ``backoff_max`` bound the exponential backoff, in seconds.
    ``total_timeout`` caps the time spent on the call and its retries (waits included): no
    retry is started whose wait would end past it. ``retry_statuses`` are the HTTP statuses
    an idempotent call is retried on. ``honour_retry_after`` makes the driver wait at least
    what the server's ``Retry-After`` asks, capped at ``retry_after_max`` seconds.

    Use :meth:`replace` for per-call overrides: ``policy.replace(max_attempts=1)``.
    """

    max_attempts: int = field(default=4, validator=_check_attempts)
    backoff_initial: float = field(default=0.2, validator=_non_negative("backoff_initial"))
    backoff_max: float = field(default=8.0, validator=_non_negative("backoff_max"))
    total_timeout: float = field(default=30.0, validator=_non_negative("total_timeout"))
    retry_statuses: frozenset[int] = field(
        default=frozenset({429, 502, 503, 504}), converter=_to_statuses
    )
    honour_retry_after: bool = True
    retry_after_max: float = field(default=60.0, validator=_non_negative("retry_after_max"))

    def replace(self, **changes: Any) -> RetryPolicy:
        """Return a copy with ``changes`` applied (validated like the constructor)."""
        return attrs.evolve(self, **changes)


#: The default policy: 4 tries, 0.2 s .. 8 s backoff, 30 s overall.
DEFAULT_RETRY = RetryPolicy()

#: A policy that never retries.
NO_RETRY = RetryPolicy(max_attempts=1)


_DELTA_SECONDS = re.compile(r"^[+-]?\d+(\.\d+)?$")


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Read a ``Retry-After`` header value as seconds to wait.

    Accepts delta-seconds (``"120"``; a fraction is tolerated) or an HTTP-date
    (``"Wed, 21 Oct 2015 07:28:00 GMT"``, measured from ``now``, default: the current UTC
    time). Returns None for a missing or unreadable value; a negative delta or a date in
    the past gives 0.
    """
    if value is None:
        return None
    text = value.strip()
    if not text:
        return None
    if _DELTA_SECONDS.match(text):
        return max(0.0, float(text))
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when.tzinfo is None:  # HTTP-dates are GMT by definition
        when = when.replace(tzinfo=timezone.utc)
    reference = now if now is not None else datetime.now(timezone.utc)
    if reference.tzinfo is None:
        reference = reference.replace(tzinfo=timezone.utc)
    return max(0.0, (when - reference).total_seconds())


def _effective_status(error: APIError) -> int | None:
    # An RPC error inside a 200 body carries the real status in its code (Workbench).
    status = error.status
    code = error.code
    if (status is None or status < 400) and isinstance(code, int) and 400 <= code <= 599:
        return code
    return status


def should_retry(
    policy: RetryPolicy, *, attempt: int, idempotent: bool, error: BaseException
) -> bool:
    """Whether a call that just failed with ``error`` may be tried again.

    ``attempt`` is the number of tries done so far (1 after the first failure). See the
    module docstring for the rules; in short, a non-idempotent call is retried only when the
    request never left (``TransportError.sent`` is False) or was refused with a 429.
    """
    if attempt >= policy.max_attempts:
        return False
    if isinstance(error, TransportError):
        if not error.retryable:
            return False
        return idempotent or not error.sent
    if isinstance(error, APIError):
        status = _effective_status(error)
        if status not in policy.retry_statuses:
            return False
        # A 429 refuses the request before acting on it (RFC 6585), so even a launch may
        # be sent again; any other answer to a launch may mean it happened.
        return idempotent or status == 429
    return False


# 2**64 * any sane initial already exceeds any sane backoff_max; stops float overflow.
_MAX_EXPONENT = 64


def backoff_delay(
    policy: RetryPolicy, attempt: int, *, retry_after: float | None, rng: random.Random
) -> float:
    """Seconds to wait after try number ``attempt`` (1-based) failed.

    Full jitter: uniform in ``[0, min(backoff_max, backoff_initial * 2**(attempt-1))]``, so
    many clients that failed together do not come back together.

    When the server sent ``Retry-After`` and the policy honours it, the wait is
    ``max(min(retry_after, retry_after_max), jittered)``: never shorter than the server
    asked (up to the cap), and still jittered when the hint is shorter than the backoff.
    This is the only case in which the wait may exceed ``backoff_max``.
    """
    exponent = min(max(attempt, 1) - 1, _MAX_EXPONENT)
    ceiling = min(policy.backoff_max, policy.backoff_initial * 2.0**exponent)
    delay = rng.uniform(0.0, ceiling) if ceiling > 0 else 0.0
    if retry_after is not None and policy.honour_retry_after and math.isfinite(retry_after):
        delay = max(min(max(retry_after, 0.0), policy.retry_after_max), delay)
    return delay


def _retry_after_of(error: BaseException) -> float | None:
    value = getattr(error, "retry_after", None)
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    return None


async def call_with_retries(
    fn: Callable[[], Awaitable[T]],
    policy: RetryPolicy,
    *,
    idempotent: bool,
    rng: random.Random | None = None,
    sleep: Callable[[float], Awaitable[Any]] = anyio.sleep,
    clock: Callable[[], float] = anyio.current_time,
    on_retry: Callable[[int, BaseException, float], None] | None = None,
) -> T:
    """Await ``fn()`` until it succeeds or the policy says stop; return its result.

    ``fn`` is called afresh for each try. When a try fails, :func:`should_retry` decides;
    if the wait from :func:`backoff_delay` would take the elapsed time (measured with
    ``clock`` from the first try) past ``policy.total_timeout``, the driver stops. On stop,
    the last error is re-raised as is. ``on_retry(attempt, error, delay)`` is called before
    each wait. ``sleep``, ``clock`` and ``rng`` are injectable for tests (the transport
    passes an ``rng`` of its own: seeding a new one reads the system's entropy). Cancellation
    is never retried.
    """
    if rng is None:
        rng = random.Random()
    started = clock()
    attempt = 0
    while True:
        attempt += 1
        try:
            return await fn()
        except Exception as error:
            if not should_retry(policy, attempt=attempt, idempotent=idempotent, error=error):
                raise
            delay = backoff_delay(policy, attempt, retry_after=_retry_after_of(error), rng=rng)
            elapsed = clock() - started
            if elapsed + delay > policy.total_timeout:
                logger.debug(
                    "not retrying after attempt %d: %.2fs spent + %.2fs wait > %.2fs budget",
                    attempt,
                    elapsed,
                    delay,
                    policy.total_timeout,
                )
                raise
            # The error's text is already redacted by the error classes.
            logger.debug(
                "retrying after attempt %d/%d in %.3fs: %s: %s",
                attempt,
                policy.max_attempts,
                delay,
                type(error).__name__,
                error,
            )
            if on_retry is not None:
                on_retry(attempt, error, delay)
        # Outside the except block: an error raised while waiting must not chain the last one.
        await sleep(delay)
