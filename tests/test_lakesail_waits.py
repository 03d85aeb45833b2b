"""Waiting on LakeSail sessions against the emulator over loopback HTTP: readiness, failures
with the server's detail, timeouts, remote cancellation, transitions, relaunch, and the
coalesced polling through list pages (not one GET per session per tick)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from aiocompute import TransitionEvent, UnreachableState, WaitTimeout
from aiocompute.emulator import Emulator, LakeSailEmulatorConfig
from aiocompute.lakesail import LakeSailClient, Session
from helpers import QUICK_POLL, make_emulator_on_loop_clock

FAST = LakeSailEmulatorConfig(provision_delay=(0.05, 0.15), idle_delay=0.15)


pytestmark = [pytest.mark.emulator(seed=9, lakesail=FAST), pytest.mark.virtual_time]


@pytest.fixture
async def ls(emu: Emulator) -> AsyncIterator[LakeSailClient]:
    async with LakeSailClient("lakesail-token", base_url=emu.lakesail_url, cadence=QUICK_POLL) as c:
        yield c


async def test_wait_until_ready_by_default(ls: LakeSailClient, emu: Emulator) -> None:
    s = await ls.sessions.create(name="ready")
    ready = await ls.sessions.wait(s.id, timeout=5)
    assert isinstance(ready, Session)
    assert ready.state in ("active", "idle")
    assert ready.is_ready
    assert ready.connection_info is not None
    assert emu.lakesail.sessions[s.id].state in ("active", "idle")


async def test_wait_until_active_then_idle(ls: LakeSailClient, emu: Emulator) -> None:
    s = await ls.sessions.create(name="stepwise")
    active = await ls.sessions.wait(s.id, "active", timeout=5)
    assert active.state == "active"
    idle = await ls.sessions.wait(s.id, "idle", timeout=5)
    assert idle.state == "idle"
    assert idle.idle_since is not None


async def test_failed_session_is_unreachable_with_the_server_detail(ls: LakeSailClient) -> None:
    s = await ls.sessions.create(name="etl emu-fail")
    with pytest.raises(UnreachableState) as info:
        await ls.sessions.wait(s.id, "active", timeout=5)
    err = info.value
    assert isinstance(err.last, Session)
    assert err.last.state == "failed"
    assert "provisioning_failed" in str(err)
    assert [state for state, _ in err.history][-1] == "failed"


async def test_waiting_for_pending_once_active_is_unreachable(ls: LakeSailClient) -> None:
    s = await ls.sessions.create(name="no-way-back")
    await ls.sessions.wait(s.id, "active", timeout=5)
    with pytest.raises(UnreachableState):
        await ls.sessions.wait(s.id, "pending", timeout=5)


# On virtual time: the waits' timeouts pass on the loop's clock: two reads at least, always
async def test_timeout_and_cancel_on_timeout() -> None:
    async with (
        make_emulator_on_loop_clock(seed=9, lakesail=FAST) as emu,
        LakeSailClient("lakesail-token", base_url=emu.lakesail_url, cadence=QUICK_POLL) as ls,
    ):
        s = await ls.sessions.create(name="emu-stuck")
        with pytest.raises(WaitTimeout) as info:
            await ls.sessions.wait(s.id, timeout=0.3)
        assert isinstance(info.value.last, Session)
        assert info.value.last.state == "pending"
        assert info.value.attempts >= 2
        assert emu.lakesail.sessions[s.id].state == "pending"  # detached: still there
        with pytest.raises(WaitTimeout):
            await ls.sessions.wait(s.id, timeout=0.2, on_cancel="cancel")
        assert emu.lakesail.sessions[s.id].state == "closed"  # cancel closed it


async def test_relaunch_and_wait_for_the_new_session(ls: LakeSailClient) -> None:
    s = await ls.sessions.create(name="again")
    await ls.sessions.close(s.id)
    closed = await ls.sessions.wait(s.id, "closed", timeout=5)
    assert closed.state == "closed"
    new = await ls.sessions.relaunch(s.id)
    ready = await ls.sessions.wait(new.id, timeout=5)
    assert ready.id == new.id
    assert ready.is_ready


# On virtual time: "active" lasts 0.15 s: every state is seen however busy the machine is
async def test_watch_reports_each_transition() -> None:
    async with (
        make_emulator_on_loop_clock(seed=9, lakesail=FAST) as emu,
        LakeSailClient("lakesail-token", base_url=emu.lakesail_url, cadence=QUICK_POLL) as ls,
    ):
        s = await ls.sessions.create(name="watched", config={"idleCloseDelaySeconds": 1})
        events: list[TransitionEvent[Session]] = []
        async for event in ls.sessions.watch([s.id], "closed", timeout=5):
            events.append(event)
    states = [e.new_state for e in events]
    # watch() stops at the usual target (active or idle) unless told to follow on.
    assert states[0] == "pending"
    assert states[-1] == "closed"  # closed one second after going idle
    assert "active" in states
    assert "idle" in states
    assert events[-1].resource.termination_reason == "idle_timeout"


async def test_many_waits_share_list_calls(ls: LakeSailClient, emu: Emulator) -> None:
    sessions = [await ls.sessions.create(name=f"fan{i}") for i in range(30)]
    emu.reset_stats()
    ready = await ls.sessions.wait_all([s.id for s in sessions], timeout=10)
    assert [r.id for r in ready] == [s.id for s in sessions]
    assert all(r.is_ready for r in ready)
    stats = ls.sessions._waiter.stats
    # One list request per tick covers all 30 sessions; never a GET per session.
    assert emu.stats["lakesail.get_session"] == 0
    assert emu.stats["lakesail.list_sessions"] == stats.fetch_calls
    assert stats.fetch_calls < 30
    assert stats.ids_fetched > 2 * stats.fetch_calls  # many sessions per request


async def test_as_completed_yields_each_result(ls: LakeSailClient) -> None:
    ok = await ls.sessions.create(name="fine")
    bad = await ls.sessions.create(name="emu-fail")
    results = {r.id: r async for r in ls.sessions.as_completed([ok.id, bad.id], timeout=5)}
    assert results[ok.id].ok
    assert not results[bad.id].ok
    with pytest.raises(UnreachableState):
        results[bad.id].unwrap()


async def test_more_sessions_than_a_page_follow_the_marker(
    ls: LakeSailClient, emu: Emulator
) -> None:
    sessions = [await ls.sessions.create(name=f"big{i}") for i in range(130)]
    ids = [s.id for s in sessions]
    emu.reset_stats()
    # One read of 130 ids: two pages (100 + 30), following the marker.
    found = await ls.sessions._fetch_many(ids)
    assert set(found) == set(ids)
    assert emu.stats["lakesail.list_sessions"] == 2
    emu.reset_stats()
    await ls.sessions.wait_all(ids, timeout=10)
    fetches = ls.sessions._waiter.stats.fetch_calls
    assert emu.stats["lakesail.get_session"] == 0
    # Reads of ids that are all on the first page stop there.
    assert fetches < emu.stats["lakesail.list_sessions"] <= 2 * fetches


async def test_a_session_beyond_the_page_budget_is_read_by_id(
    ls: LakeSailClient, emu: Emulator
) -> None:
    oldest = await ls.sessions.create(name="oldest")
    for i in range(210):  # newest first: the oldest is on the third page
        await ls.sessions.create(name=f"newer{i}")
    emu.reset_stats()
    ready = await ls.sessions.wait(oldest.id, timeout=5)
    assert ready.id == oldest.id
    fetches = ls.sessions._waiter.stats.fetch_calls
    # Each read: two list pages (the budget for one id), then one GET for the missing id.
    assert emu.stats["lakesail.list_sessions"] == 2 * fetches
    assert emu.stats["lakesail.get_session"] == fetches


async def test_a_session_that_never_existed_is_not_found(ls: LakeSailClient) -> None:
    from aiocompute import NotFoundError

    with pytest.raises(NotFoundError):
        await ls.sessions.wait("SGHOST", timeout=5)
