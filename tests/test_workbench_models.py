"""Workbench models against every JSON example of both references (strict mode)."""

from __future__ import annotations

import copy
import json
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from aiocompute import ProtocolError
from aiocompute._core.serde import structure
from aiocompute.workbench import _protocol as wp
from aiocompute.workbench.models import (
    AuditedJob,
    AuditedJobDetails,
    ComputeEnvironments,
    Container,
    EnvironmentVariable,
    Job,
    JobSpec,
    JobStatus,
    LaunchedSession,
    LaunchParameters,
    OutputChunk,
    PlacementConstraint,
    ResourceLimit,
    ServerVersion,
    Session,
    SessionListing,
    SessionState,
    User,
)

FIXTURES = Path(__file__).parent / "fixtures" / "workbench"
UTC = timezone.utc


def load(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text())


def _stream(data: list[Any], *, strict: bool) -> list[OutputChunk]:
    return [wp.parse_stream_object(o, strict=strict) for o in data]


def _audited_stream(data: list[Any], *, strict: bool) -> list[OutputChunk]:
    return [wp.parse_stream_object(o, audited=True, strict=strict) for o in data]


def _result(parser: Any) -> Any:
    """Parse a whole response body (envelope included) as the server would send it."""

    def parse(data: Any, *, strict: bool) -> Any:
        return parser(data["result"], strict=strict)

    return parse


# Every result/stream example -> (how to read it, the model it must become).
RESULTS: dict[str, tuple[Any, Any]] = {
    "launch_session.result": (_result(wp.parse_launched_session), LaunchedSession),
    "resume_session.result": (_result(wp.parse_launched_session), LaunchedSession),
    "launch_job.result": (_result(wp.parse_job_launch), Job),
    "launch_audited_job.result": (_result(wp.parse_audited_job_launch), AuditedJob),
    "get_session.result": (_result(wp.parse_session_listing), SessionListing),
    "get_historical_session.result": (_result(wp.parse_session_listing), SessionListing),
    "get_compute_envs.result": (_result(wp.parse_compute_envs), ComputeEnvironments),
    "get_users.result": (_result(wp.parse_users), list),
    "get_audited_job_details.result": (_result(wp.parse_audited_job_details), AuditedJobDetails),
    "get_audited_job_output.result-finished": (wp.parse_stream_object, OutputChunk),
    "get_job_output.stream": (_stream, list),
    "get_audited_job_output.stream": (_audited_stream, list),
}

ALL_FILES = sorted(p.name for p in FIXTURES.glob("*.json"))
RESULT_FILES = [n for n in ALL_FILES if ".request" not in n]
REQUEST_FILES = [n for n in ALL_FILES if ".request" in n]


def _kind(name: str) -> str:
    # "current.get_session.result.json" -> "get_session.result"
    return name.split(".", 1)[1].removesuffix(".json")


def test_fixtures_cover_both_references() -> None:
    assert len(ALL_FILES) == 42
    assert {n.split(".")[0] for n in ALL_FILES} == {"current", "preview"}
    for name in RESULT_FILES:
        assert _kind(name) in RESULTS, f"no expectation for fixture {name}"


@pytest.mark.parametrize("name", RESULT_FILES)
def test_every_example_reads_strictly(name: str) -> None:
    parse, model = RESULTS[_kind(name)]
    value = parse(load(name), strict=True)
    assert isinstance(value, model)
    if isinstance(value, list):
        assert value
        inner = OutputChunk if "output" in name else User
        assert all(isinstance(v, inner) for v in value)


@pytest.mark.parametrize("name", RESULT_FILES)
def test_strict_and_lenient_agree_on_the_examples(name: str) -> None:
    parse, _ = RESULTS[_kind(name)]
    assert parse(load(name), strict=True) == parse(load(name), strict=False)


# Where to slip an unknown key into each example, where the error must point, and how to
# reach the model that must keep it in .raw (lenient mode).
DRIFT: list[tuple[str, list[Any], str, Any]] = [
    (
        "current.get_session.result.json",
        ["result", "sessions", 0],
        "$.result.sessions[0]",
        lambda r: r.sessions[0],
    ),
    (
        "current.get_session.result.json",
        ["result", "sessions", 0, "launch_parameters"],
        "$.result.sessions[0].launch_parameters",
        lambda r: r.sessions[0].launch_parameters,
    ),
    (
        "current.get_historical_session.result.json",
        ["result", "sessions", 0, "job"],
        "$.result.sessions[0].job",
        lambda r: r.sessions[0].job,
    ),
    (
        "current.launch_job.result.json",
        ["result", "result", "job"],
        "$.result.result.job",
        lambda r: r,
    ),
    (
        "current.launch_job.result.json",
        ["result", "result", "job", "container"],
        "$.result.result.job.container",
        lambda r: r.container,
    ),
    (
        "current.get_compute_envs.result.json",
        ["result", "clusters", 0, "workbenches", "VS Code"],
        "$.result.clusters[0].workbenches['VS Code']",
        lambda r: r.clusters[0].workbenches["VS Code"],
    ),
    (
        "current.get_compute_envs.result.json",
        ["result", "workbenches", "RStudio", "lang"],
        "$.result.workbenches['RStudio'].lang",
        lambda r: r.workbenches["RStudio"].lang,
    ),
    ("preview.get_users.result.json", ["result", 1], "$.result[1]", lambda r: r[1]),
    (
        "current.get_audited_job_details.result.json",
        ["result", "audited_details", "script_output", "user_defined_data", 1],
        "$.result.audited_details.script_output.user_defined_data[1]",
        lambda r: r.script_output.user_defined_data[1],
    ),
    ("current.launch_session.result.json", ["result"], "$.result", lambda r: r),
    (
        "current.get_audited_job_output.result-finished.json",
        ["result", "audited_job_output"],
        "$.result.audited_job_output",
        lambda r: r,
    ),
]


def _dig(data: Any, path: list[Any]) -> Any:
    for step in path:
        data = data[step]
    return data


@pytest.mark.parametrize(("name", "where", "path", "reach"), DRIFT)
def test_unknown_key_fails_strict_with_path_and_is_kept_lenient(
    name: str, where: list[Any], path: str, reach: Any
) -> None:
    data = copy.deepcopy(load(name))
    _dig(data, where)["brand_new_field"] = {"x": 1}
    parse, _ = RESULTS[_kind(name)]
    with pytest.raises(ProtocolError) as info:
        parse(data, strict=True)
    message = str(info.value)
    assert f"{path}: unknown key(s) 'brand_new_field'" in message
    assert message.startswith("could not read ")
    assert reach(parse(data, strict=False)).raw["brand_new_field"] == {"x": 1}


def test_wrong_type_in_example_fails_strict_with_path() -> None:
    data = load("current.get_session.result.json")
    data["result"]["sessions"][0]["suspend_size"] = "20 MB"
    with pytest.raises(ProtocolError) as info:
        wp.parse_session_listing(data["result"], strict=True)
    assert "$.result.sessions[0].suspend_size: expected an integer, got string" in str(info.value)
    assert "Session.suspend_size" in str(info.value)


# --------------------------------------------------------------------------- contents


def test_live_session_example() -> None:
    listing = wp.parse_session_listing(load("current.get_session.result.json")["result"])
    assert listing.jobs == ()
    (s,) = listing.sessions
    assert s.id == "6124d41f"
    assert s.activity_state is SessionState.SUSPENDED
    assert wp.session_state(s) == "suspended"
    assert s.created == datetime(2024, 7, 22, 21, 34, 33, 175000, tzinfo=UTC)
    assert s.last_state_updated == datetime(2024, 7, 23, 0, 42, 56, 181000, tzinfo=UTC)
    assert s.last_used is not None
    assert s.last_used.tzinfo is not None
    assert s.project is None
    assert s.project_id == "none"
    assert s.suspend_size == 20324197
    assert s.workbench == "RStudio"
    lp = s.launch_parameters
    assert lp == LaunchParameters(
        name="RStudio Pro Session",
        cluster="Local",
        container_image="",
        default_image="",
        container_images=("",),
    )
    assert listing.session("6124d41f") is s
    assert listing.session("nope") is None


def test_historical_session_example() -> None:
    listing = wp.parse_session_listing(load("current.get_historical_session.result.json")["result"])
    (s,) = listing.sessions
    assert s.username == "user1"
    assert s.activity_state is None
    assert wp.session_state(s) == "ended"
    assert s.created == datetime(2025, 7, 26, 5, 30, 21, 424300, tzinfo=UTC)
    assert s.last_used == datetime(2025, 7, 26, 5, 42, 56, tzinfo=UTC)
    assert s.launch_parameters == LaunchParameters(cluster="Local", container_image="")
    job = s.job
    assert isinstance(job, Job)
    assert job.container == ""
    assert job.container_image is None
    assert job.status is JobStatus.FINISHED
    assert job.exit_code == 143
    assert job.is_terminal
    assert job.failed
    assert not job.succeeded
    assert job.terminated_time == datetime(2025, 7, 26, 5, 42, 40, 132000, tzinfo=UTC)
    assert job.running_timestamp == datetime(2025, 7, 26, 5, 42, 40, 241694, tzinfo=UTC)
    assert listing.job("<job ID>") is job


def test_launched_job_example() -> None:
    job = wp.parse_job_launch(load("current.launch_job.result.json")["result"], strict=True)
    assert job.id == "..."
    assert job.container == Container("posit/r-base:4.3-jammy")
    assert job.container_image == "posit/r-base:4.3-jammy"
    assert job.status is JobStatus.PENDING
    assert wp.job_state(job) == "Pending"
    assert not job.is_terminal
    assert not job.failed
    assert job.pid == 729383
    assert job.args == ("-c", "R -f /tmp/JobTest.R")
    assert job.working_directory == ""
    assert job.stdin == ""
    assert job.metadata == {}
    assert job.resource_profile == "custom"
    assert job.submission_time == datetime(2024, 10, 1, 20, 49, 32, 294014, tzinfo=UTC)
    assert job.last_update_time == datetime(2024, 10, 1, 20, 49, 32, 294130, tzinfo=UTC)
    preview = wp.parse_job_launch(load("preview.launch_job.result.json")["result"], strict=True)
    assert preview.container is None
    assert preview.id == job.id


def test_audited_job_example_is_a_job() -> None:
    data = load("current.launch_audited_job.result.json")["result"]
    job = wp.parse_audited_job_launch(data, strict=True)
    assert type(job) is AuditedJob
    assert isinstance(job, Job)
    assert job.user == "jvroom"


def test_compute_envs_example() -> None:
    envs = wp.parse_compute_envs(load("current.get_compute_envs.result.json")["result"])
    local = envs.cluster("Local")
    assert local is not None
    assert envs.cluster("Slurm") is None
    assert local.type == "Local"
    assert local.supports_containers is False
    assert local.workbenches["VS Code"].supports_adhoc_jobs is True
    assert set(envs.workbenches) == {"RStudio", "JupyterLab", "Jupyter Notebook", "VS Code"}
    vscode = envs.workbenches["VS Code"]
    assert vscode.default_cluster == "Localhost"
    assert vscode.lang is not None
    assert vscode.lang.name == "code-server"
    assert vscode.lang.available is False


def test_users_example() -> None:
    users = wp.parse_users(load("current.get_users.result.json")["result"], strict=True)
    assert [u.username for u in users] == ["user1", "user2"]
    assert users[0].is_admin is False
    assert users[0].is_super_admin is None
    assert users[1].status == "Inactive"
    assert users[0].uid == 1037
    assert users[0].last_sign_in == datetime(2024, 7, 30, 23, 45, 28, 351868, tzinfo=UTC)


def test_audited_details_example() -> None:
    details = wp.parse_audited_job_details(
        load("current.get_audited_job_details.result.json")["result"], strict=True
    )
    assert details.script_output is not None
    assert details.script_output.checksum == "kFe4sdpdad"
    files = details.script_output.user_defined_data
    assert [f.file_name for f in files] == ["user-defined-1.txt", "user-defined-2.txt"]
    assert details.environment is not None
    assert details.environment.summary is not None
    assert details.raw["script_output"]["checksum"] == "kFe4sdpdad"


def test_output_examples() -> None:
    chunks = _stream(load("current.get_job_output.stream.json"), strict=True)
    assert [c.output_type for c in chunks] == ["stdout", "stderr"]
    assert chunks[0].output_source is None
    audited = _audited_stream(load("current.get_audited_job_output.stream.json"), strict=True)
    assert {c.output_source for c in audited} == {"job_launcher"}
    finished = wp.parse_stream_object(load("current.get_audited_job_output.result-finished.json"))
    assert finished.output == "The entire job output"
    assert finished.output_source == "audit_details_store"


# --------------------------------------------------------------------------- requests


@pytest.mark.parametrize(
    "name", [n for n in REQUEST_FILES if "launch_job" in n or "launch_audited_job" in n]
)
def test_job_request_examples_read_as_jobspec(name: str) -> None:
    kw = load(name)["kwparams"]
    payload = kw.get("job", kw.get("audited_job"))
    spec = structure(wp.converter(strict=True), payload, JobSpec, what="job")
    assert spec.cluster in ("Local", "Kubernetes")
    assert spec.exe is not None
    assert wp.kwparams_of(wp.launch_job(spec))["job"] == payload


@pytest.mark.parametrize(
    "name", [n for n in REQUEST_FILES if "launch_session" in n or "resume_session" in n]
)
def test_launch_parameters_request_examples_read(name: str) -> None:
    lp = load(name)["kwparams"]["launch_parameters"]
    params = structure(wp.converter(strict=True), lp, LaunchParameters, what="lp")
    assert params == LaunchParameters(name="Job name", cluster="Local")
    assert wp.converter().unstructure(params) == lp


# --------------------------------------------------------------------------- edge cases


def test_unknown_activity_state_is_kept_as_string() -> None:
    data = load("current.get_session.result.json")["result"]
    data["sessions"][0]["activity_state"] = "hibernating"
    for strict in (False, True):
        (s,) = wp.parse_session_listing(data, strict=strict).sessions
        assert s.activity_state == "hibernating"
        assert not isinstance(s.activity_state, SessionState)
        assert wp.session_state(s) == "hibernating"


def test_unknown_job_status_is_kept_and_not_terminal() -> None:
    job = Job(id="j", status="Hibernating")
    assert wp.job_state(job) == "Hibernating"
    assert not job.is_terminal
    assert not job.failed
    assert wp.job_state(Job(id="j")) == "unknown"


def test_epoch_and_iso_timestamps_are_the_same_kind_of_value() -> None:
    live = wp.parse_session_listing(load("current.get_session.result.json")["result"])
    old = wp.parse_session_listing(load("current.get_historical_session.result.json")["result"])
    a, b = live.sessions[0].created, old.sessions[0].created
    assert isinstance(a, datetime)
    assert isinstance(b, datetime)
    assert a.tzinfo is not None
    assert b.tzinfo is not None
    assert a.utcoffset() == b.utcoffset()
    assert a < b  # comparable: both aware


@pytest.mark.parametrize(
    ("status", "exit_code", "terminal", "succeeded"),
    [
        ("Pending", None, False, False),
        ("Running", None, False, False),
        ("Suspended", None, False, False),
        ("Finished", 0, True, True),
        ("Finished", None, True, True),
        ("Finished", 1, True, False),
        ("Failed", None, True, False),
        ("Killed", 137, True, False),
        ("Canceled", None, True, False),
    ],
)
def test_job_outcome(status: str, exit_code: int | None, terminal: bool, succeeded: bool) -> None:
    job = structure(
        wp.converter(strict=True),
        {"id": "j", "status": status, "exitCode": exit_code},
        Job,
        what="job",
    )
    assert isinstance(job.status, JobStatus)
    assert job.is_terminal is terminal
    assert job.succeeded is succeeded
    assert job.failed is (terminal and not succeeded)


def test_resource_limit_accepts_both_reference_shapes() -> None:
    conv = wp.converter(strict=True)
    current = structure(
        conv,
        {"type": "memory", "value": "4", "max_value": "16", "default_value": "2"},
        ResourceLimit,
        what="limit",
    )
    assert (current.type, current.value, current.max_value, current.default_value) == (
        "memory",
        "4",
        "16",
        "2",
    )
    preview = structure(
        conv, {"name": "cpu", "value": "2", "valueType": "int"}, ResourceLimit, what="limit"
    )
    assert (preview.name, preview.value, preview.value_type) == ("cpu", "2", "int")
    camel = structure(conv, {"type": "cpu", "maxValue": "8"}, ResourceLimit, what="limit")
    assert camel.max_value == "8"
    # Written back in the current reference's spelling.
    assert wp.converter().unstructure(camel) == {"type": "cpu", "max_value": "8"}


def test_job_working_directory_snake_alias() -> None:
    job = structure(
        wp.converter(strict=True), {"id": "j", "working_directory": "/w"}, Job, what="job"
    )
    assert job.working_directory == "/w"


def test_jobspec_normalises_its_inputs() -> None:
    spec = JobSpec(
        name="fit",
        cluster="Local",
        exe="R",
        args=["-f", "fit.R"],
        environment={"A": "1"},
        tags=["t"],
        placement_constraints=[PlacementConstraint("zone", "a")],
    )
    assert spec.args == ("-f", "fit.R")
    assert spec.environment == (EnvironmentVariable("A", "1"),)
    assert spec.tags == ("t",)
    assert spec.placement_constraints == (PlacementConstraint("zone", "a"),)
    with pytest.raises(TypeError, match="single string"):
        JobSpec(name="fit", cluster="Local", exe="R", args="-f fit.R")
    with pytest.raises(TypeError, match="EnvironmentVariable"):
        JobSpec(name="f", cluster="L", exe="R", environment=[("A", "1")])  # type: ignore[list-item]


def test_server_version_helpers() -> None:
    v = wp.parse_version({"version": {"major": "2024", "minor": "12", "patch": "1"}})
    assert v == ServerVersion(major=2024, minor=12, patch=1)
    assert v.number == (2024, 12, 1)
    assert not v.has_feature("x")


# --------------------------------------------------------------------------- round trips

_text = st.text(max_size=12)
_opt_text = st.none() | _text
_times = st.none() | st.datetimes(
    min_value=datetime(1971, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)
)
_ints = st.none() | st.integers(min_value=-(2**40), max_value=2**40)
_json_scalars = st.none() | st.booleans() | st.integers(-1000, 1000) | _text

_limits = st.builds(
    ResourceLimit,
    type=_opt_text,
    value=_opt_text,
    max_value=_opt_text,
    default_value=_opt_text,
    name=_opt_text,
    value_type=_opt_text,
)
_constraints = st.builds(PlacementConstraint, name=_text, value=_text)

_jobs = st.builds(
    Job,
    id=_text,
    name=_opt_text,
    cluster=_opt_text,
    user=_opt_text,
    exe=_opt_text,
    args=st.lists(_text, max_size=3).map(tuple),
    working_directory=_opt_text,
    environment=st.lists(st.builds(EnvironmentVariable, name=_text, value=_text), max_size=2).map(
        tuple
    ),
    tags=st.lists(_text, max_size=2).map(tuple),
    container=st.none() | _text | st.builds(Container, image=_text),
    status=st.none() | st.sampled_from(JobStatus) | _text,
    pid=_ints,
    exit_code=_ints,
    placement_constraints=st.lists(_constraints, max_size=2).map(tuple),
    resource_limits=st.lists(_limits, max_size=2).map(tuple),
    exposed_ports=st.lists(_json_scalars, max_size=2).map(tuple),
    metadata=st.dictionaries(_text, _json_scalars, max_size=3),
    submission_time=_times,
    last_update_time=_times,
    terminated_time=_times,
    running_timestamp=_times,
)

_sessions = st.builds(
    Session,
    id=_text,
    name=_opt_text,
    username=_opt_text,
    url=_opt_text,
    workbench=_opt_text,
    launch_parameters=st.none()
    | st.builds(
        LaunchParameters,
        name=_opt_text,
        cluster=_opt_text,
        container_images=st.none() | st.lists(_text, max_size=2).map(tuple),
        resource_limits=st.lists(_limits, max_size=2),
        queues=st.lists(_text, max_size=2),
    ),
    activity_state=st.none() | st.sampled_from(SessionState) | _text,
    created=_times,
    last_used=_times,
    last_state_updated=_times,
    running=st.none() | st.booleans(),
    suspend_size=_ints,
    job=st.none() | _jobs,
)


@given(_sessions)
def test_session_round_trip(session: Session) -> None:
    wire = wp.converter().unstructure(session)
    json.dumps(wire)  # plain JSON data
    for strict in (False, True):
        assert structure(wp.converter(strict), wire, Session, what="session") == session


@given(_jobs)
def test_job_round_trip(job: Job) -> None:
    wire = wp.converter().unstructure(job)
    assert "exit_code" not in wire
    json.dumps(wire)
    for strict in (False, True):
        assert structure(wp.converter(strict), wire, Job, what="job") == job
