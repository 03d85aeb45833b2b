"""LakeSailClient against the embedded emulator over real loopback HTTP: every endpoint,
pagination, error mapping, retries, configuration, and credentials kept out of every text.

Waits live in test_lakesail_waits.py.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

import pytest

from aiocompute import (
    APIError,
    AuthenticationError,
    NotFoundError,
    OutcomeUnknown,
    Paginator,
    ProtocolError,
)
from aiocompute._core.config import ConfigError
from aiocompute.emulator import Emulator, EmulatorConfig, LakeSailEmulatorConfig
from aiocompute.lakesail import (
    LakeSailClient,
    SailConfig,
    Session,
    SessionConfig,
    SessionList,
    SessionStatus,
    SessionToken,
    WorkloadConfig,
    WorkloadSettings,
)
from helpers import QUICK_RETRY, make_emulator_on_loop_clock

# A distinctive credential: if it ever shows up in a text, it leaked.
SECRET = "lsk-Zq81vX-5f3c9e2d7a-secret"
TOKENS = {
    "lakesail-token": ("MALICE", "member"),
    "lakesail-bob-token": ("MBOB", "member"),
    "lakesail-admin-token": ("MADMIN", "org_admin"),
    "lakesail-sa-key": ("SACIBOT", "service_account"),
    SECRET: ("MCAROL", "member"),
}
FAST = LakeSailEmulatorConfig(tokens=TOKENS, provision_delay=0.02, idle_delay=0.5)


pytestmark = [pytest.mark.emulator(seed=4, lakesail=FAST), pytest.mark.virtual_time]


@pytest.fixture
async def ls(emu: Emulator) -> AsyncIterator[LakeSailClient]:
    async with LakeSailClient("lakesail-token", base_url=emu.lakesail_url, retry=QUICK_RETRY) as c:
        yield c


async def make(ls: LakeSailClient, n: int, prefix: str = "s") -> list[Session]:
    return [await ls.sessions.create(name=f"{prefix}{i}") for i in range(n)]


# -- sessions ------------------------------------------------------------------------------------


async def test_create_get_and_list(ls: LakeSailClient, emu: Emulator) -> None:
    s = await ls.sessions.create(
        name="etl",
        config=SessionConfig(idle_timeout_seconds=30),
        metadata={"owner": "data"},
    )
    assert isinstance(s, Session)
    assert s.status is SessionStatus.PENDING
    assert s.member_id == "MALICE"
    assert s.metadata["owner"] == "data"
    assert s.metadata["aiocompute-owner"] == ls.owner  # and the client token
    assert set(s.metadata) == {"owner", "aiocompute-owner", "aiocompute-token"}
    assert s.config == SessionConfig(idle_timeout_seconds=30)
    got = await ls.sessions.get(s.id)
    assert got.id == s.id
    assert got.workload_id == s.workload_id
    listed = await ls.sessions.list()
    assert [x.id for x in listed] == [s.id]
    # The list join fills what only the item reference carries.
    assert listed[0].compute_instance_id == s.workload_id
    assert emu.stats["lakesail.create_session"] == 1


async def test_list_page_side_loads(ls: LakeSailClient) -> None:
    a, b = await make(ls, 2)
    page = await ls.sessions.list_page()
    assert isinstance(page, SessionList)
    assert page.total == 2
    assert page.marker is None
    assert [s.id for s in page.sessions] == [b.id, a.id]
    for s in page.sessions:
        workload = page.workload(s.workload_id or "")
        assert workload is not None
        assert page.workload_config(workload.workload_config_id or "") is not None
    member = page.member("MALICE")
    assert member is not None
    assert member.email == "alice@example.com"


async def test_strict_client_reads_everything_the_emulator_sends(emu: Emulator) -> None:
    async with LakeSailClient("lakesail-token", base_url=emu.lakesail_url, strict=True) as ls:
        s = await ls.sessions.create(name="strict")
        await ls.sessions.wait(s.id, timeout=5)
        await ls.sessions.list()
        await ls.sessions.get(s.id)
        await ls.sessions.token(s.id)
        await ls.workload_configs.list()
        await ls.sessions.close(s.id)
        await ls.sessions.relaunch(s.id)


async def test_close_token_relaunch(ls: LakeSailClient, emu: Emulator) -> None:
    s = await ls.sessions.create(name="cycle")
    token = await ls.sessions.token(s.id, duration_seconds=120)
    assert isinstance(token, SessionToken)
    assert token.token.count(".") == 2
    assert token.expires_at is not None
    assert token.token not in repr(token)
    assert await ls.sessions.close(s.id) is None
    closed = await ls.sessions.get(s.id)
    assert closed.state == "closed"
    assert closed.is_terminal
    assert closed.closed_at is not None
    new = await ls.sessions.relaunch(s.id)
    assert new.id != s.id
    assert new.state == "pending"
    assert new.name == "cycle"
    assert emu.lakesail.sessions[new.id].relaunched_from == s.id
    # The server decides: relaunching a live session is refused, in the platform's shape.
    with pytest.raises(APIError) as info:
        await ls.sessions.relaunch(new.id)
    assert info.value.status == 409
    assert info.value.code == "conflict"
    assert "only closed or failed sessions can be relaunched" in info.value.message


async def test_service_account_key(emu: Emulator) -> None:
    async with LakeSailClient("lakesail-sa-key", base_url=emu.lakesail_url) as sa:
        s = await sa.sessions.create(name="ci")
        assert s.service_account_id == "SACIBOT"
        assert s.member_id is None
        page = await sa.sessions.list_page()
        account = page.service_account("SACIBOT")
        assert account is not None
        assert account.username


# -- pagination ----------------------------------------------------------------------------------


async def test_await_and_async_for_give_the_same_sessions(
    ls: LakeSailClient, emu: Emulator
) -> None:
    created = await make(ls, 7)
    emu.reset_stats()
    listing = ls.sessions.list(limit=3)
    assert isinstance(listing, Paginator)
    assert emu.stats["lakesail.list_sessions"] == 0  # nothing before it is used
    everything = await listing
    assert [s.id for s in everything] == [s.id for s in reversed(created)]
    assert emu.stats["lakesail.list_sessions"] == 3
    emu.reset_stats()
    iterated = [s.id async for s in ls.sessions.list(limit=3)]
    assert iterated == [s.id for s in everything]
    assert emu.stats["lakesail.list_sessions"] == 3


async def test_stopping_early_fetches_no_more_pages(ls: LakeSailClient, emu: Emulator) -> None:
    await make(ls, 7)
    emu.reset_stats()
    seen = []
    async for s in ls.sessions.list(limit=3):
        seen.append(s.id)
        if len(seen) == 2:
            break
    assert emu.stats["lakesail.list_sessions"] == 1
    emu.reset_stats()
    assert len(await ls.sessions.list(limit=3, max_items=4)) == 4
    assert emu.stats["lakesail.list_sessions"] == 2


async def test_limit_bounds(ls: LakeSailClient, emu: Emulator) -> None:
    await make(ls, 2)
    emu.reset_stats()
    # Checked when the list is made, before any request.
    with pytest.raises(ValueError, match=r"limit must be within 0\.\.100"):
        ls.sessions.list(limit=101)
    with pytest.raises(ValueError, match="limit"):
        ls.workload_configs.list(limit=-1)
    assert emu.stats["lakesail.list_sessions"] == 0
    # 0 counts only: one request, no sessions, no loop.
    assert await ls.sessions.list(limit=0) == []
    page = await ls.sessions.list_page(limit=0)
    assert page.total == 2
    assert emu.stats["lakesail.list_sessions"] == 2
    assert len(await ls.sessions.list(limit=100)) == 2


async def test_filters(ls: LakeSailClient) -> None:
    a, _ = await make(ls, 2)
    await ls.sessions.close(a.id)
    closed = await ls.sessions.list(status="closed")
    assert [s.id for s in closed] == [a.id]
    assert await ls.sessions.list(status=SessionStatus.FAILED) == []
    assert len(await ls.sessions.list(endpoint_type="spark_connect", team_id="TEAMDATA")) == 2
    assert await ls.sessions.list(team_id="OTHERTEAM") == []


# -- workload configs ----------------------------------------------------------------------------


async def test_workload_configs(ls: LakeSailClient) -> None:
    configs = await ls.workload_configs.list()
    assert [c.name for c in configs] == ["Default Spark"]
    settings = WorkloadSettings(sail=SailConfig(execution_mode="standalone", extra_env={"A": "1"}))
    created = await ls.workload_configs.create(
        "Nightly", team_id="TEAMDATA", config=settings, endpoint_limits={"spark_connect": 2}
    )
    assert isinstance(created, WorkloadConfig)
    assert created.name == "Nightly"
    assert created.config is not None
    assert created.config.sail is not None
    assert created.config.sail.extra_env == {"A": "1"}
    assert created.endpoint_limits == {"spark_connect": 2}
    assert (await ls.workload_configs.get(created.id)).name == "Nightly"
    names = [c.name async for c in ls.workload_configs.list(limit=1)]
    assert names == ["Default Spark", "Nightly"]
    page = await ls.workload_configs.list_page(limit=1)
    assert page.marker is not None
    assert len(await ls.workload_configs.list(max_items=1)) == 1
    s = await ls.sessions.create(workload_config_id=created.id)
    listing = await ls.sessions.list_page()
    assert listing.workload_config(created.id) is not None
    assert listing.session(s.id) is not None
    with pytest.raises(NotFoundError):
        await ls.workload_configs.get("CNOPE")


# -- errors --------------------------------------------------------------------------------------


async def test_bad_ids_are_refused_before_sending(ls: LakeSailClient, emu: Emulator) -> None:
    emu.reset_stats()
    for call in (
        ls.sessions.get,
        ls.sessions.close,
        ls.sessions.relaunch,
        ls.sessions.token,
        ls.workload_configs.get,
    ):
        with pytest.raises(ValueError, match=r"\^\[A-Z0-9\]\{1,20\}\$"):
            await call("not-an-id")
    assert emu.stats["total"] == 0


async def test_error_mapping(ls: LakeSailClient, emu: Emulator) -> None:
    with pytest.raises(NotFoundError) as info:
        await ls.sessions.get("SNOPE")
    assert info.value.status == 404
    assert info.value.code == "not_found"
    assert info.value.message == "session SNOPE not found"
    async with LakeSailClient("bad-token-value", base_url=emu.lakesail_url) as bad:
        with pytest.raises(AuthenticationError) as auth:
            await bad.sessions.list()
    assert auth.value.status == 401
    s = await ls.sessions.create()
    async with LakeSailClient("lakesail-admin-token", base_url=emu.lakesail_url) as admin:
        with pytest.raises(AuthenticationError) as forbidden:
            await admin.sessions.relaunch(s.id)  # only the owner may
    assert forbidden.value.status == 403


@pytest.mark.parametrize("style", ["error", "detail", "text"])
async def test_any_error_shape_gives_the_message(style: str) -> None:
    config = EmulatorConfig(lakesail=LakeSailEmulatorConfig(error_style=style))  # type: ignore[arg-type]
    async with (
        make_emulator_on_loop_clock(config=config) as emu,
        LakeSailClient("lakesail-token", base_url=emu.lakesail_url) as ls,
    ):
        with pytest.raises(NotFoundError) as info:
            await ls.sessions.get("SNOPE")
    assert info.value.message == "session SNOPE not found"


async def test_malformed_answers_are_protocol_errors(ls: LakeSailClient, emu: Emulator) -> None:
    emu.faults.malformed["lakesail.list_sessions"] = "html"
    with pytest.raises(ProtocolError, match="HTML"):
        await ls.sessions.list()
    emu.faults.malformed["lakesail.list_sessions"] = "truncated"
    with pytest.raises(ProtocolError):
        await ls.sessions.list()


# -- retries -------------------------------------------------------------------------------------


async def test_reads_are_retried_writes_are_not(ls: LakeSailClient, emu: Emulator) -> None:
    s = await ls.sessions.create()
    emu.reset_stats()
    emu.faults.error_next["lakesail.get_session"] = 2
    assert (await ls.sessions.get(s.id)).id == s.id
    assert emu.stats["lakesail.get_session"] == 3
    emu.faults.error_next["lakesail.create_session"] = 1
    with pytest.raises(OutcomeUnknown):
        await ls.sessions.create(name="maybe-created", reconcile=False)
    assert emu.stats["lakesail.create_session"] == 1
    emu.faults.error_next["lakesail.relaunch_session"] = 1
    await ls.sessions.close(s.id)
    with pytest.raises(OutcomeUnknown):
        await ls.sessions.relaunch(s.id)
    assert emu.stats["lakesail.relaunch_session"] == 1


# -- configuration and credentials ---------------------------------------------------------------


async def test_token_and_base_url_from_the_environment(
    emu: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LAKESAIL_API_TOKEN", "lakesail-bob-token")
    monkeypatch.setenv("LAKESAIL_BASE_URL", emu.lakesail_url)
    async with LakeSailClient() as ls:
        s = await ls.sessions.create()
    assert s.member_id == "MBOB"
    # Arguments win over the environment.
    async with LakeSailClient("lakesail-token", base_url=emu.lakesail_url) as ls:
        assert (await ls.sessions.create()).member_id == "MALICE"


def test_missing_token_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LAKESAIL_API_TOKEN", raising=False)
    with pytest.raises(ConfigError, match=r"\$LAKESAIL_API_TOKEN"):
        LakeSailClient()
    with pytest.raises(ConfigError, match="empty"):
        LakeSailClient("  ")


def test_default_base_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LAKESAIL_BASE_URL", raising=False)
    client = LakeSailClient("some-token-value")
    assert client._transport.base_url == "https://platform.lakesail.com/api/v1"
    assert repr(client) == "LakeSailClient('https://platform.lakesail.com/api/v1')"


async def test_the_token_never_shows(emu: Emulator, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="aiocompute")
    texts: list[str] = []
    async with LakeSailClient(SECRET, base_url=emu.lakesail_url, retry=QUICK_RETRY) as ls:
        texts.append(repr(ls))
        s = await ls.sessions.create(name="carol")
        texts.append(repr(s))
        token = await ls.sessions.token(s.id)
        texts.append(repr(token))
        emu.faults.error_next["lakesail.get_session"] = 10
        for attempt in (
            ls.sessions.get(s.id),
            ls.sessions.get("SNOPE"),
            ls.sessions.relaunch(s.id),
        ):
            with pytest.raises(Exception) as info:  # noqa: PT011 (any error: the text matters)
                await attempt
            texts += [str(info.value), repr(info.value)]
        emu.faults.reset()
        with pytest.raises(ValueError, match="session_id") as bad_id:
            await ls.sessions.get(SECRET)  # a token pasted where an id goes
        texts.append(str(bad_id.value))
    texts += [r.getMessage() for r in caplog.records]
    assert caplog.records  # the transport did log
    for text in texts:
        assert SECRET not in text
        assert token.token not in text
