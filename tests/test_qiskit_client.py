"""QiskitRuntimeClient against the emulator over real loopback HTTP: sessions, IAM tokens
(refresh, single-flight, revocation), retries, error shapes, configuration, and secrets."""

from __future__ import annotations

import logging
import socket
from collections.abc import AsyncIterator
from typing import Any

import anyio
import pytest

from aiocompute import (
    APIError,
    AuthenticationError,
    NotFoundError,
    OutcomeUnknown,
    RetryPolicy,
    ServerError,
    TransportError,
    UnreachableState,
    WaitTimeout,
)
from aiocompute._core.config import ConfigError
from aiocompute._core.retries import should_retry
from aiocompute.emulator import Emulator, EmulatorConfig, QiskitEmulatorConfig
from aiocompute.qiskit import QISKIT_RETRY, QiskitRuntimeClient, Session, SessionState
from helpers import QUICK_POLL, make_emulator_on_loop_clock, quick_retry

CRN = "crn:v1:bluemix:public:quantum-computing:us-east:a/abc::"
KEY = "qiskit-key"
FAST = QiskitEmulatorConfig(
    activate_delay=0.05, interactive_ttl=0.4, drain_delay=0.1, pending_inactive_delay=0.0
)
QUICK_RETRY = quick_retry(QISKIT_RETRY)


def client(emu: Emulator, **kwargs: Any) -> QiskitRuntimeClient:
    kwargs.setdefault("token", KEY)
    kwargs.setdefault("instance", CRN)
    kwargs.setdefault("cadence", QUICK_POLL)
    kwargs.setdefault("retry", QUICK_RETRY)
    return QiskitRuntimeClient(base_url=emu.qiskit_url, iam_url=emu.qiskit_iam_url, **kwargs)


pytestmark = [pytest.mark.emulator(seed=3, qiskit=FAST), pytest.mark.virtual_time]


@pytest.fixture
async def q(emu: Emulator) -> AsyncIterator[QiskitRuntimeClient]:
    async with client(emu) as c:
        yield c


# -- sessions -----------------------------------------------------------------------------


async def test_create_get_and_wait_until_active(q: QiskitRuntimeClient, emu: Emulator) -> None:
    created = await q.sessions.create("ibm_kyiv", max_ttl=600)
    assert created.state is SessionState.OPEN
    assert created.backend_name is None  # null while open
    assert created.max_ttl == 600
    assert created.elapsed_time is None
    record = emu.qiskit.sessions[created.id]
    assert (record.backend, record.mode, record.instance) == ("ibm_kyiv", "batch", CRN)

    active = await q.sessions.wait(created.id, timeout=5)
    assert active.state is SessionState.ACTIVE
    assert active.ready
    assert active.backend_name == "ibm_kyiv"
    assert active.activated_at is not None
    assert [t.status for t in active.timestamps] == [SessionState.OPEN, SessionState.ACTIVE]
    got = await q.sessions.get(created.id)
    assert got.id == created.id
    # The headers every API call carried.
    assert emu.qiskit.api_versions == {"2026-04-15"}  # what qiskit-ibm-runtime 0.51 sends


async def test_drain_then_wait_until_closed(q: QiskitRuntimeClient, emu: Emulator) -> None:
    s = await q.sessions.create("ibm_fez", mode="dedicated")
    await q.sessions.wait(s.id, "active", timeout=5)
    await q.sessions.update(s.id)  # accepting_jobs=False by default
    drained = await q.sessions.get(s.id)
    assert drained.accepting_jobs is False
    assert drained.effective_state == "pending_closed"
    # Draining: "active" can no longer come back, so waiting for it fails at once.
    with pytest.raises(UnreachableState, match="pending_closed"):
        await q.sessions.wait(s.id, "inactive", timeout=5)
    closed = await q.sessions.wait(s.id, "closed", timeout=5)
    assert closed.is_closed
    assert isinstance(closed.elapsed_time, float)
    assert closed.state_reason is not None
    assert "accepting_jobs" in closed.state_reason
    states = [t.state for t in emu.qiskit.sessions[s.id].transitions]
    assert states == ["open", "active", "pending_closed", "closed"]


async def test_close_is_immediate_and_wait_for_active_is_unreachable(
    q: QiskitRuntimeClient, emu: Emulator
) -> None:
    s = await q.sessions.create("ibm_torino")
    await q.sessions.close(s.id)
    assert emu.qiskit.sessions[s.id].state == "closed"
    with pytest.raises(UnreachableState) as info:
        await q.sessions.wait(s.id, timeout=5)
    error = info.value
    assert "'closed'" in str(error)
    assert "Closed by the user" in str(error)  # the server's state_reason
    assert isinstance(error.last, Session)
    assert error.last.is_closed
    await q.sessions.close(s.id)  # closing a closed session is fine
    assert emu.stats["qiskit.close_session"] == 2


async def test_offline_backend_closes_the_session(q: QiskitRuntimeClient) -> None:
    s = await q.sessions.create("emu_offline")
    with pytest.raises(UnreachableState, match="went offline") as info:
        await q.sessions.wait(s.id, "active", timeout=5)
    assert [state for state, _ in info.value.history][-1] == "closed"


# On virtual time: the waits' timeouts pass on the loop's clock: two reads at least, always
async def test_wait_timeout_and_cancel_on_timeout() -> None:
    async with (
        make_emulator_on_loop_clock(seed=3, qiskit=FAST) as emu,
        client(emu) as q,
    ):
        s = await q.sessions.create("emu_stuck")
        with pytest.raises(WaitTimeout) as info:
            await q.sessions.wait(s.id, timeout=0.3)
        assert "'open'" in str(info.value)
        assert info.value.attempts >= 2
        assert emu.qiskit.sessions[s.id].state == "open"  # detached: left alone
        with pytest.raises(WaitTimeout):
            await q.sessions.wait(s.id, timeout=0.2, on_cancel="cancel")
        assert emu.qiskit.sessions[s.id].state == "closed"


async def test_wait_all_reads_one_session_per_request_under_a_cap(emu: Emulator) -> None:
    async with client(emu, poll_concurrency=2) as q:
        ids = [(await q.sessions.create("ibm_kyiv")).id for _ in range(6)]
        in_flight = 0
        peak = 0
        request = q._transport.request

        async def counting(*args: Any, **kwargs: Any) -> Any:
            nonlocal in_flight, peak
            in_flight += 1
            peak = max(peak, in_flight)
            try:
                await anyio.sleep(0.01)
                return await request(*args, **kwargs)
            finally:
                in_flight -= 1

        q._transport.request = counting  # type: ignore[method-assign]
        sessions = await q.sessions.wait_all(ids, timeout=5)
        assert [s.id for s in sessions] == ids
        assert all(s.state is SessionState.ACTIVE for s in sessions)
        assert peak == 2
        done = [r.id async for r in q.sessions.as_completed(ids, "active", timeout=5)]
        assert sorted(done) == sorted(ids)
        many = await q.sessions.get_many([*ids[:2], "0" * 20])
        assert set(many) == set(ids[:2])


async def test_watch_sees_each_state() -> None:
    # States last 0.1 s: on virtual time a poll every 50 ms or less sees each of them, however
    # busy the machine is.
    config = QiskitEmulatorConfig(
        activate_delay=0.1, interactive_ttl=0.15, pending_inactive_delay=0.1, ttl_scale=0.001
    )
    async with make_emulator_on_loop_clock(qiskit=config, seed=1) as server, client(server) as q:
        first = await q.sessions.create("ibm_kyiv", max_ttl=500)  # closes after 0.5 s
        # By default a watch ends at the usual target, "active".
        to_active = [e.new_state async for e in q.sessions.watch([first.id], timeout=5)]
        assert to_active == ["open", "active"]
        s = await q.sessions.create("ibm_kyiv", max_ttl=500)
        events = [e async for e in q.sessions.watch([s.id], "closed", timeout=5)]
    states = [e.new_state for e in events]
    assert states == ["open", "active", "pending_inactive", "inactive", "closed"]
    assert events[0].old_state is None


async def test_unknown_session_is_not_found(q: QiskitRuntimeClient) -> None:
    with pytest.raises(NotFoundError) as info:
        await q.sessions.get("f" * 20)
    assert info.value.status == 404
    assert info.value.code == 1217
    assert "Session not found." in info.value.message
    assert "more info" in info.value.message
    with pytest.raises(NotFoundError, match="not found"):
        await q.sessions.wait("f" * 20, timeout=5)


async def test_both_error_shapes_become_messages(emu: Emulator) -> None:
    config = QiskitEmulatorConfig(error_shape="error")
    async with (
        make_emulator_on_loop_clock(config=EmulatorConfig(qiskit=config)) as server,
        client(server) as q,
    ):
        with pytest.raises(NotFoundError, match="Session not found"):
            await q.sessions.get("f" * 20)
    async with client(emu, instance="crn:v1:bluemix:public:quantum-computing:us-east:a/zzz::") as q:
        with pytest.raises(AuthenticationError) as info:
            await q.sessions.create("ibm_kyiv")
        assert info.value.status == 403
        assert info.value.message == "Instance not found or not accessible"
        assert info.value.code == "forbidden"


async def test_bad_arguments_are_refused_before_any_request(
    q: QiskitRuntimeClient, emu: Emulator
) -> None:
    with pytest.raises(ValueError, match="mode"):
        await q.sessions.create("ibm_kyiv", mode="shared")
    with pytest.raises(ValueError, match="session_id"):
        await q.sessions.get("../admin")
    assert emu.stats["total"] == 0
    with pytest.raises(APIError, match="Backend nope not found"):
        await q.sessions.create("nope")


# -- IAM tokens -----------------------------------------------------------------------------


async def test_token_is_fetched_once_and_cached(q: QiskitRuntimeClient, emu: Emulator) -> None:
    s = await q.sessions.create("ibm_kyiv")
    for _ in range(3):
        await q.sessions.get(s.id)
    assert emu.stats["qiskit.iam_token"] == 1
    assert q._auth.fetches == 1


async def test_due_token_is_refreshed_once_for_many_concurrent_calls() -> None:
    # On virtual time, for the emulator and the token cache alike: the sleeps land where they
    # say, however busy the machine is.
    config = QiskitEmulatorConfig(token_lifetime=0.5, activate_delay=0.05)
    async with make_emulator_on_loop_clock(qiskit=config) as emu, client(emu) as q:
        q._auth._clock = anyio.current_time
        s = await q.sessions.create("ibm_kyiv")
        assert emu.stats["qiskit.iam_token"] == 1
        await anyio.sleep(0.42)  # past 80% of the lifetime: due, not yet expired
        results: list[Session] = []

        async def read() -> None:
            results.append(await q.sessions.get(s.id))

        async with anyio.create_task_group() as tg:
            for _ in range(20):
                tg.start_soon(read)
        assert len(results) == 20
        assert emu.stats["qiskit.iam_token"] == 2
        await anyio.sleep(0.55)  # the first token has expired by now: never sent again
        await q.sessions.get(s.id)
        assert emu.stats["qiskit.iam_token"] == 3
        assert emu.stats["qiskit.get_session"] == 21  # no request was rejected


async def test_revoked_token_is_replaced_once_and_the_calls_go_through(
    q: QiskitRuntimeClient, emu: Emulator
) -> None:
    s = await q.sessions.create("ibm_kyiv")
    assert emu.qiskit.revoke_tokens() == 1
    results: list[Session] = []

    async def read() -> None:
        results.append(await q.sessions.get(s.id))

    async with anyio.create_task_group() as tg:
        for _ in range(10):
            tg.start_soon(read)
    assert len(results) == 10
    assert emu.stats["qiskit.iam_token"] == 2  # one refresh for all the 401s
    # Each read went at most twice (once more after its 401); reads sent after the refresh
    # went once, so how many were resent depends on the timing.
    assert 11 <= emu.stats["qiskit.get_session"] <= 20
    # A create rejected with 401 did nothing, so it is sent again with the new token.
    emu.qiskit.revoke_tokens()
    again = await q.sessions.create("ibm_fez")
    assert emu.stats["qiskit.create_session"] == 3
    assert len(emu.qiskit.sessions) == 2
    assert again.id in emu.qiskit.sessions


async def test_wrong_api_key_is_an_authentication_error(emu: Emulator) -> None:
    async with client(emu, token="not-a-real-key") as q:
        with pytest.raises(AuthenticationError) as info:
            await q.sessions.get("abc")
    assert "IBM Cloud IAM refused the API key" in str(info.value)
    assert "could not be found" in str(info.value)
    assert info.value.status == 400
    assert emu.stats["qiskit.iam_token"] == 1  # not retried
    assert emu.stats["qiskit.get_session"] == 0


async def test_secrets_never_leak(
    emu: Emulator, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    caplog.set_level(logging.DEBUG)
    secret_key = "qiskit-super-secret-api-key-42"
    config = QiskitEmulatorConfig(api_keys={secret_key: "user-z"}, activate_delay=0.05)
    errors: list[BaseException] = []
    texts: list[str] = []
    async with make_emulator_on_loop_clock(config=EmulatorConfig(qiskit=config)) as server:
        async with client(server, token=secret_key) as q:
            s = await q.sessions.create("ibm_kyiv")
            stuck = await q.sessions.create("emu_stuck")
            server.faults.error_next["qiskit.get_session"] = 1
            await q.sessions.get(s.id)
            server.faults.error_status = 500
            server.faults.error_next["qiskit.create_session"] = 1
            for call in (
                lambda: q.sessions.get("0" * 20),
                lambda: q.sessions.create("ibm_kyiv"),
                lambda: q.sessions.wait(stuck.id, timeout=0.15),
            ):
                try:
                    await call()
                except Exception as exc:
                    errors.append(exc)
            server.qiskit.revoke_tokens()
            await q.sessions.get(s.id)
            texts += [repr(q), str(q), repr(q._auth)]
        async with client(server, token=secret_key + "-wrong") as bad:
            try:
                await bad.sessions.get(s.id)
            except Exception as exc:
                errors.append(exc)
        tokens = list(server.qiskit.tokens)
    monkeypatch.delenv("QISKIT_IBM_TOKEN", raising=False)
    try:
        QiskitRuntimeClient(token="  ", instance=CRN)
    except Exception as exc:
        errors.append(exc)
    kinds = {type(e) for e in errors}
    assert {NotFoundError, ServerError, WaitTimeout, AuthenticationError, ConfigError} <= kinds
    for exc in errors:
        texts += [str(exc), repr(exc), repr(vars(exc))]
    texts += [r.getMessage() for r in caplog.records]
    assert any("sessions" in r.getMessage() for r in caplog.records)  # logging did happen
    assert len(tokens) == 2
    for text in texts:
        for secret in (secret_key, *tokens):
            assert secret not in text


# -- retries ------------------------------------------------------------------------------


async def test_reads_are_retried_on_the_vendor_statuses(
    q: QiskitRuntimeClient, emu: Emulator
) -> None:
    s = await q.sessions.create("ibm_kyiv")
    for status in (500, 520, 524, 502):
        emu.faults.error_status = status
        emu.faults.error_next["qiskit.get_session"] = 1
        before = emu.stats["qiskit.get_session"]
        assert (await q.sessions.get(s.id)).id == s.id
        assert emu.stats["qiskit.get_session"] == before + 2
    # PATCH is idempotent: retried too.
    emu.faults.error_status = 503
    emu.faults.error_next["qiskit.update_session"] = 1
    await q.sessions.update(s.id, accepting_jobs=False)
    assert emu.stats["qiskit.update_session"] == 2


@pytest.mark.parametrize("status", [500, 503, 520])
async def test_create_and_close_are_not_retried_once_sent(
    q: QiskitRuntimeClient, emu: Emulator, status: int
) -> None:
    emu.faults.error_status = status
    emu.faults.error_next["qiskit.create_session"] = 1
    # A 503 may be a gateway's after the server acted: an unknown outcome, not a "no".
    unknown = status in (502, 503, 504)
    with pytest.raises(OutcomeUnknown if unknown else ServerError) as info:
        await q.sessions.create("ibm_kyiv")
    assert getattr(info.value, "status", None) == status
    assert emu.stats["qiskit.create_session"] == 1
    assert not emu.qiskit.sessions
    s = await q.sessions.create("ibm_kyiv")
    emu.faults.bad_gateway_next["qiskit.close_session"] = 1
    with pytest.raises(OutcomeUnknown, match="502"):
        await q.sessions.close(s.id)
    assert emu.stats["qiskit.close_session"] == 1


def test_create_is_retried_only_when_it_never_left() -> None:
    never_left = TransportError("connection refused", sent=False)
    maybe_arrived = TransportError("connection reset", sent=True)
    maintenance = ServerError("down", status=503)
    policy = QISKIT_RETRY
    assert policy.retry_statuses == {429, 500, 502, 503, 504, 520, 521, 522, 524}
    assert should_retry(policy, attempt=1, idempotent=False, error=never_left)
    assert not should_retry(policy, attempt=1, idempotent=False, error=maybe_arrived)
    assert not should_retry(policy, attempt=1, idempotent=False, error=maintenance)
    assert should_retry(policy, attempt=1, idempotent=True, error=maintenance)


async def test_create_to_a_dead_server_is_retried(emu: Emulator) -> None:
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{sock.getsockname()[1]}/api"
    retries: list[int] = []
    async with QiskitRuntimeClient(
        token=KEY, instance=CRN, base_url=dead, iam_url=emu.qiskit_iam_url, retry=QUICK_RETRY
    ) as q:
        q._transport._on_retry = lambda attempt, error, delay: retries.append(attempt)
        with pytest.raises(TransportError) as info:
            await q.sessions.create("ibm_kyiv")
    assert info.value.sent is False
    assert retries == [1, 2, 3]


async def test_503_says_maintenance(q: QiskitRuntimeClient, emu: Emulator) -> None:
    emu.faults.error_status = 503
    emu.faults.error_next["qiskit.get_session"] = 10
    async with client(emu, retry=RetryPolicy(max_attempts=1)) as once:
        with pytest.raises(ServerError, match="maintenance") as info:
            await once.sessions.get("a" * 20)
    assert info.value.status == 503


# -- configuration --------------------------------------------------------------------------


async def test_settings_from_the_environment(
    emu: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("QISKIT_IBM_TOKEN", KEY)
    monkeypatch.setenv("QISKIT_IBM_INSTANCE", CRN)
    monkeypatch.setenv("AIOCOMPUTE_QISKIT_BASE_URL", emu.qiskit_url)
    async with QiskitRuntimeClient(iam_url=emu.qiskit_iam_url, api_version="2024-01-01") as q:
        s = await q.sessions.create("ibm_kyiv")
        assert s.id in emu.qiskit.sessions
        assert q.instance == CRN
    assert emu.qiskit.api_versions == {"2024-01-01"}


async def test_iam_url_from_the_environment(emu: Emulator, monkeypatch: pytest.MonkeyPatch) -> None:
    # Without iam_url=, tokens come from $QISKIT_IBM_IAM_URL.
    monkeypatch.setenv("QISKIT_IBM_IAM_URL", emu.qiskit_iam_url)
    async with QiskitRuntimeClient(token=KEY, instance=CRN, base_url=emu.qiskit_url) as q:
        assert q._auth.iam_url == emu.qiskit_iam_url
        s = await q.sessions.create("ibm_kyiv")
        assert s.id in emu.qiskit.sessions
    assert emu.stats["qiskit.iam_token"] == 1

    # iam_url= wins over the variable, which here points where nobody listens.
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{sock.getsockname()[1]}/identity/token"
    monkeypatch.setenv("QISKIT_IBM_IAM_URL", dead)
    async with client(emu) as q:
        assert q._auth.iam_url == emu.qiskit_iam_url
        await q.sessions.create("ibm_kyiv")
    assert emu.stats["qiskit.iam_token"] == 2
    # ...and without it, the variable is used: the token fetch fails there.
    async with QiskitRuntimeClient(
        token=KEY, instance=CRN, base_url=emu.qiskit_url, retry=QUICK_RETRY
    ) as q:
        with pytest.raises(TransportError):
            await q.sessions.create("ibm_kyiv")
    assert emu.stats["qiskit.iam_token"] == 2

    # A blank variable means unset (IBM Cloud's endpoint); a malformed one is refused.
    monkeypatch.setenv("QISKIT_IBM_IAM_URL", "  ")
    default = QiskitRuntimeClient(token=KEY, instance=CRN)
    assert default._auth.iam_url == "https://iam.cloud.ibm.com/identity/token"
    monkeypatch.setenv("QISKIT_IBM_IAM_URL", "iam.example.com/token")
    with pytest.raises(ValueError, match="iam_url must be an absolute"):
        QiskitRuntimeClient(token=KEY, instance=CRN)
    with pytest.raises(ConfigError, match="'iam_url' argument is empty"):
        QiskitRuntimeClient(token=KEY, instance=CRN, iam_url="")


def test_missing_settings_name_argument_and_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("QISKIT_IBM_TOKEN", raising=False)
    monkeypatch.delenv("QISKIT_IBM_INSTANCE", raising=False)
    for name in ("QISKIT_IBM_URL", "QISKIT_IBM_IAM_URL", "IAM_URL", "AIOCOMPUTE_QISKIT_BASE_URL"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(ConfigError, match=r"token=.*\$QISKIT_IBM_TOKEN"):
        QiskitRuntimeClient(instance=CRN)
    with pytest.raises(ConfigError, match=r"instance=.*\$QISKIT_IBM_INSTANCE"):
        QiskitRuntimeClient(token=KEY)
    assert repr(QiskitRuntimeClient(token=KEY, instance=CRN)) == (
        "QiskitRuntimeClient('https://quantum.cloud.ibm.com/api')"
    )
    regional = QiskitRuntimeClient(token=KEY, instance=CRN, region="eu-de")
    assert "https://eu-de.quantum.cloud.ibm.com/api" in repr(regional)
    with pytest.raises(ValueError, match="not both"):
        QiskitRuntimeClient(token=KEY, instance=CRN, region="eu-de", base_url="https://x/api")
    with pytest.raises(ValueError, match="api_version"):
        QiskitRuntimeClient(token=KEY, instance=CRN, api_version="v2")
    with pytest.raises(ValueError, match="region"):
        QiskitRuntimeClient(token=KEY, instance=CRN, region="eu/de")


# -- fidelity with IBM's own client (qiskit-ibm-runtime): settings, IAM, create body ------------

EU = "crn:v1:bluemix:public:quantum-computing:eu-de:a/abc:inst::"


@pytest.fixture
def no_qiskit_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in (
        "QISKIT_IBM_TOKEN",
        "QISKIT_IBM_INSTANCE",
        "QISKIT_IBM_URL",
        "QISKIT_IBM_IAM_URL",
        "IAM_URL",
        "AIOCOMPUTE_QISKIT_BASE_URL",
    ):
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def base_of(q: QiskitRuntimeClient) -> str:
    return q._transport.base_url


def test_the_api_base_follows_the_crns_region(no_qiskit_env: pytest.MonkeyPatch) -> None:
    # As IBM's client routes: us-east is the global host, other regions their own.
    assert base_of(QiskitRuntimeClient(token=KEY, instance=CRN)) == (
        "https://quantum.cloud.ibm.com/api"
    )
    assert base_of(QiskitRuntimeClient(token=KEY, instance=EU)) == (
        "https://eu-de.quantum.cloud.ibm.com/api"
    )
    # region= picks another; base_url= (or $AIOCOMPUTE_QISKIT_BASE_URL) gives the base itself.
    assert base_of(QiskitRuntimeClient(token=KEY, instance=EU, region="us-east")) == (
        "https://quantum.cloud.ibm.com/api"
    )
    assert base_of(QiskitRuntimeClient(token=KEY, instance=EU, base_url="https://x.test/api")) == (
        "https://x.test/api"
    )
    no_qiskit_env.setenv("AIOCOMPUTE_QISKIT_BASE_URL", "https://emu.test/qiskit/api")
    assert base_of(QiskitRuntimeClient(token=KEY, instance=EU)) == "https://emu.test/qiskit/api"
    assert base_of(QiskitRuntimeClient(token=KEY, instance=EU, region="eu-de")) == (
        "https://eu-de.quantum.cloud.ibm.com/api"
    )


def test_qiskit_ibm_url_is_the_platform_url(no_qiskit_env: pytest.MonkeyPatch) -> None:
    # A user with IBM's client's settings: QISKIT_IBM_URL is the IBM Cloud platform.
    no_qiskit_env.setenv("QISKIT_IBM_TOKEN", KEY)
    no_qiskit_env.setenv("QISKIT_IBM_INSTANCE", EU)
    no_qiskit_env.setenv("QISKIT_IBM_URL", "https://cloud.ibm.com")
    assert base_of(QiskitRuntimeClient()) == "https://eu-de.quantum.cloud.ibm.com/api"
    no_qiskit_env.setenv("QISKIT_IBM_URL", "https://test.cloud.ibm.com/")
    assert base_of(QiskitRuntimeClient()) == "https://eu-de.quantum.test.cloud.ibm.com/api"
    # An API base there (what it meant here before) is refused, saying what to do instead.
    for api_base in ("https://quantum.cloud.ibm.com/api", "https://quantum.cloud.ibm.com"):
        no_qiskit_env.setenv("QISKIT_IBM_URL", api_base)
        with pytest.raises(ConfigError, match=r"platform URL.*AIOCOMPUTE_QISKIT_BASE_URL"):
            QiskitRuntimeClient()
        # ... unless the API base is given, which wins without reading it.
        assert base_of(QiskitRuntimeClient(base_url="https://x.test/api")) == "https://x.test/api"
    no_qiskit_env.setenv("QISKIT_IBM_URL", "cloud.ibm.com")
    with pytest.raises(ConfigError, match="QISKIT_IBM_URL must be the IBM Cloud platform URL"):
        QiskitRuntimeClient()
    no_qiskit_env.setenv("QISKIT_IBM_URL", "https://me:pa55word@cloud.ibm.com/api")
    with pytest.raises(ConfigError, match="not an API base") as caught:
        QiskitRuntimeClient()
    assert "pa55word" not in str(caught.value)


def test_the_instance_must_look_like_a_crn(no_qiskit_env: pytest.MonkeyPatch) -> None:
    with pytest.raises(ConfigError, match=r"^the instance argument must be a .*instance CRN"):
        QiskitRuntimeClient(token=KEY, instance="my-instance")
    no_qiskit_env.setenv("QISKIT_IBM_INSTANCE", "my-secret-looking-value")
    with pytest.raises(ConfigError, match=r"^\$QISKIT_IBM_INSTANCE must be a .*CRN") as caught:
        QiskitRuntimeClient(token=KEY)
    assert "my-secret-looking-value" not in str(caught.value)  # never echoed: it could be a key
    assert "names are not looked up" in str(caught.value)
    for bad in ("crn:v1:bluemix:public:quantum-computing", "crn:v1:bluemix:public:qc::a/x::"):
        with pytest.raises(ConfigError, match="instance CRN"):
            QiskitRuntimeClient(token=KEY, instance=bad)


async def test_iam_gets_only_its_form(emu: Emulator) -> None:
    # Service-CRN and IBM-API-Version go to the API with the token, never to IAM.
    async with client(emu) as q:
        await q.sessions.create("ibm_kyiv")
    assert emu.qiskit.iam_header_names
    for names in emu.qiskit.iam_header_names:
        assert not names & {"service-crn", "ibm-api-version", "authorization"}
    assert emu.qiskit.api_versions == {"2026-04-15"}


async def test_iam_url_from_ibms_variable(emu: Emulator, no_qiskit_env: pytest.MonkeyPatch) -> None:
    # IBM's client reads $IAM_URL (a base; /identity/token is added): so does this one.
    no_qiskit_env.setenv("IAM_URL", emu.qiskit_iam_url.removesuffix("/identity/token") + "/")
    async with QiskitRuntimeClient(token=KEY, instance=CRN, base_url=emu.qiskit_url) as q:
        assert q._auth.iam_url == emu.qiskit_iam_url
        await q.sessions.create("ibm_kyiv")
    assert emu.stats["qiskit.iam_token"] == 1
    # $QISKIT_IBM_IAM_URL (the full endpoint) comes first.
    no_qiskit_env.setenv("QISKIT_IBM_IAM_URL", "https://iam.example.test/identity/token")
    assert QiskitRuntimeClient(token=KEY, instance=CRN)._auth.iam_url == (
        "https://iam.example.test/identity/token"
    )


async def test_create_sends_what_ibms_client_sends(emu: Emulator) -> None:
    # The instance (the client's CRN) always; max_ttl only when set.
    async with client(emu) as q:
        plain = await q.sessions.create("ibm_kyiv")
        timed = await q.sessions.create("ibm_kyiv", max_ttl=600, mode="dedicated")
    assert emu.qiskit.sessions[plain.id].create_body == {
        "mode": "batch",
        "backend": "ibm_kyiv",
        "instance": CRN,
    }
    assert plain.max_ttl == 28800  # the service's default
    assert emu.qiskit.sessions[timed.id].create_body == {
        "mode": "dedicated",
        "backend": "ibm_kyiv",
        "max_ttl": 600,
        "instance": CRN,
    }


async def test_an_iam_url_with_nothing_there_says_so(emu: Emulator) -> None:
    wrong = emu.qiskit_iam_url.replace("/identity/token", "/nothing/here")
    async with QiskitRuntimeClient(
        token=KEY, instance=CRN, base_url=emu.qiskit_url, iam_url=wrong
    ) as q:
        with pytest.raises(ConfigError, match=r"no IBM Cloud IAM token endpoint.*iam_url"):
            await q.sessions.create("ibm_kyiv")
