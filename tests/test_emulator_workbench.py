"""The Workbench emulator over real loopback HTTP, driven by a plain aiohttp client."""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from collections.abc import AsyncIterator, Callable
from datetime import datetime, timedelta, timezone
from typing import Any

import aiohttp
import attrs
import pytest

from aiocompute.emulator import (
    ChunkWrite,
    Emulator,
    EmulatorConfig,
    FaultConfig,
    RequestRecord,
    WorkbenchEmulatorConfig,
    serve,
)
from aiocompute.emulator import etengine as emulated_etengine
from aiocompute.emulator import lakesail as emulated_lakesail
from aiocompute.emulator import qiskit as emulated_qiskit
from aiocompute.emulator import workbench as emulated_workbench
from helpers import make_emulator_on_loop_clock

FAST = WorkbenchEmulatorConfig(
    session_launch_delay=(0.01, 0.03),
    session_pending_delay=(0.01, 0.03),
    session_starting_delay=(0.01, 0.03),
    session_stop_delay=(0.01, 0.02),
    session_suspend_delay=(0.01, 0.02),
    session_resume_delay=(0.01, 0.03),
    job_pending_delay=(0.01, 0.02),
    job_chunk_count=5,
    job_chunk_interval=0.01,
)
LOCAL = {"cluster": "Local"}


class WB:
    """A bare-bones Workbench RPC caller, so the emulator is tested without the SDK client."""

    def __init__(self, http: aiohttp.ClientSession, emu: Emulator) -> None:
        self.http = http
        self.base = emu.workbench_url

    def headers(self, token: str | None) -> dict[str, str]:
        return {} if token is None else {"Authorization": f"Bearer {token}"}

    async def raw(
        self, method: str, token: str | None = "user-token", **kwparams: Any
    ) -> tuple[int, str, bytes]:
        body = {"method": method, "kwparams": kwparams}
        async with self.http.post(
            f"{self.base}/api/{method}", json=body, headers=self.headers(token)
        ) as resp:
            return resp.status, resp.content_type, await resp.read()

    async def call(self, method: str, token: str | None = "user-token", **kwparams: Any) -> Any:
        status, ctype, data = await self.raw(method, token, **kwparams)
        assert status == 200, (status, data[:200])
        assert ctype == "application/json"
        return json.loads(data)

    async def result(self, method: str, token: str | None = "user-token", **kwparams: Any) -> Any:
        body = await self.call(method, token, **kwparams)
        assert "error" not in body, body
        return body["result"]

    async def error(self, method: str, token: str | None = "user-token", **kwparams: Any) -> Any:
        body = await self.call(method, token, **kwparams)
        assert set(body) == {"error"}, body
        assert set(body["error"]) == {"code", "message"}
        return body["error"]

    async def launch(self, token: str = "user-token", **kwparams: Any) -> dict[str, Any]:
        kwparams.setdefault("workbench", "RStudio")
        kwparams.setdefault("launch_parameters", LOCAL)
        return await self.result("launch_session", token, **kwparams)  # type: ignore[no-any-return]

    async def session(self, sid: str, token: str = "user-token", **kw: Any) -> dict[str, Any]:
        sessions = (await self.result("get_session", token, session_id=sid, **kw))["sessions"]
        assert len(sessions) == 1, sessions
        return sessions[0]  # type: ignore[no-any-return]

    async def wait_state(self, sid: str, state: str, timeout: float = 2.0) -> dict[str, Any]:
        deadline = now() + timeout
        while True:
            found = await self.session(sid)
            if found["activity_state"] == state:
                return found
            assert now() < deadline, f"{sid} stuck in {found['activity_state']}"
            await asyncio.sleep(0.01)

    async def launch_job(self, *args: str, token: str = "user-token", **job: Any) -> Any:
        job.setdefault("name", "job")
        job.setdefault("cluster", "Local")
        job.setdefault("exe", "R")
        job["args"] = list(args)
        return (await self.result("launch_job", token, job=job))["result"]["job"]

    async def job(self, job_id: str, token: str = "user-token") -> dict[str, Any]:
        jobs = (await self.result("get_session", token, include_jobs=True))["jobs"]
        return next(j for j in jobs if j["id"] == job_id)

    async def wait_job(self, job_id: str, timeout: float = 2.0) -> dict[str, Any]:
        deadline = now() + timeout
        while True:
            job = await self.job(job_id)
            if job["status"] not in ("Pending", "Running"):
                return job
            assert now() < deadline, f"job {job_id} still {job['status']}"
            await asyncio.sleep(0.01)

    async def stream(
        self, method: str = "get_job_output", token: str = "user-token", **kwparams: Any
    ) -> aiohttp.ClientResponse:
        body = {"method": method, "kwparams": kwparams}
        return await self.http.post(
            f"{self.base}/api/{method}", json=body, headers=self.headers(token)
        )


def decode_values(data: bytes) -> list[Any]:
    """Every JSON value of a stream, whatever the framing."""
    text = data.decode()
    decoder = json.JSONDecoder()
    values: list[Any] = []
    pos = 0
    while True:
        while pos < len(text) and text[pos] in " \r\n\t":
            pos += 1
        if pos == len(text):
            return values
        value, pos = decoder.raw_decode(text, pos)
        values.append(value)


async def drain(resp: aiohttp.ClientResponse, into: bytearray) -> None:
    """Read a response body piece by piece, keeping what arrived even if it then fails."""
    async for piece in resp.content.iter_any():
        into += piece


def now() -> float:
    """The test's clock: the event loop's (the emulator's too), real or virtual."""
    return asyncio.get_running_loop().time()


pytestmark = [pytest.mark.emulator(seed=1, workbench=FAST), pytest.mark.virtual_time]


@pytest.fixture
async def wb(emu: Emulator) -> AsyncIterator[WB]:
    async with aiohttp.ClientSession() as http:
        yield WB(http, emu)


# -- server ------------------------------------------------------------------------------


async def test_starts_serves_and_stops_leaving_no_tasks() -> None:
    emu = make_emulator_on_loop_clock()
    async with emu:
        assert emu.url == f"http://127.0.0.1:{emu.port}"
        assert emu.workbench_url == emu.url + "/workbench"
        async with aiohttp.ClientSession() as http, http.get(emu.url + "/") as resp:
            assert (await resp.json())["apis"]["workbench"] == "/workbench"
    assert not emu.running
    with pytest.raises(RuntimeError, match="not running"):
        _ = emu.port
    assert asyncio.all_tasks() == {asyncio.current_task()}


async def test_every_api_is_mounted_indexed_and_addressed_from_its_declarations() -> None:
    # Each API module declares API, PREFIX and API_ROOT the same way; the server's index
    # and its *_url properties are built from them.
    apis = (emulated_workbench, emulated_lakesail, emulated_qiskit, emulated_etengine)
    async with make_emulator_on_loop_clock() as emu:
        async with aiohttp.ClientSession() as http, http.get(emu.url + "/") as resp:
            index = (await resp.json())["apis"]
        urls = {
            "workbench": emu.workbench_url,
            "lakesail": emu.lakesail_url,
            "qiskit": emu.qiskit_url,
            "etengine": emu.etengine_url,
        }
        root = emu.url
    assert index == {
        "workbench": "/workbench",
        "lakesail": "/lakesail/api/v1",
        "qiskit": "/qiskit/api",
        "etengine": "/etengine/v1",
    }
    for api in apis:
        assert index[api.API] == api.PREFIX + api.API_ROOT
        assert urls[api.API] == root + index[api.API]


async def test_stop_cuts_live_streams_and_leaves_no_tasks() -> None:
    emu = make_emulator_on_loop_clock(seed=1, workbench=FAST)
    await emu.start()
    async with aiohttp.ClientSession() as http:
        wb = WB(http, emu)
        job = await wb.launch_job("--emu-chunks=1000", "--emu-interval=0.05")
        resp = await wb.stream(job_id=job["id"])
        first = await resp.content.readline()
        assert b"line 0 of job" in first
        assert emu.open_streams == 1
        started = now()
        await emu.stop()
        assert now() - started < 1.0
        assert emu.open_streams == 0
        with pytest.raises(aiohttp.ClientPayloadError):
            await resp.read()
        resp.release()
    assert asyncio.all_tasks() == {asyncio.current_task()}
    await emu.stop()  # idempotent


async def test_serve_runs_for_the_cli() -> None:
    urls: list[str] = []
    await serve(port=0, duration=0.05, on_ready=lambda emu: urls.append(emu.url))
    assert len(urls) == 1
    assert urls[0].startswith("http://127.0.0.1:")


def test_refuses_non_loopback_hosts_unless_allowed() -> None:
    with pytest.raises(ValueError, match="loopback"):
        Emulator(host="0.0.0.0")
    with pytest.raises(ValueError, match="loopback"):
        Emulator(host="192.0.2.10")
    Emulator(host="::1")
    assert Emulator(host="localhost").host == "127.0.0.1"
    Emulator(host="192.0.2.10", allow_remote=True)


def test_config_rejects_bad_values_clearly() -> None:
    with pytest.raises(ValueError, match="session_launch_delay"):
        WorkbenchEmulatorConfig(session_launch_delay=(0.5, 0.1))
    with pytest.raises(ValueError, match="role"):
        WorkbenchEmulatorConfig(tokens={"t": ("eve", "root")})
    with pytest.raises(ValueError, match="stream_framing"):
        WorkbenchEmulatorConfig(stream_framing="xml")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"faults\.error_rate"):
        Emulator(config=EmulatorConfig(faults=FaultConfig(error_rate={"*": 2.0})))
    assert WorkbenchEmulatorConfig(job_pending_delay=0.5).job_pending_delay == (0.5, 0.5)


async def test_unknown_method_is_http_404_and_get_only_where_documented(
    emu: Emulator, wb: WB
) -> None:
    status, _, _ = await wb.raw("get_sessions")
    assert status == 404
    headers = wb.headers("user-token")
    for method in ("version", "get_compute_envs"):
        async with wb.http.get(f"{emu.workbench_url}/api/{method}", headers=headers) as resp:
            assert resp.status == 200
    async with wb.http.get(f"{emu.workbench_url}/api/get_session", headers=headers) as resp:
        assert resp.status == 405


async def test_version_is_unwrapped_and_compute_envs_list_clusters(wb: WB) -> None:
    body = await wb.call("version")
    assert body["version"]["major"] == "2024"
    assert body["version"]["release_name"] == "Kousa Dogwood"
    assert isinstance(body["features"], list)
    assert "result" not in body
    envs = await wb.result("get_compute_envs")
    assert [c["name"] for c in envs["clusters"]] == ["Local", "Kubernetes"]
    assert envs["clusters"][0]["supportsContainers"] is False
    assert envs["workbenches"]["RStudio"]["lang"] == {"name": "R", "available": True}


# -- auth and roles ----------------------------------------------------------------------


async def test_missing_or_unknown_token_is_http_401(wb: WB) -> None:
    for token in (None, "nope"):
        status, ctype, body = await wb.raw("get_session", token)
        assert status == 401
        assert ctype == "text/html"
        assert b"401" in body


async def test_rpc_cookie_maps_to_a_user_but_launch_job_is_401(emu: Emulator, wb: WB) -> None:
    await wb.launch(name="mine")
    headers = {"X-RS-Session-Server-RPC-Cookie": "rpc-cookie"}
    body = {"method": "get_session", "kwparams": {}}
    async with wb.http.post(
        f"{emu.workbench_url}/api/get_session", json=body, headers=headers
    ) as r:
        sessions = (await r.json())["result"]["sessions"]
    assert [s["name"] for s in sessions] == ["mine"]
    job = {"method": "launch_job", "kwparams": {"job": {"name": "j", "exe": "R"}}}
    async with wb.http.post(f"{emu.workbench_url}/api/launch_job", json=job, headers=headers) as r:
        assert r.status == 401
    assert not emu.workbench.jobs


async def test_user_token_acts_only_for_itself(wb: WB) -> None:
    denied = {"code": 401, "message": "Permission denied"}
    assert await wb.error("get_users") == denied
    assert await wb.error("get_session", user="bob") == denied
    assert await wb.error("get_compute_envs", user="bob") == denied
    assert await wb.error("launch_session", username="bob", workbench="RStudio") == denied
    bob_sid = (await wb.launch(token="bob-token"))["id"]
    assert await wb.error("stop_session", session_ids=bob_sid) == denied
    bob_job = await wb.launch_job(token="bob-token")
    assert await wb.error("stop_job", job_id=bob_job["id"]) == denied
    assert await wb.error("get_job_output", job_id=bob_job["id"], user="bob") == denied


async def test_admin_reads_and_stops_for_others_but_cannot_launch_for_them(wb: WB) -> None:
    users = {u["username"]: u for u in await wb.result("get_users", "admin-token")}
    assert set(users) == {"alice", "admin", "root", "bob"}
    assert users["admin"]["isAdmin"] is True
    assert users["alice"]["isAdmin"] is False
    assert users["root"]["isSuperAdmin"] is True
    sid = (await wb.launch(name="alices"))["id"]
    seen = await wb.result("get_session", "admin-token", user="alice")
    assert [s["id"] for s in seen["sessions"]] == [sid]
    # Without "user", an admin sees its own sessions only.
    assert (await wb.result("get_session", "admin-token", session_id=sid))["sessions"] == []
    denied = await wb.error("launch_session", "admin-token", username="alice", workbench="RStudio")
    assert denied["code"] == 401
    assert await wb.result("stop_session", "admin-token", session_ids=sid) == {}


async def test_super_admin_launches_and_resumes_for_others(emu: Emulator, wb: WB) -> None:
    launched = await wb.launch("super-token", username="alice", name="for alice")
    assert emu.workbench.sessions[launched["id"]].owner == "alice"
    assert (await wb.session(launched["id"]))["name"] == "for alice"
    job = await wb.launch_job(token="super-token", user="bob")
    assert job["user"] == "bob"
    missing = await wb.error("launch_session", "super-token", username="zed", workbench="RStudio")
    assert missing["code"] == 404


# -- request validation and RPC errors ---------------------------------------------------


async def test_bad_bodies_answer_rpc_errors(emu: Emulator, wb: WB) -> None:
    url = f"{emu.workbench_url}/api/get_session"
    headers = wb.headers("user-token")
    for payload in (b"{not json", b"[1, 2]", b'{"method": "launch_session", "kwparams": {}}'):
        async with wb.http.post(url, data=payload, headers=headers) as resp:
            assert resp.status == 200
            error = (await resp.json())["error"]
            assert error["code"] == 400
            assert "invalid request" in error["message"]
    mismatch = b'{"method": "launch_session", "kwparams": {}}'
    async with wb.http.post(url, data=mismatch, headers=headers) as resp:
        assert "does not match" in (await resp.json())["error"]["message"]


async def test_launch_validation_errors_match_real_servers(wb: WB) -> None:
    error = await wb.error("launch_session", workbench="RStudio")
    assert "launch_parameters" in error["message"]
    error = await wb.error("launch_session", workbench="Emacs", launch_parameters=LOCAL)
    assert "Unknown workbench" in error["message"]
    error = await wb.error("launch_session", workbench="RStudio", launch_parameters={"name": "x"})
    assert error["message"] == "launch_parameters.cluster is required"
    k8s = {"cluster": "Kubernetes"}
    error = await wb.error("launch_session", workbench="VS Code", launch_parameters=k8s)
    assert error["message"] == 'Kubernetes requires the "container" parameter'
    bad_profile = {"cluster": "Local", "resource_profile": "huge"}
    error = await wb.error("launch_session", workbench="VS Code", launch_parameters=bad_profile)
    assert error["message"] == "Unknown resource profile"
    error = await wb.error("launch_job", job={"name": "j", "cluster": "Kubernetes", "exe": "R"})
    assert error["message"] == 'Kubernetes requires the "container" parameter'
    error = await wb.error("launch_job", job={"name": "j", "exe": "R", "args": ["--emu-chunks=x"]})
    assert "--emu-chunks=x" in error["message"]
    error = await wb.error("get_session", fields="id")
    assert "fields" in error["message"]
    error = await wb.error("stop_job", job_id="nope")
    assert error == {"code": 404, "message": "job not found"}
    error = await wb.error("stop_session", session_ids="deadbeef")
    assert error["code"] == 404


# -- sessions ----------------------------------------------------------------------------


async def test_session_lifecycle_through_history(emu: Emulator, wb: WB) -> None:
    launched = await wb.launch(workbench="VS Code", name="etl")
    sid = launched["id"]
    assert len(sid) == 8
    assert launched["url"] == f"/s/{launched['url'][3:8]}{launched['project_id']}{sid}/"
    live = await wb.wait_state(sid, "running")
    expected_keys = {
        "name", "url", "id", "launch_parameters", "created", "activity_state",
        "last_state_updated", "label", "display_name", "status_detail", "project",
        "project_id", "running", "working_dir", "executing", "save_prompt_required",
        "last_used", "r_version", "r_version_label", "r_version_home", "suspend_size",
        "workbench",
    }  # fmt: skip
    assert set(live) == expected_keys
    assert isinstance(live["created"], int)
    assert live["running"] is True
    assert live["launch_parameters"]["cluster"] == "Local"
    assert live["launch_parameters"]["container_images"] == [""]
    assert await wb.result("stop_session", session_ids=sid) == {}
    deadline = now() + 2
    while (await wb.result("get_session", session_id=sid))["sessions"]:
        assert now() < deadline
        await asyncio.sleep(0.01)
    states = [t.state for t in emu.workbench.sessions[sid].transitions]
    assert states == ["launching", "pending", "starting", "running", "shutting_down", "quitting",
                      "ended"]  # fmt: skip
    times = [t.monotonic for t in emu.workbench.sessions[sid].transitions]
    assert times == sorted(times)
    history = (await wb.result("get_historical_session", include_jobs=True))["sessions"]
    old = next(s for s in history if s["id"] == sid)
    assert old["username"] == "alice"
    assert isinstance(old["created"], str)
    assert isinstance(old["last_used"], str)
    datetime.fromisoformat(old["created"])
    assert old["job"]["status"] == "Finished"
    assert old["job"]["exitCode"] == 143
    assert "runningTimestamp" in old["job"]
    assert "activity_state" not in old


async def test_get_session_filters_ids_fields_and_lists_all_when_absent(wb: WB) -> None:
    first = (await wb.launch(name="one"))["id"]
    second = (await wb.launch(name="two"))["id"]
    everything = (await wb.result("get_session"))["sessions"]
    assert [s["id"] for s in everything] == [first, second]
    both = await wb.result("get_session", session_id=f"{second},{first}", fields=["id"])
    assert both["sessions"] == [{"id": second}, {"id": first}]
    assert "jobs" not in both
    assert (await wb.result("get_session", session_id="00000000"))["sessions"] == []


async def test_suspend_then_resume(emu: Emulator, wb: WB) -> None:
    sid = (await wb.launch(workbench="RStudio"))["id"]
    await wb.wait_state(sid, "running")
    not_suspended = await wb.error("resume_session", session_id=sid)
    assert "not suspended" in not_suspended["message"]
    await wb.result("stop_session", session_ids=sid, suspend_session=True)
    suspended = await wb.wait_state(sid, "suspended")
    assert suspended["running"] is False
    assert suspended["suspend_size"] > 0
    resumed = await wb.result("resume_session", session_id=sid)
    assert resumed["id"] == sid
    assert resumed["url"] == suspended["url"]
    await wb.wait_state(sid, "running")
    states = [t.state for t in emu.workbench.sessions[sid].transitions]
    assert states[-4:] == ["suspending", "suspended", "resuming", "running"]


async def test_force_quit_kills_quickly(emu: Emulator, wb: WB) -> None:
    sid = (await wb.launch())["id"]
    await wb.wait_state(sid, "running")
    await wb.result("stop_session", session_ids=sid, force_quit=True)
    await asyncio.sleep(0.05)
    assert (await wb.result("get_session", session_id=sid))["sessions"] == []
    states = [t.state for t in emu.workbench.sessions[sid].transitions]
    assert states[-2:] == ["killed", "ended"]
    history = (await wb.result("get_historical_session"))["sessions"]
    assert history[0]["job"]["status"] == "Killed"


async def test_session_names_steer_failure_and_stuck_launches(wb: WB) -> None:
    stuck = (await wb.launch(name="emu-stuck"))["id"]
    sid = (await wb.launch(name="emu-fail please"))["id"]
    failed = await wb.wait_state(sid, "failed")
    assert failed["running"] is False
    assert "emu-fail" in failed["status_detail"]
    await asyncio.sleep(0.1)
    assert (await wb.session(stuck))["activity_state"] == "pending"


async def test_historical_time_filters(wb: WB) -> None:
    sid = (await wb.launch())["id"]
    await wb.result("stop_session", session_ids=sid, force_quit=True)
    await asyncio.sleep(0.05)
    now = datetime.now(timezone.utc)
    past = (now - timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    future = (now + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    hits = await wb.result("get_historical_session", filter_time_begin=past, filter_time_end=future)
    assert [s["id"] for s in hits["sessions"]] == [sid]
    assert (await wb.result("get_historical_session", filter_time_begin=future))["sessions"] == []
    assert (await wb.result("get_historical_session", filter_time_end=past))["sessions"] == []
    error = await wb.error("get_historical_session", filter_time_begin="yesterday")
    assert "filter_time_begin" in error["message"]
    others = await wb.result("get_historical_session", "admin-token", include_all_users=True)
    assert [s["id"] for s in others["sessions"]] == [sid]
    mine = await wb.result("get_historical_session", "bob-token", include_all_users=True)
    assert mine["sessions"] == []


async def test_same_seed_same_ids_and_delays() -> None:
    async def run(seed: int) -> tuple[list[str], list[list[float]]]:
        async with (
            make_emulator_on_loop_clock(seed=seed, workbench=FAST) as emu,
            aiohttp.ClientSession() as http,
        ):
            wb = WB(http, emu)
            ids = [(await wb.launch())["id"] for _ in range(3)]
            gaps = []
            for sid in ids:
                phases = emu.workbench.sessions[sid].phases
                gaps.append(
                    [round(b.monotonic - a.monotonic, 6) for a, b in itertools.pairwise(phases)]
                )
            return ids, gaps

    first, second, other = await run(5), await run(5), await run(6)
    assert first == second
    assert first[0] != other[0]
    assert first[1] != other[1]


async def test_a_thousand_sessions_launch_concurrently_and_list_at_once(emu: Emulator) -> None:
    connector = aiohttp.TCPConnector(limit=50)
    async with aiohttp.ClientSession(connector=connector) as http:
        wb = WB(http, emu)
        launched = await asyncio.gather(*(wb.launch(name=f"s{i}") for i in range(1000)))
        ids = [item["id"] for item in launched]
        assert len(set(ids)) == 1000
        await asyncio.sleep(0.1)
        found = await wb.result(
            "get_session", session_id=",".join(ids), fields=["id", "activity_state"]
        )
    assert [s["id"] for s in found["sessions"]] == ids
    assert {s["activity_state"] for s in found["sessions"]} == {"running"}
    assert emu.stats["workbench.launch_session"] == 1000


# -- jobs --------------------------------------------------------------------------------


async def test_job_lifecycle_and_output_streams_live(emu: Emulator, wb: WB) -> None:
    job = await wb.launch_job("--emu-chunks=6", "--emu-interval=0.06", "--emu-stderr-every=3")
    assert job["status"] == "Pending"
    assert {"id", "cluster", "workingDirectory", "placementConstraints", "resourceLimits",
            "submissionTime", "lastUpdateTime", "resourceProfile", "pid"} <= set(job)  # fmt: skip
    arrivals: list[float] = []
    values: list[dict[str, Any]] = []
    async with await wb.stream(job_id=job["id"]) as resp:
        assert resp.status == 200
        async for line in resp.content:
            arrivals.append(now())
            values.append(json.loads(line))
    record = emu.workbench.jobs[job["id"]]
    assert [v["output"].split(" ")[2] for v in values] == [str(i) for i in range(6)]
    assert [v["outputType"] for v in values] == ["stdout", "stdout", "stderr"] * 2
    assert all(v["jobId"] == job["id"] for v in values)
    # Chunks arrived while the job ran, not in one lump at the end.
    assert arrivals[0] < record.end_time - 0.15
    assert arrivals[-1] - arrivals[0] > 0.15
    done = await wb.job(job["id"])
    assert done["status"] == "Finished"
    assert done["exitCode"] == 0
    assert "runningTimestamp" in done
    assert "terminatedTime" in done
    assert [t.state for t in record.transitions] == ["Pending", "Running", "Finished"]


async def test_job_exit_code_and_failure_from_args(wb: WB) -> None:
    exited = await wb.launch_job("--emu-chunks=1", "--emu-exit=3")
    failed = await wb.launch_job("--emu-chunks=1", "--emu-fail")
    assert (await wb.wait_job(exited["id"]))["exitCode"] == 3
    failure = await wb.wait_job(failed["id"])
    assert failure["status"] == "Failed"
    assert failure["exitCode"] == 1


async def test_stop_job_kills_running_and_cancels_pending(emu: Emulator, wb: WB) -> None:
    running = await wb.launch_job("--emu-chunks=100", "--emu-interval=0.02", "--emu-pending=0")
    pending = await wb.launch_job("--emu-pending=10")
    resp = await wb.stream(job_id=running["id"])
    await resp.content.readline()
    assert await wb.result("stop_job", job_id=running["id"], force_quit=True) == {}
    rest = await asyncio.wait_for(resp.read(), 1.0)  # the stream ends with the job
    resp.release()
    assert len(decode_values(rest)) < 99
    killed = await wb.job(running["id"])
    assert killed["status"] == "Killed"
    assert killed["exitCode"] == 137
    await wb.result("stop_job", job_id=pending["id"])
    await asyncio.sleep(0.05)
    canceled = await wb.job(pending["id"])
    assert canceled["status"] == "Canceled"
    assert "exitCode" not in canceled


@pytest.mark.parametrize("framing", ["ndjson", "concatenated", "pretty"])
async def test_stream_framings(framing: str) -> None:
    async with (
        make_emulator_on_loop_clock(
            seed=1, workbench=attrs.evolve(FAST, stream_framing=framing)
        ) as emu,
        aiohttp.ClientSession() as http,
    ):
        wb = WB(http, emu)
        job = await wb.launch_job("--emu-chunks=3", "--emu-interval=0")
        async with await wb.stream(job_id=job["id"]) as resp:
            data = await resp.read()
    values = decode_values(data)
    assert [v["output"].split(" ")[2] for v in values] == ["0", "1", "2"]
    if framing == "ndjson":
        assert [json.loads(line) for line in data.splitlines()] == values
    elif framing == "concatenated":
        assert b"\n" not in data
        assert data.count(b"}{") == 2
    else:
        assert b'\n  "jobId": ' in data


async def test_output_replays_from_the_start_on_every_request(wb: WB) -> None:
    job = await wb.launch_job("--emu-chunks=8", "--emu-interval=0.02", "--emu-bytes=200")
    async with await wb.stream(job_id=job["id"]) as resp:
        head = await resp.content.readline()
    async with await wb.stream(job_id=job["id"]) as resp:
        whole = await resp.read()
    async with await wb.stream(job_id=job["id"]) as resp:
        again = await resp.read()
    assert whole.startswith(head)
    assert whole == again
    values = decode_values(whole)
    assert len(values) == 8
    assert all(len(v["output"]) == 200 for v in values)


async def test_output_of_unknown_or_foreign_job_is_rpc_404(wb: WB) -> None:
    assert await wb.error("get_job_output", job_id="missing") == {
        "code": 404,
        "message": "job not found",
    }
    bob_job = await wb.launch_job(token="bob-token")
    assert (await wb.error("get_job_output", job_id=bob_job["id"]))["code"] == 404
    async with await wb.stream(token="admin-token", job_id=bob_job["id"], user="bob") as resp:
        assert len(decode_values(await resp.read())) == 5


async def test_audited_job_output_live_then_finished_shape(emu: Emulator, wb: WB) -> None:
    launched = await wb.result(
        "launch_audited_job",
        audited_job={"name": "audit", "cluster": "Local", "exe": "R", "args": ["--emu-chunks=3"]},
    )
    job = launched["result"]["audited_job"]
    early = await wb.error("get_audited_job_details", audited_job_id=job["id"])
    assert "completed" in early["message"]
    async with await wb.stream("get_audited_job_output", audited_job_id=job["id"]) as resp:
        live = decode_values(await resp.read())
    record = emu.workbench.audited_jobs[job["id"]]
    assert {v["outputSource"] for v in live} == {"job_launcher"}
    assert {v["jobId"] for v in live} == {record.launcher_id}
    finished = await wb.result("get_audited_job_output", audited_job_id=job["id"])
    output = finished["audited_job_output"]
    assert output["outputSource"] == "audit_details_store"
    assert output["jobId"] == job["id"]
    assert output["outputType"] == "stdout"
    assert output["output"] == "".join(v["output"] for v in live)
    details = (await wb.result("get_audited_job_details", audited_job_id=job["id"]))[
        "audited_details"
    ]
    assert set(details) == {"script_output", "environment"}
    assert await wb.result("stop_audited_job", audited_job_id=job["id"]) == {}


async def test_single_result_nesting_switch() -> None:
    async with (
        make_emulator_on_loop_clock(
            seed=1, workbench=attrs.evolve(FAST, job_result_nesting="single")
        ) as emu,
        aiohttp.ClientSession() as http,
    ):
        result = await WB(http, emu).result("launch_job", job={"name": "j", "exe": "R"})
    assert set(result) == {"job"}


async def test_adhoc_jobs_may_require_include_all_jobs() -> None:
    async with (
        make_emulator_on_loop_clock(
            seed=1, workbench=attrs.evolve(FAST, adhoc_jobs_require_include_all=True)
        ) as emu,
        aiohttp.ClientSession() as http,
    ):
        wb = WB(http, emu)
        job = await wb.launch_job()
        assert (await wb.result("get_session", include_jobs=True))["jobs"] == []
        listed = await wb.result("get_session", include_jobs=True, include_all_jobs=True)
        assert [j["id"] for j in listed["jobs"]] == [job["id"]]


# -- faults ------------------------------------------------------------------------------


async def test_error_rate_and_error_next_answer_html_pages(emu: Emulator, wb: WB) -> None:
    emu.faults.error_rate["workbench.get_session"] = 1.0
    status, ctype, body = await wb.raw("get_session")
    assert (status, ctype) == (503, "text/html")
    assert b"503" in body
    assert (await wb.raw("version"))[0] == 200  # other methods untouched
    emu.faults.error_rate.clear()
    emu.faults.error_next["workbench"] = 2
    emu.faults.error_status = 500
    assert [(await wb.raw("version"))[0] for _ in range(3)] == [500, 500, 200]
    assert emu.stats["faults.error"] == 3


async def test_error_rate_is_seeded_and_partial(emu: Emulator, wb: WB) -> None:
    emu.faults.error_rate["*"] = 0.5
    statuses = [(await wb.raw("version"))[0] for _ in range(40)]
    assert 5 < statuses.count(503) < 35
    assert set(statuses) == {200, 503}


async def test_bad_gateway_proxy_page(emu: Emulator, wb: WB) -> None:
    emu.faults.bad_gateway_next["workbench.launch_session"] = 1
    status, ctype, body = await wb.raw("launch_session", workbench="RStudio")
    assert (status, ctype) == (502, "text/html")
    assert b"<h1>502 Bad Gateway</h1>" in body
    assert not emu.workbench.sessions  # the request never reached the API
    assert emu.faults.bad_gateway_next["workbench.launch_session"] == 0


async def test_latency_is_added_per_api(emu: Emulator, wb: WB) -> None:
    emu.faults.latency["workbench"] = 0.1
    started = now()
    await wb.call("version")
    assert now() - started >= 0.1


async def test_rate_limiting_next_and_by_rate(emu: Emulator, wb: WB) -> None:
    emu.faults.rate_limit_next["workbench.version"] = 2
    emu.faults.retry_after = 3
    seen = []
    for _ in range(3):
        async with wb.http.get(
            f"{emu.workbench_url}/api/version", headers=wb.headers("user-token")
        ) as resp:
            seen.append((resp.status, resp.headers.get("Retry-After")))
    assert seen == [(429, "3"), (429, "3"), (200, None)]
    emu.faults.rate_limit_rps["workbench"] = 3
    statuses = [(await wb.raw("version"))[0] for _ in range(10)]
    assert statuses[:3] == [200, 200, 200]
    assert statuses.count(429) >= 5


async def test_dropped_connection(emu: Emulator, wb: WB) -> None:
    emu.faults.drop_next["workbench.get_session"] = 1
    with pytest.raises(aiohttp.ClientError):
        await wb.raw("get_session")
    assert (await wb.raw("get_session"))[0] == 200
    assert emu.stats["faults.drop"] == 1


@pytest.mark.parametrize("kind", ["truncated", "garbage", "html", "empty"])
async def test_malformed_bodies(emu: Emulator, wb: WB, kind: str) -> None:
    emu.faults.malformed["workbench.get_session"] = kind
    status, ctype, body = await wb.raw("get_session")
    assert status == 200
    with pytest.raises((json.JSONDecodeError, UnicodeDecodeError)):
        json.loads(body)
    if kind == "html":
        assert ctype == "text/html"
    if kind == "truncated":
        assert body.startswith(b'{"result"')
    del emu.faults.malformed["workbench.get_session"]
    assert json.loads((await wb.raw("get_session"))[2]) == {"result": {"sessions": []}}


async def test_drop_stream_after_bytes_cuts_first_stream_then_resume_works(
    emu: Emulator, wb: WB
) -> None:
    job = await wb.launch_job("--emu-chunks=5", "--emu-interval=0")
    await wb.wait_job(job["id"])
    emu.faults.drop_stream_after_bytes = 150
    received = bytearray()
    resp = await wb.stream(job_id=job["id"])
    with pytest.raises(aiohttp.ClientPayloadError):
        await drain(resp, received)
    resp.release()
    assert len(received) == 150
    async with await wb.stream(job_id=job["id"]) as resp:
        whole = await resp.read()
    assert whole.startswith(bytes(received))
    assert len(decode_values(whole)) == 5
    assert emu.stats["faults.drop_stream"] == 1


async def test_stall_stream(emu: Emulator, wb: WB) -> None:
    job = await wb.launch_job("--emu-chunks=3", "--emu-interval=0")
    await wb.wait_job(job["id"])
    emu.faults.stall_stream_after_bytes = 10
    emu.faults.stall_seconds = 0.3
    async with await wb.stream(job_id=job["id"]) as resp:
        first = await resp.content.readexactly(10)
        started = now()
        rest = await resp.read()
    assert now() - started >= 0.25
    assert len(decode_values(first + rest)) == 3


async def test_stream_error_injected_mid_stream(emu: Emulator, wb: WB) -> None:
    job = await wb.launch_job("--emu-chunks=5", "--emu-interval=0")
    emu.faults.stream_error_after_chunks = 2
    async with await wb.stream(job_id=job["id"]) as resp:
        values = decode_values(await resp.read())
    assert len(values) == 3
    assert values[-1] == {
        "error": {"code": 500, "message": "emulated failure while streaming output"}
    }
    async with await wb.stream(job_id=job["id"]) as resp:
        assert len(decode_values(await resp.read())) == 5  # only the first stream was hit


async def test_hooks_stats_and_request_log(emu: Emulator, wb: WB) -> None:
    seen: list[RequestRecord] = []
    emu.hooks.append(seen.append)
    await wb.call("version")
    await wb.call("get_session")
    await wb.raw("nope")
    assert [r.key for r in seen] == ["workbench.version", "workbench.get_session", None]
    assert emu.stats["total"] == 3
    assert emu.stats["workbench"] == 2
    assert emu.stats["workbench.version"] == 1
    assert list(emu.requests) == seen
    emu.reset_stats()
    assert emu.stats["total"] == 0
    assert not emu.requests


async def test_faults_config_is_copied_per_emulator() -> None:
    faults = FaultConfig(latency={"workbench": 0.5})
    emu = make_emulator_on_loop_clock(config=EmulatorConfig(faults=faults))
    emu.faults.latency.clear()
    assert faults.latency == {"workbench": 0.5}
    emu.faults.reset()
    assert emu.faults == FaultConfig()


# -- stream hooks: write times, split lines, clean closes, open streams ------------------


def ndjson_size(record: Any, index: int) -> int:
    """Bytes of chunk ``index`` of a job's output stream on the wire (NDJSON framing)."""
    kind, text = record.chunk(index)
    value = {"jobId": record.launcher_id, "outputType": kind, "output": text}
    return len(json.dumps(value, separators=(",", ":"))) + 1


async def until(predicate: Callable[[], bool], timeout: float = 2.0) -> None:
    """Wait (bounded) for a condition the server reaches on its own."""
    deadline = now() + timeout
    while not predicate():
        assert now() < deadline, "condition not reached in time"
        await asyncio.sleep(0.01)


@pytest.mark.virtual_time(False)  # compares the record with real arrival times
async def test_chunk_writes_are_recorded_when_written(emu: Emulator, wb: WB) -> None:
    seen: list[ChunkWrite] = []
    emu.on_chunk_written.append(seen.append)
    job = await wb.launch_job("--emu-chunks=4", "--emu-interval=0.05", "--emu-pending=0")
    record = emu.workbench.jobs[job["id"]]
    arrivals: list[tuple[float, float, int]] = []
    async with await wb.stream(job_id=job["id"]) as resp:
        async for line in resp.content:
            arrivals.append((time.monotonic(), time.time(), len(line)))
    writes = list(record.writes)
    assert seen == writes
    assert [(w.job_id, w.stream_seq, w.chunk_index) for w in writes] == [
        (job["id"], 0, i) for i in range(4)
    ]
    offset = time.time() - time.monotonic()
    for i, (write, (mono, wall, size)) in enumerate(zip(writes, arrivals, strict=True)):
        assert write.nbytes == size == ndjson_size(record, i)
        # Written once due, and before the client had it, on both clocks.
        assert record.chunk_time(i) <= write.monotonic <= mono
        assert write.wall_time <= wall + 0.001
        assert write.wall_time - write.monotonic == pytest.approx(offset, abs=0.01)
    assert writes[0].monotonic < record.end_time  # written live, not at the job's end
    # A replay is a new stream of the same job: stream 1, chunks 0.. again.
    async with await wb.stream(job_id=job["id"]) as resp:
        await resp.read()
    assert record.streams_opened == 2
    assert [(w.stream_seq, w.chunk_index) for w in list(record.writes)[4:]] == [
        (1, i) for i in range(4)
    ]
    assert seen == list(record.writes)


async def test_chunk_write_log_is_bounded_and_skips_cut_values() -> None:
    async with (
        make_emulator_on_loop_clock(
            seed=1, workbench=attrs.evolve(FAST, job_write_log_size=3)
        ) as emu,
        aiohttp.ClientSession() as http,
    ):
        wb = WB(http, emu)
        seen: list[ChunkWrite] = []
        emu.on_chunk_written.append(seen.append)
        job = await wb.launch_job("--emu-chunks=5", "--emu-interval=0")
        await wb.wait_job(job["id"])
        record = emu.workbench.jobs[job["id"]]
        async with await wb.stream(job_id=job["id"]) as resp:
            await resp.read()
        assert [w.chunk_index for w in seen] == [0, 1, 2, 3, 4]
        assert [w.chunk_index for w in record.writes] == [2, 3, 4]  # the most recent 3
        # A value cut by a fault was not written in full: not reported.
        emu.faults.drop_stream_after_bytes = ndjson_size(record, 0) + 5
        resp = await wb.stream(job_id=job["id"])
        with pytest.raises(aiohttp.ClientPayloadError):
            await resp.read()
        resp.release()
        assert [(w.stream_seq, w.chunk_index) for w in seen[5:]] == [(1, 0)]


def channel_lines(record: Any, kind: str) -> list[str]:
    """A job's lines on one channel, newlines included."""
    return [text for k, text in map(record.line, range(record.chunk_count)) if k == kind]


async def test_split_lines_cut_chunks_at_seeded_points(emu: Emulator, wb: WB) -> None:
    args = ("--emu-chunks=9", "--emu-stderr-every=3", "--emu-interval=0", "--emu-split-lines")
    job = await wb.launch_job(*args)
    record = emu.workbench.jobs[job["id"]]
    async with await wb.stream(job_id=job["id"]) as resp:
        values = decode_values(await resp.read())
    chunks = [(v["outputType"], v["output"]) for v in values]
    # Same count, channels and order of chunks as without the option; the texts are cut.
    assert [kind for kind, _ in chunks] == ["stdout", "stdout", "stderr"] * 3
    assert chunks == [record.chunk(i) for i in range(9)]
    assert chunks != [record.line(i) for i in range(9)]
    for kind in ("stdout", "stderr"):
        lines = channel_lines(record, kind)
        pieces = [text for k, text in chunks if k == kind]
        # The lines, a blank line after the first, no newline after the last.
        assert "".join(pieces) == record.channel_text(kind)
        assert record.channel_text(kind) == (lines[0] + "\n" + "".join(lines[1:]))[:-1]
        assert all(pieces)
        # Some chunk ends mid-line, the next chunk of the channel continuing that line.
        assert any(a[-1] != "\n" and b[0] != "\n" for a, b in itertools.pairwise(pieces)), pieces
    # Some chunk carries several lines.
    assert any(sum(1 for seg in text.split("\n")[:-1] if seg) >= 2 for _, text in chunks)
    # Every replay, and every emulator of the same seed, cuts the same way.
    async with await wb.stream(job_id=job["id"]) as resp:
        assert decode_values(await resp.read()) == values
    async with (
        make_emulator_on_loop_clock(seed=1, workbench=FAST) as twin,
        aiohttp.ClientSession() as http,
    ):
        twin_job = await WB(http, twin).launch_job(*args)
        assert twin_job["id"] == job["id"]
        assert [twin.workbench.jobs[job["id"]].chunk(i) for i in range(9)] == chunks
    error = await wb.error(
        "launch_job", job={"name": "j", "exe": "R", "args": ["--emu-split-lines=yes"]}
    )
    assert error["code"] == 400
    assert "takes no value" in error["message"]


async def test_split_lines_keep_their_promises_for_any_job(emu: Emulator, wb: WB) -> None:
    for count in range(1, 13):
        for stderr_every in (0, 2, 3):
            job = await wb.launch_job(
                f"--emu-chunks={count}", f"--emu-stderr-every={stderr_every}", "--emu-split-lines"
            )
            record = emu.workbench.jobs[job["id"]]
            chunks = [record.chunk(i) for i in range(count)]
            assert [k for k, _ in chunks] == [record.line(i)[0] for i in range(count)]
            for kind in ("stdout", "stderr"):
                pieces = [text for k, text in chunks if k == kind]
                assert "".join(pieces) == record.channel_text(kind)
                assert all(pieces)
                if len(pieces) >= 2:
                    assert any(
                        a[-1] != "\n" and b[0] != "\n" for a, b in itertools.pairwise(pieces)
                    )
                if len(pieces) >= 3:
                    assert any(sum(1 for s in p.split("\n")[:-1] if s) >= 2 for p in pieces)


async def test_close_stream_after_bytes_ends_cleanly_while_the_job_runs(
    emu: Emulator, wb: WB
) -> None:
    job = await wb.launch_job("--emu-chunks=6", "--emu-interval=0.05", "--emu-pending=0")
    record = emu.workbench.jobs[job["id"]]
    first = ndjson_size(record, 0)
    emu.faults.close_stream_after_bytes = first + 20  # inside the second value
    emu.faults.close_stream_count = 2
    async with await wb.stream(job_id=job["id"]) as resp:
        assert resp.headers["Transfer-Encoding"] == "chunked"
        data = await resp.read()  # no ClientPayloadError: the chunked body ended properly
        ended = now()
    assert len(data) == first + 20
    assert record.status_at(ended) == "Running"
    assert decode_values(data[:first]) == [
        {"jobId": job["id"], "outputType": "stdout", "output": record.chunk(0)[1]}
    ]
    # The second stream it applies to, at a value boundary this time.
    emu.faults.close_stream_after_bytes = first
    async with await wb.stream(job_id=job["id"]) as resp:
        assert await resp.read() == data[:first]
    assert record.status_at(now()) == "Running"
    assert emu.stats["faults.close_stream"] == 2
    # Chunk 0 was written in full by both streams (the second ended right after it); the
    # piece of chunk 1 the first one wrote is not reported.
    assert [(w.stream_seq, w.chunk_index) for w in record.writes] == [(0, 0), (1, 0)]
    assert emu.faults.close_stream_count == 0
    # Its count spent, the next stream runs to the job's end.
    async with await wb.stream(job_id=job["id"]) as resp:
        assert len(decode_values(await resp.read())) == 6
    assert emu.stats["faults.close_stream"] == 2
    assert emu.stats["faults.drop_stream"] == 0
    with pytest.raises(ValueError, match=r"faults\.close_stream_after_bytes"):
        make_emulator_on_loop_clock(
            config=EmulatorConfig(faults=FaultConfig(close_stream_after_bytes=-1))
        )


async def test_close_stream_for_every_stream_from_the_first_byte(emu: Emulator, wb: WB) -> None:
    job = await wb.launch_job("--emu-chunks=2", "--emu-interval=0")
    emu.faults.close_stream_after_bytes = 0
    emu.faults.close_stream_count = None
    for _ in range(3):
        async with await wb.stream(job_id=job["id"]) as resp:
            assert resp.status == 200
            assert await resp.read() == b""
    assert emu.stats["faults.close_stream"] == 3


async def test_open_streams_counts_streams_being_served(emu: Emulator, wb: WB) -> None:
    assert emu.open_streams == 0
    assert emu.open_streams_by_api == {}
    job = await wb.launch_job("--emu-chunks=200", "--emu-interval=0.02", "--emu-pending=0")
    first = await wb.stream(job_id=job["id"])
    second = await wb.stream(job_id=job["id"])
    await first.content.readline()
    await second.content.readline()
    assert emu.open_streams == 2
    assert emu.open_streams_by_api == {"workbench": 2}
    first.close()  # the client leaves: the server notices at its next write
    await until(lambda: emu.open_streams == 1)
    await wb.result("stop_job", job_id=job["id"], force_quit=True)
    await asyncio.wait_for(second.read(), 1.0)  # the job ended, so did its stream
    second.release()
    await until(lambda: emu.open_streams == 0)
    assert emu.open_streams_by_api == {}
    # Streams ended by faults are no longer open either.
    emu.faults.drop_stream_after_bytes = 10
    resp = await wb.stream(job_id=job["id"])
    with pytest.raises(aiohttp.ClientPayloadError):
        await resp.read()
    resp.release()
    emu.faults.close_stream_after_bytes = 10
    async with await wb.stream(job_id=job["id"]) as resp:
        assert len(await resp.read()) == 10
    await until(lambda: emu.open_streams == 0)
    assert emu.stats["streams_opened"] == 4
