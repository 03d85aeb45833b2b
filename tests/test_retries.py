"""Pure layer: the retry policy, Retry-After parsing, backoff, and the retry driver.

The driver is run without an event loop: with a fake sleep and a fake clock it never
suspends, so one ``coro.send(None)`` runs it to the end.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Awaitable, Callable, Coroutine
from datetime import datetime, timedelta, timezone
from email.utils import format_datetime
from typing import Any, TypeVar

import pytest
from hypothesis import given
from hypothesis import strategies as st

from aiocompute._core import retries as retries_module
from aiocompute._core.retries import (
    DEFAULT_RETRY,
    NO_RETRY,
    RetryPolicy,
    backoff_delay,
    call_with_retries,
    parse_retry_after,
    should_retry,
)
from aiocompute._exceptions import (
    APIError,
    AuthenticationError,
    NotFoundError,
    RateLimitError,
    ServerError,
    TransportError,
    api_error_for,
)

T = TypeVar("T")


def run(coro: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine that never suspends (fake sleep) to completion."""
    try:
        coro.send(None)
    except StopIteration as stop:
        return stop.value  # type: ignore[no-any-return]
    coro.close()
    raise AssertionError("the coroutine suspended; the fakes should never suspend")


class FakeTime:
    """A clock that only moves when something sleeps or a try 'takes time'."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    async def sleep(self, delay: float) -> None:
        self.sleeps.append(delay)
        self.now += delay


def failing(errors: list[BaseException], result: Any = "ok") -> tuple[Callable[[], Any], list[int]]:
    """fn raising the given errors in order, then returning result; counts calls."""
    calls = [0]

    async def fn() -> Any:
        calls[0] += 1
        if errors:
            raise errors.pop(0)
        return result

    return fn, calls


def refused() -> TransportError:
    return TransportError("connection refused", sent=False, retryable=True)


def dropped() -> TransportError:
    return TransportError("server disconnected", sent=True, retryable=True)


# ---------------------------------------------------------------- policy


def test_policy_defaults_match_the_contract() -> None:
    p = RetryPolicy()
    assert p.max_attempts == 4
    assert p.backoff_initial == 0.2
    assert p.backoff_max == 8.0
    assert p.total_timeout == 30.0
    assert p.retry_statuses == frozenset({429, 502, 503, 504})
    assert p.honour_retry_after is True
    assert p.retry_after_max == 60.0
    assert p == DEFAULT_RETRY
    assert NO_RETRY.max_attempts == 1


def test_replace_returns_a_validated_copy() -> None:
    p = RetryPolicy()
    q = p.replace(max_attempts=2, retry_statuses=[503])
    assert (q.max_attempts, q.retry_statuses) == (2, frozenset({503}))
    assert p.max_attempts == 4  # frozen original untouched
    with pytest.raises(ValueError, match="max_attempts"):
        p.replace(max_attempts=0)


@pytest.mark.parametrize(
    ("changes", "error", "where"),
    [
        ({"max_attempts": 0}, ValueError, "max_attempts"),
        ({"max_attempts": 2.5}, TypeError, "max_attempts"),
        ({"backoff_initial": -1}, ValueError, "backoff_initial"),
        ({"backoff_max": float("inf")}, ValueError, "backoff_max"),
        ({"total_timeout": "30"}, TypeError, "total_timeout"),
        ({"retry_after_max": float("nan")}, ValueError, "retry_after_max"),
        ({"retry_statuses": {503, 42}}, ValueError, "retry_statuses"),
    ],
)
def test_bad_policy_values_say_which_field(
    changes: dict[str, Any], error: type[Exception], where: str
) -> None:
    with pytest.raises(error, match=where):
        RetryPolicy(**changes)


# ---------------------------------------------------------------- Retry-After

NOW = datetime(2025, 5, 1, 12, 0, 0, tzinfo=timezone.utc)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("120", 120.0),
        ("  7 ", 7.0),
        ("0", 0.0),
        ("1.5", 1.5),
        ("-3", 0.0),
        ("Thu, 01 May 2025 12:00:30 GMT", 30.0),
        ("Thu, 01 May 2025 11:00:00 GMT", 0.0),  # in the past
        ("soon", None),
        ("", None),
        ("   ", None),
        (None, None),
        ("12 seconds", None),
        ("nan", None),
        ("inf", None),
        ("Thu, 99 Foo 2025 12:00:30 GMT", None),
    ],
)
def test_parse_retry_after(value: str | None, expected: float | None) -> None:
    assert parse_retry_after(value, now=NOW) == expected


def test_parse_retry_after_date_defaults_to_current_time() -> None:
    in_a_minute = format_datetime(datetime.now(timezone.utc) + timedelta(seconds=60), usegmt=True)
    seconds = parse_retry_after(in_a_minute)
    assert seconds is not None
    assert 55 <= seconds <= 61


def test_parse_retry_after_accepts_naive_now_as_utc() -> None:
    naive = NOW.replace(tzinfo=None)
    assert parse_retry_after("Thu, 01 May 2025 12:01:00 GMT", now=naive) == 60.0


@given(st.text(max_size=40))
def test_parse_retry_after_never_raises_and_is_never_negative(value: str) -> None:
    result = parse_retry_after(value, now=NOW)
    assert result is None or result >= 0.0


# ---------------------------------------------------------------- should_retry


def status_error(status: int) -> APIError:
    return api_error_for(status, f"status {status}")


@pytest.mark.parametrize("status", [429, 502, 503, 504])
def test_idempotent_calls_retry_on_retry_statuses(status: int) -> None:
    error = status_error(status)
    assert isinstance(error, (RateLimitError, ServerError))
    assert should_retry(RetryPolicy(), attempt=1, idempotent=True, error=error)


@pytest.mark.parametrize("status", [400, 401, 403, 404, 409, 422, 500, 501])
def test_never_retry_other_statuses(status: int) -> None:
    assert not should_retry(RetryPolicy(), attempt=1, idempotent=True, error=status_error(status))


@pytest.mark.parametrize("status", [500, 502, 503, 504])
def test_non_idempotent_calls_never_retry_an_answer_that_may_have_acted(status: int) -> None:
    # A 503 to a launch may come after the launch happened.
    assert not should_retry(RetryPolicy(), attempt=1, idempotent=False, error=status_error(status))


def test_non_idempotent_calls_retry_a_429_refusal() -> None:
    # 429 refuses the request before acting on it: a launch may be sent again...
    assert should_retry(RetryPolicy(), attempt=1, idempotent=False, error=status_error(429))
    # ...within the policy: not past its attempts, not when 429 is not a retry status.
    assert not should_retry(RetryPolicy(), attempt=4, idempotent=False, error=status_error(429))
    no_429 = RetryPolicy(retry_statuses=frozenset({503}))
    assert not should_retry(no_429, attempt=1, idempotent=False, error=status_error(429))
    # A Workbench RPC error carrying code 429 in a 200 body counts the same.
    rpc = api_error_for(200, "too many requests", code=429)
    assert should_retry(RetryPolicy(), attempt=1, idempotent=False, error=rpc)


def test_transport_errors() -> None:
    p = RetryPolicy()
    assert should_retry(p, attempt=1, idempotent=True, error=dropped())
    assert should_retry(p, attempt=1, idempotent=True, error=refused())
    assert should_retry(p, attempt=1, idempotent=False, error=refused())
    assert not should_retry(p, attempt=1, idempotent=False, error=dropped())
    tls = TransportError("certificate verify failed", sent=False, retryable=False)
    assert not should_retry(p, attempt=1, idempotent=True, error=tls)
    assert not should_retry(p, attempt=1, idempotent=False, error=tls)


def test_rpc_error_code_in_a_200_body_counts_as_its_status() -> None:
    # Workbench reports errors inside HTTP 200 bodies, with an HTTP-like code.
    busy = api_error_for(200, "service unavailable", code=503)
    assert should_retry(RetryPolicy(), attempt=1, idempotent=True, error=busy)
    missing = api_error_for(200, "job not found", code=404)
    assert isinstance(missing, NotFoundError)
    assert not should_retry(RetryPolicy(), attempt=1, idempotent=True, error=missing)


def test_custom_statuses_and_attempt_limit() -> None:
    p = RetryPolicy(max_attempts=3, retry_statuses={500})
    assert should_retry(p, attempt=1, idempotent=True, error=status_error(500))
    assert not should_retry(p, attempt=1, idempotent=True, error=status_error(503))
    assert should_retry(p, attempt=2, idempotent=True, error=dropped())
    assert not should_retry(p, attempt=3, idempotent=True, error=dropped())
    assert not should_retry(NO_RETRY, attempt=1, idempotent=True, error=dropped())


def test_other_exceptions_are_never_retried() -> None:
    for error in (ValueError("bug"), KeyError("x"), asyncio.CancelledError()):
        assert not should_retry(RetryPolicy(), attempt=1, idempotent=True, error=error)


errors_strategy = st.one_of(
    st.builds(TransportError, st.just("x"), retryable=st.booleans(), sent=st.booleans()),
    st.integers(min_value=100, max_value=599).map(status_error),
    st.builds(lambda code: api_error_for(200, "rpc", code=code), st.integers(-5, 700)),
    st.just(ValueError("x")),
)


@given(
    error=errors_strategy,
    attempt=st.integers(min_value=1, max_value=20),
    max_attempts=st.integers(min_value=1, max_value=10),
)
def test_non_idempotent_is_retried_only_when_surely_not_acted_on(
    error: BaseException, attempt: int, max_attempts: int
) -> None:
    p = RetryPolicy(max_attempts=max_attempts)
    decision = should_retry(p, attempt=attempt, idempotent=False, error=error)
    if decision:
        assert attempt < max_attempts
        if isinstance(error, APIError):  # only a 429 refusal, by status or RPC code
            assert 429 in (error.status, error.code)
        else:
            assert isinstance(error, TransportError)
            assert error.sent is False
            assert error.retryable is True


# ---------------------------------------------------------------- backoff


@given(
    attempt=st.integers(min_value=1, max_value=10_000),
    initial=st.floats(min_value=0, max_value=5),
    maximum=st.floats(min_value=0, max_value=60),
    seed=st.integers(0, 2**32),
)
def test_backoff_within_bounds(attempt: int, initial: float, maximum: float, seed: int) -> None:
    p = RetryPolicy(backoff_initial=initial, backoff_max=maximum)
    delay = backoff_delay(p, attempt, retry_after=None, rng=random.Random(seed))
    assert 0.0 <= delay <= min(maximum, initial * 2.0 ** min(attempt - 1, 64))
    assert delay <= maximum


@given(
    attempt=st.integers(min_value=1, max_value=50),
    retry_after=st.floats(min_value=0, max_value=10_000),
    cap=st.floats(min_value=0, max_value=120),
    seed=st.integers(0, 2**32),
)
def test_retry_after_is_honoured_up_to_its_cap(
    attempt: int, retry_after: float, cap: float, seed: int
) -> None:
    p = RetryPolicy(retry_after_max=cap)
    delay = backoff_delay(p, attempt, retry_after=retry_after, rng=random.Random(seed))
    assert delay >= min(retry_after, cap)
    assert delay <= max(min(retry_after, cap), p.backoff_max)


def test_backoff_grows_exponentially_then_caps() -> None:
    p = RetryPolicy(backoff_initial=1.0, backoff_max=5.0)

    class Top(random.Random):
        def uniform(self, a: float, b: float) -> float:
            return b  # the top of the jitter range shows the ceiling

    ceilings = [backoff_delay(p, n, retry_after=None, rng=Top()) for n in range(1, 6)]
    assert ceilings == [1.0, 2.0, 4.0, 5.0, 5.0]


def test_retry_after_ignored_when_not_honoured() -> None:
    p = RetryPolicy(honour_retry_after=False, backoff_initial=0.1)
    delay = backoff_delay(p, 1, retry_after=30.0, rng=random.Random(1))
    assert delay <= 0.1


def test_retry_after_shorter_than_backoff_keeps_the_jitter() -> None:
    p = RetryPolicy(backoff_initial=4.0, backoff_max=4.0)

    class Top(random.Random):
        def uniform(self, a: float, b: float) -> float:
            return b

    assert backoff_delay(p, 1, retry_after=1.0, rng=Top()) == 4.0


# ---------------------------------------------------------------- driver


def drive(
    fn: Callable[[], Awaitable[T]],
    policy: RetryPolicy,
    *,
    idempotent: bool = True,
    fake: FakeTime | None = None,
    on_retry: Callable[[int, BaseException, float], None] | None = None,
) -> T:
    fake = fake or FakeTime()
    return run(
        call_with_retries(
            fn,
            policy,
            idempotent=idempotent,
            rng=random.Random(0),
            sleep=fake.sleep,
            clock=fake.clock,
            on_retry=on_retry,
        )
    )


def test_driver_retries_until_success() -> None:
    fake = FakeTime()
    fn, calls = failing([status_error(503), dropped()])
    seen: list[tuple[int, str, float]] = []
    result = drive(
        fn, RetryPolicy(), fake=fake, on_retry=lambda a, e, d: seen.append((a, type(e).__name__, d))
    )
    assert result == "ok"
    assert calls[0] == 3
    assert [(a, n) for a, n, _ in seen] == [(1, "ServerError"), (2, "TransportError")]
    assert fake.sleeps == [d for _, _, d in seen]


def test_driver_reraises_the_last_error_unchanged_when_attempts_run_out() -> None:
    last = status_error(429)
    fn, calls = failing([status_error(429), status_error(429), last, status_error(429)])
    with pytest.raises(RateLimitError) as info:
        drive(fn, RetryPolicy(max_attempts=3))
    assert info.value is last
    assert calls[0] == 3


def test_driver_does_not_retry_a_launch_after_a_dropped_connection() -> None:
    fn, calls = failing([dropped()])
    with pytest.raises(TransportError):
        drive(fn, RetryPolicy(), idempotent=False)
    assert calls[0] == 1


def test_driver_retries_a_launch_when_the_connection_was_refused() -> None:
    fn, calls = failing([refused(), refused()])
    assert drive(fn, RetryPolicy(), idempotent=False) == "ok"
    assert calls[0] == 3


def test_driver_raises_non_retryable_errors_at_once() -> None:
    fn, calls = failing([AuthenticationError("bad token", status=401)])
    with pytest.raises(AuthenticationError):
        drive(fn, RetryPolicy())
    assert calls[0] == 1


def test_driver_uses_the_servers_retry_after() -> None:
    fake = FakeTime()
    hinted = api_error_for(429, "slow down", retry_after=12.0)
    fn, _ = failing([hinted])
    assert drive(fn, RetryPolicy(), fake=fake) == "ok"
    assert fake.sleeps == [12.0]


def test_driver_gives_up_when_the_wait_would_exceed_the_budget() -> None:
    fake = FakeTime()
    fn, calls = failing([api_error_for(429, "later", retry_after=45.0)])
    with pytest.raises(RateLimitError) as info:
        drive(fn, RetryPolicy(total_timeout=30.0), fake=fake)
    assert info.value.retry_after == 45.0  # the caller still learns how long to wait
    assert calls[0] == 1
    assert fake.sleeps == []


def test_driver_lets_cancellation_through() -> None:
    cancelled = asyncio.CancelledError
    fn, calls = failing([cancelled()])
    with pytest.raises(cancelled):
        drive(fn, RetryPolicy())
    assert calls[0] == 1


def test_driver_logs_retries_at_debug_without_secrets(caplog: pytest.LogCaptureFixture) -> None:
    fn, _ = failing([TransportError("refused; Authorization: Bearer abc.def.ghi", sent=False)])
    with caplog.at_level(logging.DEBUG, logger="aiocompute"):
        drive(fn, RetryPolicy())
    retries = [r for r in caplog.records if "retrying" in r.getMessage()]
    assert len(retries) == 1
    assert retries[0].levelno == logging.DEBUG
    assert retries[0].name == "aiocompute.retries"
    assert "abc.def.ghi" not in retries[0].getMessage()


@given(
    outcomes=st.lists(
        st.tuples(
            st.sampled_from(["503", "429", "dropped", "refused", "ok"]),
            st.floats(min_value=0, max_value=20),  # time the try takes
            st.one_of(st.none(), st.floats(min_value=0, max_value=100)),  # Retry-After
        ),
        min_size=1,
        max_size=15,
    ),
    max_attempts=st.integers(min_value=1, max_value=8),
    total=st.floats(min_value=0, max_value=40),
    idempotent=st.booleans(),
    seed=st.integers(0, 1000),
)
def test_driver_never_exceeds_attempts_or_budget(
    outcomes: list[tuple[str, float, float | None]],
    max_attempts: int,
    total: float,
    idempotent: bool,
    seed: int,
) -> None:
    fake = FakeTime()
    started = fake.now
    policy = RetryPolicy(max_attempts=max_attempts, total_timeout=total, backoff_max=5.0)
    calls = [0]

    async def fn() -> str:
        kind, takes, retry_after = outcomes[min(calls[0], len(outcomes) - 1)]
        calls[0] += 1
        fake.now += takes
        if kind == "503":
            raise status_error(503)
        if kind == "429":
            raise api_error_for(429, "slow", retry_after=retry_after)
        if kind == "dropped":
            raise dropped()
        if kind == "refused":
            raise refused()
        return "ok"

    sleep_ends: list[float] = []

    async def sleep(delay: float) -> None:
        sleep_ends.append(fake.now + delay - started)
        await fake.sleep(delay)

    with contextlib.suppress(APIError, TransportError):
        run(
            call_with_retries(
                fn,
                policy,
                idempotent=idempotent,
                rng=random.Random(seed),
                sleep=sleep,
                clock=fake.clock,
            )
        )
    assert 1 <= calls[0] <= max_attempts
    assert sum(fake.sleeps) <= total + 1e-9
    assert len(fake.sleeps) == calls[0] - 1  # one wait between two tries, none after
    # No wait ever started that would end past the budget (time of the tries included).
    assert all(end <= total + 1e-9 for end in sleep_ends)


def test_driver_without_an_rng_makes_one_per_call(monkeypatch: pytest.MonkeyPatch) -> None:
    made: list[random.Random] = []

    class Counting(random.Random):
        def __init__(self) -> None:
            super().__init__(0)
            made.append(self)

    monkeypatch.setattr(retries_module.random, "Random", Counting)
    fake = FakeTime()

    def go(fn: Callable[[], Awaitable[str]]) -> str:
        return run(
            call_with_retries(
                fn, RetryPolicy(), idempotent=True, sleep=fake.sleep, clock=fake.clock
            )
        )

    ok, _ = failing([])
    assert go(ok) == "ok"
    assert len(made) == 1
    flaky, calls = failing([status_error(503), status_error(503)])
    assert go(flaky) == "ok"
    assert calls[0] == 3
    assert len(made) == 2  # one for the whole call, however many retries
    assert len(fake.sleeps) == 2
    assert all(0 <= s <= RetryPolicy().backoff_max for s in fake.sleeps)
