"""Two behaviours of the waiting methods on top of the poller: ``watch`` ends when every
session has reached the resource's usual target, and a wait right after ``resume()`` polls
through a stale ``suspended`` answer instead of calling it unreachable."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from aiocompute import ConfigError, UnreachableState, WorkbenchClient
from aiocompute._exceptions import AioComputeError
from aiocompute.emulator import WorkbenchEmulatorConfig
from aiocompute.workbench import Session
from helpers import QUICK_POLL, make_emulator_on_loop_clock

pytestmark = pytest.mark.virtual_time

FAST = WorkbenchEmulatorConfig(
    session_launch_delay=0.02,
    session_pending_delay=0.02,
    session_starting_delay=0.02,
    session_suspend_delay=0.02,
    session_stop_delay=0.01,
)
LP = {"name": "w", "cluster": "Local"}


# On virtual time: states last 20 ms: every one is seen however busy the machine is
async def test_watch_ends_once_every_session_is_running() -> None:
    async with (
        make_emulator_on_loop_clock(workbench=FAST, seed=3) as emu,
        WorkbenchClient(emu.workbench_url, token="user-token", cadence=QUICK_POLL) as wb,
    ):
        ids = [
            (await wb.sessions.launch("VS Code", name=f"w{i}", launch_parameters=LP)).id
            for i in range(3)
        ]
        events = [e async for e in wb.sessions.watch(ids, timeout=10)]
        last = {e.id: e.new_state for e in events}
        assert last == dict.fromkeys(ids, "running")
        # An explicit target overrides the default: "starting" comes before "running".
        more = (await wb.sessions.launch("VS Code", name="x", launch_parameters=LP)).id
        states = [e.new_state async for e in wb.sessions.watch([more], "starting", timeout=10)]
        assert states[-1] == "starting"
        assert "running" not in states


async def _suspended_session(wb: WorkbenchClient) -> str:
    sid = (await wb.sessions.launch("RStudio", name="nap", launch_parameters=LP)).id
    await wb.sessions.wait(sid, timeout=10)
    await wb.sessions.stop(sid, suspend=True)
    await wb.sessions.wait(sid, "suspended", timeout=10)
    return sid


async def test_wait_right_after_resume_polls_through_a_stale_suspended_state(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async with (
        make_emulator_on_loop_clock(workbench=FAST, seed=4) as emu,
        WorkbenchClient(emu.workbench_url, token="user-token", cadence=QUICK_POLL) as wb,
    ):
        sid = await _suspended_session(wb)
        # Without a resume, "suspended" cannot become "running" by waiting.
        with pytest.raises(UnreachableState, match="suspended"):
            await wb.sessions.wait(sid, timeout=5)

        # A real server may answer "suspended" for a moment after resume: play that answer
        # back for the first two reads.
        real = wb.sessions._fetch_many
        stale = {"reads": 0}

        async def lagging(ids: Sequence[str]) -> dict[str, Session]:
            found = await real(ids)
            stale["reads"] += 1
            if stale["reads"] <= 2 and sid in found:
                found[sid] = type(found[sid])(id=sid, activity_state="suspended")
            return found

        monkeypatch.setattr(wb.sessions._waiter._loop, "_fetch_many", lagging)
        await wb.sessions.resume(sid)
        running = await wb.sessions.wait(sid, timeout=10)
        assert running.activity_state == "running"
        assert stale["reads"] > 2


def test_config_error_is_part_of_the_error_tree(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("WORKBENCH_SERVER", raising=False)
    with pytest.raises(ConfigError, match="WORKBENCH_SERVER") as info:
        WorkbenchClient(token="x" * 10)
    assert isinstance(info.value, AioComputeError)
    assert isinstance(info.value, ValueError)
