"""The ET Engine emulator over real loopback HTTP, driven by a plain aiohttp client."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from aiocompute.emulator import Emulator, EmulatorConfig, ETEngineEmulatorConfig
from helpers import make_emulator_on_loop_clock

FAST = ETEngineEmulatorConfig(
    register_delay=0.2, submitting_delay=0.2, phase_delay=0.01, run_delay=0.02
)
HW = {"cpu": 1, "memory": 256, "filesystems": []}
STATUSES = ("SUBMITTED", "PENDING", "RUNNABLE", "STARTING", "RUNNING", "SUCCEEDED", "FAILED")


async def until(instant: float) -> None:
    """Sleep until an instant of the emulator clock (time.monotonic)."""
    await asyncio.sleep(max(0.0, instant - asyncio.get_running_loop().time()))


async def settled(emu: Emulator, batch_id: str) -> None:
    """Sleep until every job of the batch has reached its final status."""
    state = emu.etengine
    record = state.batches.get(batch_id) or state.deleted[batch_id]
    await until(max(job.phases[-1].monotonic for job in record.jobs) + 0.01)


class ET:
    """A bare-bones caller, so the emulator is tested without the SDK client."""

    def __init__(self, http: aiohttp.ClientSession, emu: Emulator) -> None:
        self.http = http
        self.emu = emu
        self.base = emu.etengine_url

    async def call(
        self, method: str, path: str, *, auth: str | None = "et-key", body: Any = None
    ) -> tuple[int, str, bytes]:
        headers = {} if auth is None else {"Authorization": auth}
        data = None if body is None else json.dumps(body)
        async with self.http.request(method, self.base + path, data=data, headers=headers) as resp:
            return resp.status, resp.content_type, await resp.read()

    async def ok(self, method: str, path: str, **kw: Any) -> Any:
        status, _, data = await self.call(method, path, **kw)
        assert status == 200, data
        return json.loads(data) if data else None

    async def create(self, variable: list[dict[str, Any]] | None = None, **fixed: Any) -> str:
        body = {"fixed_args": fixed, "variable_args": variable or [], "hardware": HW}
        status, ctype, data = await self.call("POST", "/tools/tool-sim", body=body)
        assert status == 200, data
        assert ctype == "text/plain"
        return data.decode()


pytestmark = [pytest.mark.emulator(seed=2, etengine=FAST), pytest.mark.virtual_time]


@pytest.fixture
async def et(emu: Emulator) -> AsyncIterator[ET]:
    async with aiohttp.ClientSession() as http:
        yield ET(http, emu)


async def test_batch_life_counts_and_listings(et: ET) -> None:
    batch_id = await et.create([{"i": 1}, {"i": 2}], mode="m")
    # Just created: registered by nobody yet, so nothing is counted or listed.
    counts = await et.ok("GET", f"/batches/{batch_id}")
    assert counts == dict.fromkeys((s.lower() for s in STATUSES), 0)
    assert await et.ok("GET", f"/batches/{batch_id}/jobs") == []
    job = et.emu.etengine.batches[batch_id].jobs[0]
    await until(job.phases[1].monotonic + 0.01)  # SUBMITTING
    listed = await et.ok("GET", f"/batches/{batch_id}/jobs")
    assert len(listed) == 2  # SUBMITTING: listed...
    assert sum((await et.ok("GET", f"/batches/{batch_id}")).values()) == 0  # ...not counted
    assert set(listed[0]) == {"job_id", "job_tool", "job_log_id", "job_argument_list"}
    assert listed[0]["job_argument_list"] == [
        {"argument_key": "mode", "argument_value": "m"},
        {"argument_key": "i", "argument_value": 1},
    ]
    await settled(et.emu, batch_id)
    assert await et.ok("GET", f"/batches/{batch_id}") == {
        **dict.fromkeys((s.lower() for s in STATUSES), 0),
        "succeeded": 2,
    }
    (batch,) = await et.ok("GET", "/batches")
    assert batch == {
        "batch_id": batch_id,
        "batch_tool": {
            "tool_id": "tool-sim",
            "tool_name": "simulate",
            "tool_description": "Runs one simulation per argument set",
        },
        "n_jobs": 2,
        "hardware": {"filesystem_list": [], "cpu": 1, "memory": 256},
    }
    record = et.emu.etengine.batches[batch_id]
    states = [t.state for t in record.jobs[0].transitions]
    assert states == ["SUBMITTING", *STATUSES[:5], "SUCCEEDED"]


async def test_job_detail_is_a_list_of_one_with_mixed_case_status(et: ET) -> None:
    ids = [await et.create([{"i": i} for i in range(6)]) for _ in range(2)]
    for batch_id in ids:
        await settled(et.emu, batch_id)
    seen_case: set[bool] = set()
    for batch_id in ids:
        for job in await et.ok("GET", f"/batches/{batch_id}/jobs"):
            detail = await et.ok("GET", f"/batches/{batch_id}/jobs/{job['job_id']}")
            assert isinstance(detail, list)
            assert len(detail) == 1
            (one,) = detail
            assert set(one) == {
                "job_id", "log_id", "hardware", "args", "status", "reason",
                "create_time", "start_time", "stop_time",
            }  # fmt: skip
            assert one["status"].upper() == "SUCCEEDED"
            seen_case.add(one["status"].isupper())
            assert isinstance(one["create_time"], int)  # epoch ms, as AWS Batch reports
            assert one["create_time"] <= one["start_time"] <= one["stop_time"]
            assert one["reason"] == ""
    assert seen_case == {True, False}  # both cases, per job


async def test_failures_by_argument_and_by_rate() -> None:
    config = ETEngineEmulatorConfig(
        register_delay=0, submitting_delay=0, phase_delay=0, run_delay=0, failure_rate=0.5
    )
    async with (
        make_emulator_on_loop_clock(config=EmulatorConfig(etengine=config), seed=8) as emu,
        aiohttp.ClientSession() as http,
    ):
        et = ET(http, emu)
        batch_id = await et.create([{"i": i} for i in range(40)])
        counts = await et.ok("GET", f"/batches/{batch_id}")
        assert counts["succeeded"] + counts["failed"] == 40
        assert 8 <= counts["failed"] <= 32
        forced = await et.create([{"emu-fail": True}])
        (job,) = await et.ok("GET", f"/batches/{forced}/jobs")
        (detail,) = await et.ok("GET", f"/batches/{forced}/jobs/{job['job_id']}")
        assert detail["status"].upper() == "FAILED"
        assert detail["reason"] == "Essential container in task exited"


async def test_errors_are_plain_text(et: ET) -> None:
    cases = [
        (("GET", "/batches"), {"auth": None}, 401, "Missing authorization header"),
        (("GET", "/batches"), {"auth": "nope"}, 403, "Access denied"),
        (("POST", "/tools/tool-none"), {"body": {}}, 403, "Access denied"),
        (("POST", "/tools/tool-sim"), {"body": {"fixed_args": {}}}, 400, "Invalid request body"),
        (("GET", "/batches/unknown"), {}, 500, "Unknown error occurred"),
        (("GET", "/batches/unknown/jobs"), {}, 500, "Unknown error occurred"),
    ]
    for (method, path), kw, status, text in cases:
        got, ctype, data = await et.call(method, path, **kw)
        assert (got, ctype, data.decode()) == (status, "text/plain", text)
    bad_hw = {"fixed_args": {}, "variable_args": [], "hardware": {"cpu": 0, "memory": 1}}
    assert (await et.call("POST", "/tools/tool-sim", body=bad_hw))[0] == 400
    status, _, _ = await et.call("POST", "/tools/tool-sim", body=None)
    assert status == 400


async def test_bearer_is_accepted_too_and_batches_are_private(et: ET) -> None:
    batch_id = await et.create()
    assert await et.ok("GET", "/batches", auth="Bearer et-key") != []
    assert await et.ok("GET", "/batches", auth="et-key-bob") == []
    status, _, _ = await et.call("GET", f"/batches/{batch_id}", auth="et-key-bob")
    assert status == 500


async def test_deletes_answer_empty_200_and_jobs_go_on(et: ET) -> None:
    first = await et.create([{}, {}])
    second = await et.create()
    status, _, data = await et.call("DELETE", f"/batches/{first}")
    assert (status, data) == (200, b"")
    status, _, data = await et.call("DELETE", "/batches/never-existed")
    assert (status, data) == (200, b"")
    assert [b["batch_id"] for b in await et.ok("GET", "/batches")] == [second]
    status, _, data = await et.call("DELETE", "/batches")
    assert (status, data) == (200, b"")
    assert await et.ok("GET", "/batches") == []
    state = et.emu.etengine
    assert set(state.deleted) == {first, second}
    assert {job.status for job in state.deleted[first].jobs} != {"SUCCEEDED"}
    await settled(et.emu, first)
    assert {job.status for job in state.deleted[first].jobs} == {"SUCCEEDED"}


async def test_wire_switches() -> None:
    config = ETEngineEmulatorConfig(
        status_shape="nested",
        job_detail_as_list=False,
        time_format="iso",
        status_case="upper",
        create_answer="json",
        unknown_batch_status=404,
        register_delay=0,
        submitting_delay=0,
    )
    async with (
        make_emulator_on_loop_clock(config=EmulatorConfig(etengine=config)) as emu,
        aiohttp.ClientSession() as http,
    ):
        et = ET(http, emu)
        body = {"fixed_args": {}, "variable_args": [], "hardware": HW}
        answer = await et.ok("POST", "/tools/tool-hello", body=body)
        batch_id = answer["batch_id"]
        described = await et.ok("GET", f"/batches/{batch_id}")
        assert described["batch_id"] == batch_id
        assert described["n_jobs"] == 1
        assert set(described["submitted_jobs"]) == set(STATUSES)
        (job,) = await et.ok("GET", f"/batches/{batch_id}/jobs")
        detail = await et.ok("GET", f"/batches/{batch_id}/jobs/{job['job_id']}")
        assert isinstance(detail, dict)
        assert detail["status"].isupper()
        assert isinstance(detail["create_time"], str)
        assert "T" in detail["create_time"]
        status, _, data = await et.call("GET", "/batches/unknown")
        assert (status, data) == (404, b"Batch not found")


async def test_routes_are_counted_and_faulted(et: ET) -> None:
    et.emu.faults.error_next["etengine.list_batches"] = 1
    status, _, _ = await et.call("GET", "/batches")
    assert status == 503
    await et.ok("GET", "/batches")
    assert et.emu.stats["etengine.list_batches"] == 2
    assert et.emu.stats["faults.error"] == 1


def test_config_is_validated() -> None:
    with pytest.raises(ValueError, match="failure_rate"):
        ETEngineEmulatorConfig(failure_rate=1.5)
    with pytest.raises(ValueError, match="status_case"):
        ETEngineEmulatorConfig(status_case="title")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="tools"):
        ETEngineEmulatorConfig(tools={"t": "just a name"})  # type: ignore[dict-item]
    with pytest.raises(ValueError, match="unknown_batch_status"):
        ETEngineEmulatorConfig(unknown_batch_status=418)
