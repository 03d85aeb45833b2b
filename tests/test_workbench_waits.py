"""Waiting on Workbench sessions and jobs against the emulator over loopback HTTP:
coalesced polling, failures with the server's detail, timeouts, remote cancellation,
completion order, transitions, and wait tokens carried to another client."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Sequence
from typing import Any

import anyio
import pytest

from aiocompute import (
    JobSpec,
    NotFoundError,
    RetryPolicy,
    TransitionEvent,
    UnreachableState,
    WaitTimeout,
    WaitToken,
    WorkbenchClient,
)
from aiocompute.emulator import Emulator, EmulatorConfig, WorkbenchEmulatorConfig
from aiocompute.workbench import Job, Session, SessionListing
from helpers import QUICK_POLL, make_emulator_on_loop_clock

FAST = WorkbenchEmulatorConfig(
    session_launch_delay=0.02,
    session_pending_delay=0.02,
    session_starting_delay=0.02,
    session_stop_delay=0.01,
    session_kill_delay=0.01,
    job_pending_delay=0.01,
    job_chunk_count=2,
    job_chunk_interval=0.01,
)
# Every step slow enough for a quick poller to see each state.
STEPPED = WorkbenchEmulatorConfig(
    session_launch_delay=0.15,
    session_pending_delay=0.15,
    session_starting_delay=0.15,
    session_stop_delay=0.01,
)
LP = {"name": "w", "cluster": "Local"}


pytestmark = [pytest.mark.emulator(seed=5, workbench=FAST), pytest.mark.virtual_time]


@pytest.fixture
async def wb(emu: Emulator) -> AsyncIterator[WorkbenchClient]:
    async with WorkbenchClient(emu.workbench_url, token="user-token") as client:
        yield client


async def launch(wb: WorkbenchClient, name: str = "s") -> str:
    launched = await wb.sessions.launch("RStudio", name=name, launch_parameters=LP)
    return launched.id


def job_spec(*args: str) -> JobSpec:
    return JobSpec(name="j", cluster="Local", exe="Rscript", args=list(args))


@contextlib.asynccontextmanager
async def on_loop_clock(**options: Any) -> AsyncIterator[tuple[Emulator, WorkbenchClient]]:
    """The module's emulator and a client, for a test on virtual time (no async fixture
    reaches its loop); ``options`` go to the client."""
    async with (
        make_emulator_on_loop_clock(seed=5, workbench=FAST) as emu,
        WorkbenchClient(emu.workbench_url, token="user-token", **options) as wb,
    ):
        yield emu, wb


# On virtual time: up to 0.9 s of launch steps pass on the loop's clock, in no real time
async def test_wait_all_coalesces_polls() -> None:
    config = WorkbenchEmulatorConfig(
        session_launch_delay=(0.1, 0.3),
        session_pending_delay=(0.1, 0.3),
        session_starting_delay=(0.1, 0.3),
    )
    async with (
        make_emulator_on_loop_clock(config=EmulatorConfig(workbench=config), seed=11) as emu,
        WorkbenchClient(emu.workbench_url, token="user-token") as wb,
    ):
        ids = [await launch(wb, f"s{i}") for i in range(50)]
        emu.reset_stats()
        sessions = await wb.sessions.wait_all(ids, timeout=10)
        assert [s.id for s in sessions] == ids
        assert {s.activity_state for s in sessions} == {"running"}
        polls = emu.stats["workbench.get_session"]
        # One get_session per tick covers all 50 sessions: far fewer than one per session.
        assert 1 <= polls <= 40
        assert emu.stats["total"] == polls
        # Every read asked for every id still awaited, comma-joined in one request.
        assert all(emu.workbench.sessions[i].state == "running" for i in ids)


async def test_wait_on_failed_launch_is_unreachable(wb: WorkbenchClient, emu: Emulator) -> None:
    sid = await launch(wb, "etl emu-fail")
    with pytest.raises(UnreachableState) as info:
        await wb.sessions.wait(sid, timeout=30)
    error = info.value
    detail = emu.workbench.sessions[sid].status_detail
    assert detail
    assert detail in str(error)
    assert "'failed'" in str(error)
    assert isinstance(error.last, Session)
    assert error.last.activity_state == "failed"
    states = [state for state, _ in error.history]
    assert states[-1] == "failed"
    assert set(states) <= {"launching", "pending", "failed"}
    assert error.attempts >= 1
    assert error.elapsed > 0


# On virtual time: the 0.5 s timeout passes on the loop's clock
async def test_wait_timeout_carries_what_was_seen() -> None:
    async with on_loop_clock() as (emu, wb):
        sid = await launch(wb, "emu-stuck")
        with pytest.raises(WaitTimeout) as info:
            await wb.sessions.wait(sid, timeout=0.5)
    error = info.value
    assert sid in str(error)
    assert "'pending'" in str(error)
    assert isinstance(error.last, Session)
    assert error.last.activity_state == "pending"
    assert error.history[-1][0] == "pending"
    assert error.attempts >= 2
    assert error.elapsed >= 0.5
    # A detached wait leaves the session alone.
    assert emu.workbench.sessions[sid].stop_requested is None
    assert emu.stats["workbench.stop_session"] == 0


async def test_job_with_nonzero_exit_is_unreachable(wb: WorkbenchClient) -> None:
    job = await wb.jobs.launch(job_spec("--emu-exit=3"))
    with pytest.raises(UnreachableState, match="exit code 3") as info:
        await wb.jobs.wait(job.id, timeout=10)
    assert isinstance(info.value.last, Job)
    assert info.value.last.state == "Finished"
    assert info.value.last.exit_code == 3


async def test_failed_job_quotes_the_status_message(wb: WorkbenchClient) -> None:
    job = await wb.jobs.launch(job_spec("--emu-fail"))
    with pytest.raises(UnreachableState) as info:
        await wb.jobs.wait(job.id, timeout=10)
    assert "'Failed'" in str(info.value)
    assert "emulated failure" in str(info.value)


async def test_wait_all_with_return_exceptions(wb: WorkbenchClient) -> None:
    ok = await wb.jobs.launch(job_spec())
    bad = await wb.jobs.launch(job_spec("--emu-exit=2"))
    results = await wb.jobs.wait_all([ok.id, bad.id], timeout=10, return_exceptions=True)
    assert isinstance(results[0], Job)
    assert results[0].succeeded
    assert isinstance(results[1], UnreachableState)
    with pytest.raises(UnreachableState):
        await wb.jobs.wait_all([ok.id, bad.id], timeout=10)


# On virtual time: the order of the ends is exact on the loop's clock, however busy the machine
async def test_as_completed_yields_in_completion_order() -> None:
    durations = {"slow": 0.6, "fast": 0.05, "mid": 0.3}
    ids = {}
    order = []
    # A quick cadence, so that two completions never share one read.
    async with on_loop_clock(cadence=QUICK_POLL) as (emu, wb):
        for label, seconds in durations.items():
            job = await wb.jobs.launch(
                job_spec("--emu-pending=0", "--emu-chunks=1", f"--emu-duration={seconds}")
            )
            ids[job.id] = label
        async for result in wb.jobs.as_completed(list(ids), timeout=10):
            assert result.ok
            assert result.unwrap().state == "Finished"
            order.append(ids[result.id])
    assert order == ["fast", "mid", "slow"]
    by_end = sorted(ids, key=lambda j: emu.workbench.jobs[j].end_time)
    assert [ids[j] for j in by_end] == order


async def test_leaving_as_completed_or_watch_early_ends_their_waits(wb: WorkbenchClient) -> None:
    quick = await wb.jobs.launch(job_spec())
    slow = await wb.jobs.launch(job_spec("--emu-chunks=100", "--emu-interval=0.1"))
    ids = [quick.id, slow.id]
    async with contextlib.aclosing(wb.jobs.as_completed(ids, timeout=10)) as results:
        async for result in results:
            assert result.id == quick.id
            break
    assert wb.jobs._waiter.watched_ids == frozenset()  # nobody polls for slow any more
    async with contextlib.aclosing(wb.jobs.watch(ids, timeout=10)) as events:
        async for _event in events:
            break
    assert wb.jobs._waiter.watched_ids == frozenset()
    await wb.jobs.stop(slow.id, force=True)


async def test_as_completed_reports_failures_as_results(wb: WorkbenchClient) -> None:
    ok = await wb.jobs.launch(job_spec())
    bad = await wb.jobs.launch(job_spec("--emu-fail"))
    results = {r.id: r async for r in wb.jobs.as_completed([ok.id, bad.id], timeout=10)}
    assert results[ok.id].ok
    assert not results[bad.id].ok
    with pytest.raises(UnreachableState):
        results[bad.id].unwrap()


# On virtual time: each 0.15 s step is seen by the quick poller, however busy the machine
async def test_watch_yields_transitions_in_order() -> None:
    async with (
        make_emulator_on_loop_clock(config=EmulatorConfig(workbench=STEPPED), seed=2) as emu,
        WorkbenchClient(emu.workbench_url, token="user-token", cadence=QUICK_POLL) as wb,
    ):
        sid = await launch(wb, "watched")
        events: list[TransitionEvent[Session]] = []
        async with contextlib.aclosing(wb.sessions.watch([sid], timeout=10)) as stream:
            async for event in stream:
                events.append(event)
                if event.new_state == "running":
                    break  # running is stable, not settled: the watch would go on
        assert [e.new_state for e in events] == ["launching", "pending", "starting", "running"]
        assert [e.old_state for e in events] == [None, "launching", "pending", "starting"]
        assert all(e.id == sid for e in events)
        times = [e.at for e in events]
        assert times == sorted(times)
        assert events[-1].resource.activity_state == "running"
        recorded = [t.state for t in emu.workbench.sessions[sid].transitions]
        assert recorded == [e.new_state for e in events]

        # A failing launch settles, so its watch ends by itself.
        failing = await launch(wb, "emu-fail")
        states = [e.new_state async for e in wb.sessions.watch([failing], timeout=10)]
        assert states == ["launching", "pending", "failed"]


async def test_on_transition_hook(wb: WorkbenchClient) -> None:
    sid = await launch(wb, "hooked")
    seen: list[str] = []
    await wb.sessions.wait(sid, timeout=10, on_transition=lambda e: seen.append(e.new_state))
    assert seen[-1] == "running"
    assert len(seen) == len(set(seen))  # each change reported once


# On virtual time: the waits' timeouts pass on the loop's clock
async def test_on_cancel_cancel_stops_the_session_on_timeout() -> None:
    async with on_loop_clock() as (emu, wb):
        sid = await launch(wb, "emu-stuck")
        with pytest.raises(WaitTimeout, match="cancel requested"):
            await wb.sessions.wait(sid, timeout=0.3, on_cancel="cancel")
        record = emu.workbench.sessions[sid]
        assert emu.stats["workbench.stop_session"] == 1
        assert record.stop_requested is not None
        assert record.final_state() == "ended"
        ended = await wb.sessions.wait(sid, until="ended", timeout=5)
        assert ended.id == sid
        assert "shutting_down" in [t.state for t in record.transitions]


# On virtual time: the cancel scope's 0.3 s passes on the loop's clock
async def test_on_cancel_cancel_stops_the_session_when_cancelled() -> None:
    async with on_loop_clock() as (emu, wb):
        sid = await launch(wb, "emu-stuck")
        with anyio.move_on_after(0.3) as scope:
            await wb.sessions.wait(sid, timeout=10, on_cancel="cancel")
        assert scope.cancelled_caught
        assert emu.stats["workbench.stop_session"] == 1
        assert emu.workbench.sessions[sid].stop_requested is not None


# On virtual time: the wait's timeout passes on the loop's clock
async def test_on_cancel_cancel_stops_a_job() -> None:
    async with on_loop_clock() as (emu, wb):
        job = await wb.jobs.launch(job_spec("--emu-chunks=100", "--emu-interval=0.1"))
        with pytest.raises(WaitTimeout):
            await wb.jobs.wait(job.id, timeout=0.3, on_cancel="cancel")
        assert emu.stats["workbench.stop_job"] == 1
        assert emu.workbench.jobs[job.id].stopped_at is not None


async def test_wait_token_round_trip_to_another_client(emu: Emulator) -> None:
    async with WorkbenchClient(emu.workbench_url, token="user-token") as first:
        ids = [await launch(first, f"t{i}") for i in range(3)]
        token = first.sessions.wait_token(ids, timeout=10)
        text = token.to_json()
    assert isinstance(text, str)
    restored = WaitToken.from_json(text)
    assert restored.ids == tuple(ids)
    assert restored.until == ("running",)
    async with WorkbenchClient(emu.workbench_url, token="user-token") as second:
        sessions = await second.sessions.resume_wait(text)
        assert [s.id for s in sessions] == ids
        assert {s.activity_state for s in sessions} == {"running"}
        # A token for jobs is refused by sessions.
        job = await second.jobs.launch(job_spec())
        job_token = second.jobs.wait_token([job.id], timeout=10).to_json()
        with pytest.raises(ValueError, match=r"workbench\.job"):
            await second.sessions.resume_wait(job_token)
        assert (await second.jobs.resume_wait(job_token))[0].id == job.id


async def test_expired_wait_token_times_out_at_once(wb: WorkbenchClient, emu: Emulator) -> None:
    sid = await launch(wb, "late")
    token = wb.sessions.wait_token([sid], timeout=10)
    expired = WaitToken(token.kind, token.ids, token.until, token.deadline - 20)
    emu.reset_stats()
    with pytest.raises(WaitTimeout, match="deadline"):
        await wb.sessions.resume_wait(expired.to_json())
    assert emu.stats["total"] == 0


async def test_until_ended_after_stop(wb: WorkbenchClient, emu: Emulator) -> None:
    sid = await launch(wb, "bye")
    await wb.sessions.wait(sid, timeout=10)
    await wb.sessions.stop(sid)
    ended = await wb.sessions.wait(sid, until="ended", timeout=10)
    assert ended.id == sid
    assert ended.activity_state == "ended"
    # It left the live listing for the history.
    with pytest.raises(NotFoundError):
        await wb.sessions.get(sid)
    history = await wb.sessions.history()
    assert history.session(sid) is not None
    assert emu.stats["workbench.get_historical_session"] >= 2


async def test_wait_for_a_state_that_cannot_come(wb: WorkbenchClient) -> None:
    sid = await launch(wb, "done")
    await wb.sessions.wait(sid, timeout=10)
    await wb.sessions.stop(sid)
    with pytest.raises(UnreachableState, match="'running'"):
        await wb.sessions.wait(sid, until="running", timeout=10)
    with pytest.raises(ValueError, match="no state"):
        await wb.sessions.wait(sid, until="sleeping", timeout=10)
    with pytest.raises(ValueError, match="deadline"):
        await wb.sessions.wait(sid, timeout=0)


async def test_wait_on_an_unknown_session_is_not_found(wb: WorkbenchClient) -> None:
    with pytest.raises(NotFoundError, match="deadbeef"):
        await wb.sessions.wait("deadbeef", timeout=10)


async def test_waits_ride_out_a_flaky_server(wb: WorkbenchClient, emu: Emulator) -> None:
    ids = [await launch(wb, f"f{i}") for i in range(5)]
    emu.faults.error_rate["workbench.get_session"] = 0.3
    sessions = await wb.sessions.wait_all(ids, timeout=20)
    assert {s.activity_state for s in sessions} == {"running"}
    assert emu.stats["faults.error"] >= 1


# On virtual time: the wait's timeout passes on the loop's clock
async def test_wait_timeout_reports_read_failures() -> None:
    async with on_loop_clock(retry=RetryPolicy(max_attempts=1)) as (emu, wb):
        sid = await launch(wb, "emu-stuck")
        emu.faults.error_rate["workbench.get_session"] = 1.0
        with pytest.raises(WaitTimeout) as info:
            await wb.sessions.wait(sid, timeout=0.4)
    assert "failed, last:" in str(info.value)
    assert "503" in str(info.value)
    assert info.value.last is None  # nothing was ever read


async def test_polls_are_light_and_waits_return_full_sessions(
    wb: WorkbenchClient, emu: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    ids = [await launch(wb, f"full{i}") for i in range(5)]
    asked: list[tuple[tuple[str, ...], tuple[str, ...] | None]] = []
    listing = wb._listing

    async def recording(ids: Sequence[str] | None = None, **kw: Any) -> SessionListing:
        fields = kw.get("fields")
        asked.append((tuple(ids or ()), None if fields is None else tuple(fields)))
        return await listing(ids, **kw)

    monkeypatch.setattr(wb, "_listing", recording)
    sessions = await wb.sessions.wait_all(ids, timeout=10)
    for s in sessions:
        assert s.activity_state == "running"
        # Fields the polls never asked for: the wait's result is a full read.
        assert s.url
        assert s.launch_parameters is not None
        assert s.launch_parameters.cluster == "Local"
        assert s.name
        assert s.name.startswith("full")
    light = [fields for _, fields in asked if fields is not None]
    full = [got for got, fields in asked if fields is None]
    assert light
    assert all(set(f) == {"activity_state", "status_detail"} for f in light)
    # Full reads only of sessions that reached "running", each once.
    assert sorted(i for got in full for i in got) == sorted(ids)
    assert len(full) < len(light)
