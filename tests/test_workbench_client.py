"""WorkbenchClient against the embedded emulator over real loopback HTTP: every public
method, error mapping, configuration and credentials, and retries.

Waits live in test_workbench_waits.py, output streams in test_workbench_streams.py.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Literal

import pytest

from aiocompute import (
    APIError,
    AuthenticationError,
    JobSpec,
    LaunchParameters,
    NotFoundError,
    OutcomeUnknown,
    ProtocolError,
    RateLimitError,
    RetryPolicy,
    ServerError,
    WaitTimeout,
    WorkbenchClient,
)
from aiocompute._core.config import ConfigError
from aiocompute._core.protocol_kit import Request
from aiocompute.emulator import Emulator, EmulatorConfig, WorkbenchEmulatorConfig
from aiocompute.workbench import (
    AuditedJob,
    AuditedJobDetails,
    ComputeEnvironments,
    Job,
    JobOutput,
    LaunchedSession,
    OutputLine,
    ServerVersion,
    Session,
    User,
)
from aiocompute.workbench import _protocol as P
from helpers import make_emulator_on_loop_clock, quick_governor, quick_retry

# A distinctive credential: if it ever shows up in a text, it leaked.
SECRET = "wbtok-Zq81vX-5f3c9e2d7a"
TOKENS = {
    "user-token": ("alice", "user"),
    "admin-token": ("admin", "admin"),
    "super-token": ("root", "super-admin"),
    SECRET: ("carol", "user"),
}
FAST = WorkbenchEmulatorConfig(
    tokens=TOKENS,
    session_launch_delay=0.02,
    session_pending_delay=0.02,
    session_starting_delay=0.02,
    session_stop_delay=0.01,
    session_kill_delay=0.01,
    session_suspend_delay=0.02,
    session_resume_delay=0.02,
    job_pending_delay=0.01,
    job_chunk_count=3,
    job_chunk_interval=0.01,
)
# Quick retries: tests must not sleep through real backoffs.
QUICK = quick_retry(retry_after_max=0.15)
LP = {"name": "t", "cluster": "Local"}


pytestmark = [pytest.mark.emulator(seed=3, workbench=FAST), pytest.mark.virtual_time]


@pytest.fixture
async def wb(emu: Emulator) -> AsyncIterator[WorkbenchClient]:
    # A quick governor: after a 429 only the retry policy spaces the tries (the default
    # governor would pause for the whole Retry-After, 1 s).
    async with WorkbenchClient(
        emu.workbench_url, token="user-token", retry=QUICK, governor=quick_governor()
    ) as client:
        yield client


def spec(*args: str, name: str = "job") -> JobSpec:
    return JobSpec(name=name, cluster="Local", exe="Rscript", args=list(args))


# -- server-wide methods ------------------------------------------------------------------


async def test_version(wb: WorkbenchClient, emu: Emulator) -> None:
    v = await wb.version()
    assert isinstance(v, ServerVersion)
    assert (v.major, v.minor, v.patch) == (2024, 12, 1)
    assert v.has_feature("audited_jobs")
    assert not v.has_feature("no-such-feature")
    # A read without parameters goes out as GET.
    assert [r.http_method for r in emu.requests if r.method == "version"] == ["GET"]


async def test_users_needs_an_admin_token(emu: Emulator, wb: WorkbenchClient) -> None:
    async with WorkbenchClient(emu.workbench_url, token="admin-token") as admin:
        users = await admin.users()
    assert all(isinstance(u, User) for u in users)
    by_name = {u.username: u for u in users}
    assert {"alice", "admin", "root", "carol"} <= set(by_name)
    assert by_name["admin"].is_admin is True
    assert by_name["root"].is_super_admin is True
    assert by_name["alice"].is_admin is False
    with pytest.raises(AuthenticationError) as info:
        await wb.users()
    # An RPC error inside an HTTP 200 body, code 401.
    assert info.value.status == 200
    assert info.value.code == 401
    assert "Permission denied" in str(info.value)


async def test_compute_envs_with_and_without_user(emu: Emulator, wb: WorkbenchClient) -> None:
    envs = await wb.compute_envs()
    assert isinstance(envs, ComputeEnvironments)
    assert {c.name for c in envs.clusters} == {"Local", "Kubernetes"}
    k8s = envs.cluster("Kubernetes")
    assert k8s is not None
    assert k8s.supports_containers is True
    assert "RStudio" in envs.workbenches
    async with WorkbenchClient(emu.workbench_url, token="admin-token") as admin:
        for_alice = await admin.compute_envs(user="alice")
    assert {c.name for c in for_alice.clusters} == {"Local", "Kubernetes"}
    # Another user's environments need an admin token.
    with pytest.raises(AuthenticationError):
        await wb.compute_envs(user="admin")
    methods = [r.http_method for r in emu.requests if r.method == "get_compute_envs"]
    assert methods == ["GET", "POST", "POST"]


# -- sessions -----------------------------------------------------------------------------


async def test_session_launch_list_get(wb: WorkbenchClient, emu: Emulator) -> None:
    launched = await wb.sessions.launch(
        "VS Code",
        name="etl",
        launch_parameters=LaunchParameters(name="etl", cluster="Local"),
        working_directory="/home/alice/etl",
        environment={"STAGE": "test"},
    )
    assert isinstance(launched, LaunchedSession)
    assert launched.id in emu.workbench.sessions
    assert launched.url == emu.workbench.sessions[launched.id].url
    assert launched.project_id
    other = await wb.sessions.launch("RStudio", name="other", launch_parameters=LP)

    got = await wb.sessions.get(launched.id)
    assert isinstance(got, Session)
    assert got.id == launched.id
    assert got.name == "etl"
    assert got.workbench == "VS Code"
    assert got.working_dir == "/home/alice/etl"
    assert got.launch_parameters is not None
    assert got.launch_parameters.cluster == "Local"
    assert isinstance(got.created, datetime)
    assert got.created.tzinfo is not None

    everything = await wb.sessions.list()
    assert {s.id for s in everything.sessions} == {launched.id, other.id}
    only_one = await wb.sessions.list([other.id])
    assert [s.id for s in only_one.sessions] == [other.id]
    slim = await wb.sessions.list([other.id], fields=["name"])
    assert slim.sessions[0].id == other.id
    assert slim.sessions[0].name == "other"
    assert slim.sessions[0].workbench is None  # not asked for


async def test_session_list_include_jobs(wb: WorkbenchClient) -> None:
    job = await wb.jobs.launch(spec("--emu-chunks=1"))
    listing = await wb.sessions.list(include_jobs=True)
    assert job.id in {j.id for j in listing.jobs}
    plain = await wb.sessions.list()
    assert plain.jobs == ()


async def test_get_unknown_session_is_not_found(wb: WorkbenchClient) -> None:
    with pytest.raises(NotFoundError) as info:
        await wb.sessions.get("deadbeef")
    assert "deadbeef" in str(info.value)


async def test_session_stop_and_history(wb: WorkbenchClient, emu: Emulator) -> None:
    before = datetime.now(timezone.utc) - timedelta(seconds=5)
    s = await wb.sessions.launch("RStudio", name="short", launch_parameters=LP)
    await wb.sessions.wait(s.id, timeout=5)
    await wb.sessions.stop(s.id)
    ended = await wb.sessions.wait(s.id, until="ended", timeout=5)
    assert ended.id == s.id
    assert "shutting_down" in [t.state for t in emu.workbench.sessions[s.id].transitions]

    history = await wb.sessions.history(before, include_jobs=True)
    found = history.session(s.id)
    assert found is not None
    assert found.job is not None
    assert found.job.exit_code is not None
    # A window that ends before the launch finds nothing.
    empty = await wb.sessions.history(end=before)
    assert empty.session(s.id) is None


async def test_session_force_stop(wb: WorkbenchClient, emu: Emulator) -> None:
    s = await wb.sessions.launch("RStudio", name="forced", launch_parameters=LP)
    await wb.sessions.wait(s.id, timeout=5)
    await wb.sessions.stop([s.id], force=True)
    await wb.sessions.wait(s.id, until="ended", timeout=5)
    states = [t.state for t in emu.workbench.sessions[s.id].transitions]
    assert "killed" in states
    assert "shutting_down" not in states
    history = await wb.sessions.history()
    found = history.session(s.id)
    assert found is not None
    assert found.job is not None
    assert found.job.state == "Killed"


async def test_session_suspend_and_resume(wb: WorkbenchClient, emu: Emulator) -> None:
    s = await wb.sessions.launch("RStudio", name="nap", launch_parameters=LP)
    await wb.sessions.wait(s.id, timeout=5)
    await wb.sessions.stop(s.id, suspend=True)
    suspended = await wb.sessions.wait(s.id, until="suspended", timeout=5)
    assert suspended.activity_state == "suspended"
    assert suspended.suspend_size
    resumed = await wb.sessions.resume(s.id)
    assert resumed.id == s.id
    running = await wb.sessions.wait(s.id, timeout=5)
    assert running.activity_state == "running"
    states = [t.state for t in emu.workbench.sessions[s.id].transitions]
    assert states[-4:] == ["suspending", "suspended", "resuming", "running"]


async def test_resume_of_a_running_session_is_an_api_error(wb: WorkbenchClient) -> None:
    s = await wb.sessions.launch("RStudio", name="busy", launch_parameters=LP)
    await wb.sessions.wait(s.id, timeout=5)
    with pytest.raises(APIError) as info:
        await wb.sessions.resume(s.id)
    assert type(info.value) is APIError
    assert info.value.code == 400
    assert "not suspended" in info.value.message


async def test_acting_for_another_user(emu: Emulator, wb: WorkbenchClient) -> None:
    async with WorkbenchClient(emu.workbench_url, token="super-token") as root:
        s = await root.sessions.launch(
            "RStudio", name="for-alice", username="alice", launch_parameters=LP
        )
        job = await root.jobs.launch(JobSpec(name="j", cluster="Local", exe="R", user="alice"))
        listing = await root.sessions.list(user="alice", include_jobs=True)
    assert emu.workbench.sessions[s.id].owner == "alice"
    assert emu.workbench.jobs[job.id].owner == "alice"
    assert s.id in {x.id for x in listing.sessions}
    assert job.id in {j.id for j in listing.jobs}
    # Alice sees them as hers; she may not list somebody else's.
    assert (await wb.sessions.get(s.id)).id == s.id
    with pytest.raises(AuthenticationError):
        await wb.sessions.list(user="root")
    with pytest.raises(AuthenticationError):
        await wb.sessions.launch("RStudio", username="root", launch_parameters=LP)


# -- jobs ---------------------------------------------------------------------------------


@pytest.mark.parametrize("nesting", ["double", "single"])
async def test_job_launch_reads_both_result_nestings(
    nesting: Literal["double", "single"],
) -> None:
    config = WorkbenchEmulatorConfig(
        tokens=TOKENS, job_pending_delay=0.01, job_result_nesting=nesting
    )
    async with (
        make_emulator_on_loop_clock(config=EmulatorConfig(workbench=config)) as emu,
        WorkbenchClient(emu.workbench_url, token="user-token") as wb,
    ):
        job = await wb.jobs.launch(spec("--emu-chunks=1", name="nested"))
        audited = await wb.audited_jobs.launch(spec("--emu-chunks=1", name="audit"))
    assert isinstance(job, Job)
    assert job.id in emu.workbench.jobs
    assert job.name == "nested"
    assert job.state == "Pending"
    assert isinstance(audited, AuditedJob)
    assert audited.id in emu.workbench.audited_jobs


async def test_job_launch_get_list_wait(wb: WorkbenchClient, emu: Emulator) -> None:
    job = await wb.jobs.launch(
        JobSpec(
            name="fit",
            cluster="Local",
            exe="R",
            args=["-f", "fit.R", "--emu-chunks=2"],
            environment={"SEED": "1"},
            tags=["nightly"],
        )
    )
    assert job.args == ("-f", "fit.R", "--emu-chunks=2")
    assert job.user == "alice"
    got = await wb.jobs.get(job.id)
    assert got.id == job.id
    assert got.name == "fit"
    assert got.tags[0] == "nightly"  # then the owner label and the client token
    assert [t.split(":")[0] for t in got.tags[1:]] == ["aiocompute-owner", "aiocompute-token"]
    assert job.id in {j.id for j in await wb.jobs.list()}
    done = await wb.jobs.wait(job.id, timeout=5)
    assert done.state == "Finished"
    assert done.exit_code == 0
    assert done.succeeded
    assert done.terminated_time is not None
    assert (await wb.jobs.get(job.id)).state == "Finished"


async def test_get_unknown_job_is_not_found(wb: WorkbenchClient) -> None:
    with pytest.raises(NotFoundError) as info:
        await wb.jobs.get("0123456789abcdef")
    assert "0123456789abcdef" in str(info.value)


async def test_job_stop(wb: WorkbenchClient, emu: Emulator) -> None:
    job = await wb.jobs.launch(spec("--emu-chunks=50", "--emu-interval=0.1"))
    await wb.jobs.wait(job.id, until="Running", timeout=5)
    await wb.jobs.stop(job.id)
    stopped = await wb.jobs.wait(job.id, until="Killed", timeout=5)
    assert stopped.exit_code == 143  # SIGTERM
    assert emu.workbench.jobs[job.id].stopped_at is not None

    forced = await wb.jobs.launch(spec("--emu-chunks=50", "--emu-interval=0.1"))
    await wb.jobs.wait(forced.id, until="Running", timeout=5)
    await wb.jobs.stop(forced.id, force=True)
    killed = await wb.jobs.wait(forced.id, until="Killed", timeout=5)
    assert killed.exit_code == 137  # SIGKILL


async def test_job_stop_of_unknown_job_is_not_found(wb: WorkbenchClient) -> None:
    with pytest.raises(NotFoundError) as info:
        await wb.jobs.stop("0123456789abcdef")
    assert info.value.status == 200
    assert info.value.code == 404


async def test_job_output_lines_collect(wb: WorkbenchClient, emu: Emulator) -> None:
    job = await wb.jobs.launch(spec("--emu-chunks=4", "--emu-stderr-every=2"))
    chunks = [c async for c in wb.jobs.output(job.id)]
    record = emu.workbench.jobs[job.id]
    assert [(c.output_type, c.output) for c in chunks] == [record.chunk(i) for i in range(4)]
    assert {c.job_id for c in chunks} == {job.id}

    lines = [line async for line in wb.jobs.lines(job.id)]
    assert all(isinstance(line, OutputLine) for line in lines)
    assert [(x.output_type, x.text) for x in lines] == [
        (kind, text.rstrip("\n")) for kind, text in (record.chunk(i) for i in range(4))
    ]

    collected = await wb.jobs.collect(job.id)
    assert isinstance(collected, JobOutput)
    assert collected.stdout == record.chunk(0)[1] + record.chunk(2)[1]
    assert collected.stderr == record.chunk(1)[1] + record.chunk(3)[1]
    assert len(collected.chunks) == 4


# -- audited jobs -------------------------------------------------------------------------


async def test_audited_job_lifecycle(wb: WorkbenchClient, emu: Emulator) -> None:
    job = await wb.audited_jobs.launch(spec("--emu-chunks=3", "--emu-interval=0.03"))
    assert isinstance(job, AuditedJob)
    record = emu.workbench.audited_jobs[job.id]
    # Live: streamed chunk by chunk, from the launcher.
    live = [c async for c in wb.audited_jobs.output(job.id)]
    assert [c.output for c in live] == [record.chunk(i)[1] for i in range(3)]
    assert {c.output_source for c in live} == {"job_launcher"}
    assert {c.job_id for c in live} == {record.launcher_id}

    done = await wb.audited_jobs.wait(job.id, timeout=5)
    assert done.state == "Finished"
    # Finished: the whole output as one object from the audit store.
    finished = [c async for c in wb.audited_jobs.output(job.id)]
    assert len(finished) == 1
    assert finished[0].output == record.full_output()
    assert finished[0].output_source == "audit_details_store"
    assert finished[0].job_id == job.id
    collected = await wb.audited_jobs.collect(job.id)
    assert collected.stdout == record.full_output()

    details = await wb.audited_jobs.details(job.id)
    assert isinstance(details, AuditedJobDetails)
    assert details.script_output is not None
    assert details.script_output.checksum
    assert details.script_output.user_defined_data[0].file_name == "user-defined-1.txt"
    assert details.environment is not None
    assert "alice" in (details.environment.summary or "")


async def test_audited_job_details_before_completion_is_an_api_error(
    wb: WorkbenchClient,
) -> None:
    job = await wb.audited_jobs.launch(spec("--emu-chunks=50", "--emu-interval=0.1"))
    with pytest.raises(APIError) as info:
        await wb.audited_jobs.details(job.id)
    assert info.value.code == 400
    assert "completed" in info.value.message
    await wb.audited_jobs.stop(job.id, force=True)


async def test_audited_job_stop(wb: WorkbenchClient, emu: Emulator) -> None:
    job = await wb.audited_jobs.launch(spec("--emu-chunks=50", "--emu-interval=0.1"))
    await wb.audited_jobs.wait(job.id, until="Running", timeout=5)
    await wb.audited_jobs.stop(job.id)
    stopped = await wb.audited_jobs.wait(job.id, until="Killed", timeout=5)
    assert stopped.state == "Killed"
    assert emu.workbench.audited_jobs[job.id].final_status == "Killed"
    with pytest.raises(NotFoundError):
        await wb.audited_jobs.stop("0123456789abcdef")


# -- errors -------------------------------------------------------------------------------


async def test_rpc_errors_map_to_classes(wb: WorkbenchClient) -> None:
    with pytest.raises(APIError) as info:
        await wb.sessions.launch("RStudio", launch_parameters={"name": "x", "cluster": "Mars"})
    assert type(info.value) is APIError
    assert info.value.status == 200
    assert info.value.code == 400
    assert 'Unknown cluster "Mars"' in info.value.message
    with pytest.raises(APIError, match="Kubernetes requires the"):
        await wb.jobs.launch(JobSpec(name="k", cluster="Kubernetes", exe="R"))
    with pytest.raises(NotFoundError):
        await wb.sessions.stop("0badc0de")
    with pytest.raises(NotFoundError):
        await wb.audited_jobs.details("0123456789abcdef")


async def test_launch_parameters_checked_before_any_request(
    wb: WorkbenchClient, emu: Emulator
) -> None:
    with pytest.raises(ValueError, match=r"launch_parameters\.cluster"):
        await wb.sessions.launch("RStudio", launch_parameters={"name": "x", "cluster": " "})
    with pytest.raises(ValueError, match=r"launch_parameters\.name"):
        await wb.sessions.resume("s1", launch_parameters=LaunchParameters(cluster="Local"))
    with pytest.raises(ValueError, match=r"job\.exe or job\.command"):
        await wb.jobs.launch(JobSpec(name="j", cluster="Local"))
    assert emu.stats["total"] == 0
    assert not emu.workbench.sessions


async def test_missing_credentials_is_a_config_error(
    monkeypatch: pytest.MonkeyPatch, emu: Emulator
) -> None:
    for name in ("WORKBENCH_API_KEY", "RS_SESSION_RPC_COOKIE", "PWB_SESSION_RUNTIME_DIR"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(ConfigError, match="WORKBENCH_API_KEY"):
        WorkbenchClient(emu.workbench_url)
    monkeypatch.delenv("WORKBENCH_SERVER", raising=False)
    with pytest.raises(ConfigError, match="WORKBENCH_SERVER"):
        WorkbenchClient(token="user-token")


async def test_settings_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, emu: Emulator
) -> None:
    monkeypatch.setenv("WORKBENCH_SERVER", emu.workbench_url)
    monkeypatch.setenv("WORKBENCH_API_KEY", "admin-token")
    async with WorkbenchClient() as wb:
        users = await wb.users()  # only the admin token may do this
    assert "admin" in {u.username for u in users}
    # Arguments come before the environment.
    async with WorkbenchClient(token="user-token") as wb:
        with pytest.raises(AuthenticationError):
            await wb.users()


async def test_rpc_cookie_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, emu: Emulator, tmp_path: Path
) -> None:
    monkeypatch.delenv("WORKBENCH_API_KEY", raising=False)
    monkeypatch.delenv("PWB_SESSION_RUNTIME_DIR", raising=False)
    monkeypatch.setenv("RS_SESSION_RPC_COOKIE", "rpc-cookie")
    async with WorkbenchClient(emu.workbench_url) as wb:
        s = await wb.sessions.launch("RStudio", name="via-cookie", launch_parameters=LP)
        # Real servers refuse launch_job to the session cookie: a real HTTP 401.
        with pytest.raises(AuthenticationError) as info:
            await wb.jobs.launch(spec())
        assert info.value.status == 401
    assert emu.workbench.sessions[s.id].owner == "alice"

    monkeypatch.delenv("RS_SESSION_RPC_COOKIE")
    (tmp_path / "rpc_cookie").write_text("rpc-cookie\n", encoding="utf-8")
    monkeypatch.setenv("PWB_SESSION_RUNTIME_DIR", str(tmp_path))
    async with WorkbenchClient(emu.workbench_url) as wb:
        listing = await wb.sessions.list()
    assert s.id in {x.id for x in listing.sessions}

    # A runtime dir without a cookie file means no credentials at all.
    (tmp_path / "rpc_cookie").unlink()
    with pytest.raises(ConfigError):
        WorkbenchClient(emu.workbench_url)


async def test_wrong_token_is_an_authentication_error(emu: Emulator) -> None:
    async with WorkbenchClient(emu.workbench_url, token="not-a-token", retry=QUICK) as wb:
        with pytest.raises(AuthenticationError) as info:
            await wb.version()
    assert info.value.status == 401
    assert emu.stats["workbench.version"] == 1  # a 401 is not retried


async def test_token_never_leaks(
    emu: Emulator, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    caplog.set_level(logging.DEBUG)
    errors: list[BaseException] = []
    async with WorkbenchClient(emu.workbench_url, token=SECRET, retry=QUICK) as wb:
        texts = [repr(wb), str(wb)]
        await wb.version()
        s = await wb.sessions.launch("RStudio", name="secret", launch_parameters=LP)
        emu.faults.error_next["workbench.get_session"] = 1
        emu.faults.bad_gateway_next["workbench.get_session"] = 1
        await wb.sessions.get(s.id)
        stuck = await wb.sessions.launch("RStudio", name="emu-stuck", launch_parameters=LP)
        emu.faults.error_next["workbench.launch_session"] = 1
        for call in (
            wb.users,
            lambda: wb.sessions.get("deadbeef"),
            lambda: wb.sessions.launch("RStudio", launch_parameters=LP, reconcile=False),
            lambda: wb.sessions.wait(stuck.id, timeout=0.2),
            lambda: wb.jobs.stop("0123456789abcdef"),
        ):
            try:
                await call()
            except Exception as exc:
                errors.append(exc)
        texts.append(repr(wb))
    async with WorkbenchClient(emu.workbench_url, token=SECRET + "-wrong") as bad:
        try:
            await bad.version()
        except Exception as exc:
            errors.append(exc)
    monkeypatch.delenv("WORKBENCH_API_KEY", raising=False)
    monkeypatch.delenv("RS_SESSION_RPC_COOKIE", raising=False)
    monkeypatch.delenv("PWB_SESSION_RUNTIME_DIR", raising=False)
    try:
        WorkbenchClient(emu.workbench_url, token="   ")
    except Exception as exc:
        errors.append(exc)

    kinds = {type(e) for e in errors}
    assert {AuthenticationError, NotFoundError, OutcomeUnknown, WaitTimeout, ConfigError} <= kinds
    for error in errors:
        texts += [str(error), repr(error), repr(vars(error))]
    texts += [r.getMessage() for r in caplog.records]
    texts += [str(r.exc_info) for r in caplog.records if r.exc_info]
    assert any("get_session" in r.getMessage() for r in caplog.records)  # logging did happen
    for text in texts:
        assert SECRET not in text
        assert SECRET[6:] not in text


# -- retries ------------------------------------------------------------------------------


async def test_reads_are_retried_on_503_and_502(wb: WorkbenchClient, emu: Emulator) -> None:
    s = await wb.sessions.launch("RStudio", name="r", launch_parameters=LP)
    before = emu.stats["workbench.get_session"]  # the launch listed the sessions once
    emu.faults.error_next["workbench.get_session"] = 1
    emu.faults.bad_gateway_next["workbench.get_session"] = 1
    got = await wb.sessions.get(s.id)
    assert got.id == s.id
    assert emu.stats["workbench.get_session"] == before + 3
    assert emu.stats["faults.error"] == 1
    assert emu.stats["faults.bad_gateway"] == 1

    emu.faults.error_next["workbench.version"] = 2
    assert (await wb.version()).major == 2024
    assert emu.stats["workbench.version"] == 3


async def test_reads_honour_retry_after_on_429(wb: WorkbenchClient, emu: Emulator) -> None:
    emu.faults.retry_after = 1
    emu.faults.rate_limit_next["workbench.get_compute_envs"] = 1
    envs = await wb.compute_envs()
    assert envs.cluster("Local") is not None
    arrivals = [r.monotonic for r in emu.requests if r.method == "get_compute_envs"]
    assert len(arrivals) == 2
    # Retry-After (1 s) capped by the policy's retry_after_max (0.15 s) is a floor.
    assert arrivals[1] - arrivals[0] >= 0.14

    emu.faults.rate_limit_next["workbench.get_compute_envs"] = 1
    with pytest.raises(RateLimitError) as info:
        await wb._send(P.get_compute_envs(), retry=RetryPolicy(max_attempts=1))
    assert info.value.retry_after == 1


async def test_launches_are_not_retried(wb: WorkbenchClient, emu: Emulator) -> None:
    # A 503 may be a gateway's after the server acted: never blindly sent again.
    emu.faults.error_next["workbench.launch_session"] = 1
    with pytest.raises(OutcomeUnknown) as info:
        await wb.sessions.launch("RStudio", name="once", launch_parameters=LP, reconcile=False)
    assert info.value.status == 503
    assert emu.stats["workbench.launch_session"] == 1
    assert not emu.workbench.sessions

    emu.faults.error_next["workbench.launch_job"] = 1
    with pytest.raises(OutcomeUnknown):
        await wb.jobs.launch(spec(), reconcile=False)
    assert emu.stats["workbench.launch_job"] == 1

    # Reconciled (the default): looked up, surely absent, so sent again.
    emu.faults.error_next["workbench.launch_session"] = 1
    s = await wb.sessions.launch("RStudio", name="twice", launch_parameters=LP)
    assert emu.stats["workbench.launch_session"] == 3
    assert list(emu.workbench.sessions) == [s.id]

    emu.faults.bad_gateway_next["workbench.stop_session"] = 1
    with pytest.raises(OutcomeUnknown):
        await wb.sessions.stop(s.id)
    assert emu.stats["workbench.stop_session"] == 1


async def test_html_502_page_is_a_short_server_error(emu: Emulator) -> None:
    async with WorkbenchClient(
        emu.workbench_url, token="user-token", retry=QUICK.replace(max_attempts=2)
    ) as wb:
        emu.faults.bad_gateway_next["workbench.get_session"] = 5
        with pytest.raises(ServerError) as info:
            await wb.sessions.list()
    assert emu.stats["workbench.get_session"] == 2
    error = info.value
    assert error.status == 502
    assert "Bad Gateway" in str(error)
    assert "<" not in error.body  # the page reduced to its words
    assert "nginx" in error.body
    assert len(error.body) <= 200
    assert len(str(error)) <= 400


async def test_html_login_page_with_200_is_a_protocol_error(
    wb: WorkbenchClient, emu: Emulator
) -> None:
    emu.faults.malformed["workbench.get_session"] = "html"
    with pytest.raises(ProtocolError, match="HTML"):
        await wb.sessions.list()


async def test_client_repr_and_close(emu: Emulator) -> None:
    wb = WorkbenchClient(emu.workbench_url, token=SECRET)
    assert emu.workbench_url in repr(wb)
    assert not wb.closed
    await wb.aclose()
    await wb.aclose()  # idempotent
    assert wb.closed


# -- acting for another user ---------------------------------------------------------------


async def test_an_admin_acting_for_a_user_reads_waits_and_tails_their_job(
    wb: WorkbenchClient, emu: Emulator
) -> None:
    launched = await wb.jobs.launch(spec("a.R", name="alices"))
    async with WorkbenchClient(emu.workbench_url, token="admin-token", retry=QUICK) as admin:
        # As itself, the admin's listing is its own: alice's job is not in it.
        with pytest.raises(NotFoundError):
            await admin.jobs.get(launched.id)
        async with WorkbenchClient(
            emu.workbench_url, token="admin-token", retry=QUICK, act_as="alice"
        ) as for_alice:
            assert (await for_alice.jobs.get(launched.id)).id == launched.id
            done = await for_alice.jobs.wait(launched.id, timeout=10)
            assert done.state == "Finished"
            output = await for_alice.jobs.collect(launched.id)
            assert output.stdout  # the stream was read as alice, the job's owner
            assert launched.id in [j.id for j in await for_alice.jobs.list()]


async def test_a_super_admin_acting_for_a_user_launches_as_them(emu: Emulator) -> None:
    async with WorkbenchClient(
        emu.workbench_url, token="super-token", retry=QUICK, act_as="alice"
    ) as for_alice:
        s = await for_alice.sessions.launch("RStudio", name="for-alice", launch_parameters=LP)
        job = await for_alice.jobs.launch(spec("b.R", name="for-alice"))
        # An explicit username wins over act_as.
        own = await for_alice.sessions.launch(
            "RStudio", name="root's", username="root", launch_parameters=LP
        )
        assert (await for_alice.sessions.wait(s.id, timeout=10)).id == s.id
    assert emu.workbench.sessions[s.id].owner == "alice"
    assert emu.workbench.sessions[own.id].owner == "root"
    async with WorkbenchClient(emu.workbench_url, token="user-token", retry=QUICK) as alice:
        assert (await alice.jobs.get(job.id)).id == job.id


async def test_acting_for_a_user_lists_only_their_ended_sessions(emu: Emulator) -> None:
    before = datetime.now(timezone.utc) - timedelta(seconds=5)
    ended: dict[str, str] = {}
    for token, owner in (("user-token", "alice"), ("super-token", "root")):
        async with WorkbenchClient(emu.workbench_url, token=token, retry=QUICK) as c:
            s = await c.sessions.launch("RStudio", name=owner, launch_parameters=LP)
            await c.sessions.wait(s.id, timeout=10)
            await c.sessions.stop(s.id)
            await c.sessions.wait(s.id, until="ended", timeout=10)
            ended[owner] = s.id
    async with WorkbenchClient(
        emu.workbench_url, token="admin-token", retry=QUICK, act_as="alice"
    ) as for_alice:
        mine = await for_alice.sessions.history(before)
        everyone = await for_alice.sessions.history(before, include_all_users=True)
    assert [s.id for s in mine.sessions] == [ended["alice"]]
    assert {ended["alice"], ended["root"]} <= {s.id for s in everyone.sessions}


def test_acting_for_names_the_user_where_each_call_takes_it() -> None:
    def act(request: Request) -> Request:
        return P.acting_for(request, "alice")

    envs = act(P.get_compute_envs())
    assert (envs.method, envs.body["kwparams"]) == ("POST", {"user": "alice"})
    assert act(P.get_session(["s1"])).body["kwparams"]["user"] == "alice"
    assert act(P.get_job_output("j1")).body["kwparams"]["user"] == "alice"
    assert act(P.resume_session("s1")).body["kwparams"]["username"] == "alice"
    job = act(P.launch_job(spec("x.R"))).body["kwparams"]["job"]
    assert job["user"] == "alice"
    audited = act(P.launch_audited_job(spec("x.R"))).body["kwparams"]["audited_job"]
    assert audited["user"] == "alice"
    # What the caller named is kept; calls without a user parameter are left as they are.
    assert act(P.get_session(user="bob")).body["kwparams"]["user"] == "bob"
    explicit = JobSpec(name="j", cluster="Local", exe="R", user="bob")
    assert act(P.launch_job(explicit)).body["kwparams"]["job"]["user"] == "bob"
    stop = P.stop_job("j1")
    assert act(stop) is stop
    assert P.acting_for(P.get_compute_envs(), None).method == "GET"


@pytest.mark.parametrize("bad", ["", "  "])
def test_act_as_must_name_a_user(bad: Any) -> None:
    with pytest.raises(ValueError, match="act_as"):
        WorkbenchClient("http://127.0.0.1:9", token="t", act_as=bad)


def test_the_repr_says_whom_a_client_acts_for() -> None:
    plain = WorkbenchClient("http://127.0.0.1:9/wb", token=SECRET)
    acting = WorkbenchClient("http://127.0.0.1:9/wb", token=SECRET, act_as="alice")
    assert repr(plain) == "WorkbenchClient('http://127.0.0.1:9/wb')"
    assert repr(acting) == "WorkbenchClient('http://127.0.0.1:9/wb', act_as='alice')"
    assert SECRET not in repr(acting)
