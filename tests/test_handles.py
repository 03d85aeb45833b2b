"""Scoped handles clean up on every exit: normal end, an error, task cancellation; the
emulator shows the resource stopped, closed or deleted."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Any

import anyio
import pytest

from aiocompute import (
    ETEngineClient,
    Handle,
    LakeSailClient,
    PollCadence,
    ProtocolError,
    QiskitRuntimeClient,
    WorkbenchClient,
)
from aiocompute.emulator import Emulator
from helpers import make_emulator_on_loop_clock

pytestmark = pytest.mark.virtual_time

QUICK = PollCadence(initial=0.02, max=0.05, fast=0.02, min_gap=0.01, jitter=0.0)
CRN = "crn:v1:bluemix:public:quantum-computing:us-east:a/abc::"
LP = {"name": "h", "cluster": "Local"}


class Boom(Exception):
    pass


@pytest.fixture
async def emu() -> AsyncIterator[Emulator]:
    async with make_emulator_on_loop_clock(seed=5) as server:
        yield server


@pytest.fixture
async def wb(emu: Emulator) -> AsyncIterator[WorkbenchClient]:
    async with WorkbenchClient(emu.workbench_url, token="user-token", cadence=QUICK) as client:
        yield client


def stopped(emu: Emulator, session_id: str) -> bool:
    return emu.workbench.sessions[session_id].stop_requested is not None


async def test_a_launched_session_is_running_inside_and_stopped_after(
    wb: WorkbenchClient, emu: Emulator
) -> None:
    async with wb.sessions.launched("VS Code", launch_parameters=LP, timeout=30) as s:
        assert isinstance(s, Handle)
        assert s.resource is not None
        assert s.resource.activity_state == "running"
        assert not stopped(emu, s.id)
        assert (await s.refresh()).id == s.id
    assert stopped(emu, s.id)
    assert s.stopped


async def test_an_error_in_the_block_still_stops_it(wb: WorkbenchClient, emu: Emulator) -> None:
    with pytest.raises(Boom):
        async with wb.sessions.launched("VS Code", launch_parameters=LP, until=None) as s:
            raise Boom
    assert stopped(emu, s.id)


async def test_a_cancelled_task_still_stops_it(wb: WorkbenchClient, emu: Emulator) -> None:
    seen: list[str] = []

    async def use() -> None:
        async with wb.sessions.launched("VS Code", launch_parameters=LP, until=None) as s:
            seen.append(s.id)
            await anyio.sleep(30)

    async with anyio.create_task_group() as tg:
        tg.start_soon(use)
        with anyio.fail_after(10):
            while not seen:  # noqa: ASYNC110 (waiting for the launch inside the task)
                await anyio.sleep(0.01)
        tg.cancel_scope.cancel()
    assert stopped(emu, seen[0])


async def test_cancelled_while_waiting_for_it_to_be_ready_still_stops_it(
    wb: WorkbenchClient, emu: Emulator
) -> None:
    with anyio.move_on_after(0.05):  # long before it is running
        async with wb.sessions.launched("VS Code", launch_parameters=LP, timeout=60):
            pytest.fail("never ready this soon")
    (session_id,) = emu.workbench.sessions
    assert stopped(emu, session_id)


async def test_leave_and_an_early_stop(wb: WorkbenchClient, emu: Emulator) -> None:
    async with wb.sessions.launched(
        "VS Code", launch_parameters=LP, until=None, on_exit="leave"
    ) as s:
        pass
    assert not stopped(emu, s.id)
    async with wb.sessions.launched("VS Code", launch_parameters=LP, until=None) as t:
        await t.stop()
        assert stopped(emu, t.id)
    assert t.stopped
    with pytest.raises(ValueError, match="on_exit must be one of"):
        async with wb.sessions.launched("VS Code", launch_parameters=LP, on_exit="close"):
            pass


async def test_a_failing_cleanup_does_not_hide_the_blocks_error(
    wb: WorkbenchClient, emu: Emulator, caplog: pytest.LogCaptureFixture
) -> None:
    async def use() -> None:
        async with wb.sessions.launched("VS Code", launch_parameters=LP, until=None):
            emu.faults.error_next["workbench.stop_session"] = 1
            raise Boom

    with caplog.at_level(logging.WARNING, logger="aiocompute.handles"), pytest.raises(Boom):
        await use()
    assert "on_exit='stop' failed" in caplog.text


async def test_qiskit_opened_stops_taking_jobs_then_closes(emu: Emulator) -> None:
    async with QiskitRuntimeClient(
        token="qiskit-key", instance=CRN, base_url=emu.qiskit_url, iam_url=emu.qiskit_iam_url
    ) as q:
        async with q.sessions.opened("ibm_kyiv") as s:
            assert emu.qiskit.sessions[s.id].accepting_jobs
        record = emu.qiskit.sessions[s.id]
        assert not record.accepting_jobs
        assert record.state == "closed"


async def test_lakesail_created_is_ready_inside_and_closed_after(emu: Emulator) -> None:
    async with LakeSailClient("lakesail-token", base_url=emu.lakesail_url, cadence=QUICK) as ls:
        async with ls.sessions.created(name="h", timeout=60) as s:
            assert s.resource is not None
            assert s.resource.status in ("active", "idle")
        assert emu.lakesail.sessions[s.id].state == "closed"


@pytest.mark.parametrize(("on_exit", "deleted"), [("delete", True), ("wait", False)])
async def test_etengine_created_deletes_or_waits(
    emu: Emulator, on_exit: str, deleted: bool
) -> None:
    options: dict[str, Any] = {"api_key": "et-key", "base_url": emu.etengine_url, "cadence": QUICK}
    async with ETEngineClient(**options) as et:
        async with et.batches.created("tool-hello", on_exit=on_exit, cleanup_timeout=60) as b:
            assert b.id in emu.etengine.batches
        if deleted:
            assert b.id not in emu.etengine.batches
        else:
            assert (await et.batches.status(b.id)).state == "succeeded"


@pytest.mark.parametrize("method", ["wait_all", "as_completed", "watch", "wait_token"])
async def test_a_bare_string_of_ids_is_refused(wb: WorkbenchClient, method: str) -> None:
    async def call() -> None:
        result = getattr(wb.sessions, method)("abc")
        if method == "wait_all":
            await result
        elif method != "wait_token":
            await result.__anext__()

    with pytest.raises(TypeError, match=r"takes a collection of ids, not one str: use "):
        await call()


def test_the_sync_twin_gives_a_blocking_handle_and_stops_on_ctrl_c() -> None:
    from anyio.from_thread import start_blocking_portal

    from aiocompute.sync import SyncHandle
    from aiocompute.sync import WorkbenchClient as SyncWorkbenchClient

    emu = Emulator(seed=5)
    with start_blocking_portal() as portal:
        portal.call(emu.start)
        try:
            with SyncWorkbenchClient(emu.workbench_url, token="user-token", cadence=QUICK) as wb:
                seen: list[SyncHandle[Any]] = []

                def use() -> None:
                    with wb.sessions.launched("VS Code", launch_parameters=LP, timeout=30) as s:
                        seen.append(s)
                        assert s.refresh().activity_state == "running"
                        assert not stopped(emu, s.id)
                        raise KeyboardInterrupt  # as if Ctrl-C came in the block

                with pytest.raises(KeyboardInterrupt):
                    use()
                (s,) = seen
                assert isinstance(s, SyncHandle)
                assert stopped(emu, s.id)
                assert s.stopped
        finally:
            portal.call(emu.stop)


async def test_an_unreadable_poll_answer_is_read_again_not_fatal(
    wb: WorkbenchClient, emu: Emulator
) -> None:
    # A proxy's HTML page with a 200, once, in the middle of 20 coalesced waits.
    launched = [
        (await wb.sessions.launch("VS Code", name=f"u{i}", launch_parameters=LP)).id
        for i in range(20)
    ]
    garbled: list[str] = []

    def once(record: Any) -> None:
        if record.method == "get_session" and not garbled:
            garbled.append(record.method)
            emu.faults.malformed["workbench.get_session"] = "html"
        elif garbled and "workbench.get_session" in emu.faults.malformed:
            del emu.faults.malformed["workbench.get_session"]

    emu.hooks.append(once)
    sessions = await wb.sessions.wait_all(launched, timeout=30)
    assert [s.id for s in sessions] == launched
    assert garbled


async def test_an_answer_that_stays_unreadable_fails_the_wait_soon(
    wb: WorkbenchClient, emu: Emulator
) -> None:
    s = await wb.sessions.launch("VS Code", launch_parameters=LP)
    emu.faults.malformed["workbench.get_session"] = "truncated"
    with anyio.fail_after(10), pytest.raises(ProtocolError):  # not at the 60 s deadline
        await wb.sessions.wait(s.id, timeout=60)
