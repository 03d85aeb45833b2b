"""Workbench sans-I/O protocol: request builders, validation, envelopes, errors, streams."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import attrs
import pytest
from hypothesis import given
from hypothesis import strategies as st

from aiocompute import (
    APIError,
    AuthenticationError,
    NotFoundError,
    ProtocolError,
    ServerError,
)
from aiocompute._core.protocol_kit import Request
from aiocompute.workbench import _protocol as wp
from aiocompute.workbench.models import (
    AuditedJob,
    Container,
    EnvironmentVariable,
    Job,
    JobSpec,
    LaunchedSession,
    LaunchParameters,
    OutputChunk,
    PlacementConstraint,
    ResourceLimit,
    ServerVersion,
    Session,
    SessionHook,
    SessionListing,
)

FIXTURES = Path(__file__).parent / "fixtures" / "workbench"
UTC = timezone.utc


def load(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text())


def body(obj: Any) -> bytes:
    return json.dumps(obj).encode()


# --------------------------------------------------------------------------- requests vs examples

LP = LaunchParameters(name="Job name", cluster="Local")


@pytest.mark.parametrize("ref", ["current", "preview"])
def test_launch_session_matches_example(ref: str) -> None:
    req = wp.launch_session("RStudio", name="My RStudio Session", launch_parameters=LP)
    assert req.body == load(f"{ref}.launch_session.request.json")
    assert (req.method, req.path, req.idempotent) == ("POST", "/api/launch_session", False)


def test_launch_job_matches_examples() -> None:
    spec = JobSpec(name="Job Test", cluster="Local", exe="R", args=["-f", "JobTest.R"])
    assert wp.launch_job(spec).body == load("current.launch_job.request.json")
    with_image = attrs.evolve(spec, container=Container("posit/r-base:4.3-jammy"))
    assert wp.launch_job(with_image).body == load("current.launch_job.request-container.json")
    shorthand = attrs.evolve(spec, container_image="posit/r-base:4.3-jammy")
    assert wp.launch_job(shorthand).body == load("current.launch_job.request-container.json")
    preview = JobSpec(
        name="Job Test", cluster="Local", exe="/bin/bash", args=["-c", "R -f JobTest.R"]
    )
    assert wp.launch_job(preview).body == load("preview.launch_job.request.json")
    req = wp.launch_job(spec)
    assert (req.method, req.path, req.idempotent) == ("POST", "/api/launch_job", False)


def test_launch_audited_job_matches_examples() -> None:
    spec = JobSpec(name="Job Test", cluster="Local", exe="R", args=["-f", "JobTest.R"])
    assert wp.launch_audited_job(spec).body == load("current.launch_audited_job.request.json")
    k8s = attrs.evolve(spec, cluster="Kubernetes", container_image="posit/r-base:4.3-jammy")
    assert wp.launch_audited_job(k8s).body == load(
        "current.launch_audited_job.request-container.json"
    )
    assert not wp.launch_audited_job(spec).idempotent


@pytest.mark.parametrize("ref", ["current", "preview"])
def test_get_session_matches_example(ref: str) -> None:
    req = wp.get_session(
        ["id1", "id2"], user="username", fields=["id", "url", "activity_state"], include_jobs=True
    )
    assert req.body == load(f"{ref}.get_session.request.json")
    assert req.idempotent


def test_get_historical_session_matches_example() -> None:
    req = wp.get_historical_session(
        datetime(2025, 7, 23, tzinfo=UTC),
        datetime(2025, 7, 30, 23, 59, 59, 999999, tzinfo=UTC),
        include_jobs=True,
    )
    assert req.body == load("current.get_historical_session.request.json")
    assert req.idempotent


@pytest.mark.parametrize("ref", ["current", "preview"])
def test_resume_session_matches_example(ref: str) -> None:
    req = wp.resume_session(
        "<the-session-id-returned>", username="optional-session-username", launch_parameters=LP
    )
    assert req.body == load(f"{ref}.resume_session.request.json")
    assert not req.idempotent


@pytest.mark.parametrize("ref", ["current", "preview"])
def test_get_compute_envs_matches_example(ref: str) -> None:
    req = wp.get_compute_envs(user="session-username")
    assert req.body == load(f"{ref}.get_compute_envs.request.json")
    assert req.method == "POST"
    plain = wp.get_compute_envs()
    assert (plain.method, plain.path, wp.kwparams_of(plain)) == ("GET", "/api/get_compute_envs", {})


@pytest.mark.parametrize("ref", ["current", "preview"])
def test_get_job_output_matches_example(ref: str) -> None:
    req = wp.get_job_output("job_id", user="job-user")
    assert req.body == load(f"{ref}.get_job_output.request.json")
    assert req.stream
    assert req.idempotent


def test_get_audited_job_output_sends_both_id_spellings() -> None:
    req = wp.get_audited_job_output("audited_job_id", user="job-user")
    example = load("current.get_audited_job_output.request.json")
    assert example["kwparams"].items() <= wp.kwparams_of(req).items()
    assert wp.kwparams_of(req)["job_id"] == "audited_job_id"
    assert req.stream


def test_get_audited_job_details_matches_example() -> None:
    req = wp.get_audited_job_details("audited_job_id", user="job-user")
    assert req.body == load("current.get_audited_job_details.request.json")
    assert req.idempotent


@pytest.mark.parametrize("ref", ["current", "preview"])
def test_stop_session_matches_example_and_sends_both_suspend_keys(ref: str) -> None:
    req = wp.stop_session(["id1", "id2", "..."])
    example = load(f"{ref}.stop_session.request.json")
    assert example["kwparams"].items() <= wp.kwparams_of(req).items()
    assert wp.kwparams_of(req)["suspend"] is False
    suspended = wp.stop_session("id1", suspend=True, force_quit=True)
    assert wp.kwparams_of(suspended) == {
        "session_ids": "id1",
        "force_quit": True,
        "suspend_session": True,
        "suspend": True,
    }
    assert not req.idempotent


@pytest.mark.parametrize("ref", ["current", "preview"])
def test_stop_job_matches_example(ref: str) -> None:
    req = wp.stop_job("id1")
    assert req.body == load(f"{ref}.stop_job.request.fixed-missing-comma.json")
    assert wp.kwparams_of(wp.stop_job("id1", force=True))["force_quit"] is True
    assert not req.idempotent


def test_stop_audited_job_matches_example() -> None:
    req = wp.stop_audited_job("id1")
    assert req.body == load("current.stop_audited_job.request.json")
    assert not req.idempotent


def test_parameterless_reads_use_get() -> None:
    for req in (wp.version(), wp.get_users()):
        assert req.method == "GET"
        assert req.idempotent
        assert req.body is None  # a GET sends no envelope
        assert wp.kwparams_of(req) == {}
        assert req.path == f"/api/{req.operation}"


def test_every_method_has_a_builder_with_the_right_idempotency() -> None:
    reads = {m for m in wp.METHODS if m.startswith("get_") or m == "version"}
    samples = {
        "version": wp.version(),
        "get_users": wp.get_users(),
        "get_compute_envs": wp.get_compute_envs(),
        "launch_session": wp.launch_session("VS Code"),
        "get_session": wp.get_session(),
        "get_historical_session": wp.get_historical_session(),
        "resume_session": wp.resume_session("s"),
        "stop_session": wp.stop_session("s"),
        "launch_job": wp.launch_job(JobSpec(name="n", cluster="c", command="true")),
        "launch_audited_job": wp.launch_audited_job(JobSpec(name="n", cluster="c", exe="x")),
        "stop_job": wp.stop_job("j"),
        "stop_audited_job": wp.stop_audited_job("j"),
        "get_job_output": wp.get_job_output("j"),
        "get_audited_job_output": wp.get_audited_job_output("j"),
        "get_audited_job_details": wp.get_audited_job_details("j"),
    }
    assert set(samples) == set(wp.METHODS)
    for method, req in samples.items():
        assert req.operation == wp.rpc_method(req) == method
        assert req.path == f"/api/{method}"
        assert req.idempotent is (method in reads)


# --------------------------------------------------------------------------- request details


def test_get_session_defaults_and_options() -> None:
    assert wp.kwparams_of(wp.get_session()) == {}
    req = wp.get_session("abc", fields=["url"], include_all_jobs=True)
    assert wp.kwparams_of(req) == {
        "session_id": "abc",
        "fields": ["id", "url"],
        "include_all_jobs": True,
    }


def test_get_historical_session_formats_bounds() -> None:
    plus2 = timezone(timedelta(hours=2))
    req = wp.get_historical_session(
        datetime(2025, 7, 23, 2, tzinfo=plus2), "2025-07-30T23:59:59Z", include_all_users=True
    )
    assert wp.kwparams_of(req) == {
        "filter_time_begin": "2025-07-23T00:00:00.000000Z",
        "filter_time_end": "2025-07-30T23:59:59.000000Z",
        "include_all_users": True,
    }
    naive = wp.get_historical_session(end=datetime(2025, 1, 1))
    assert wp.kwparams_of(naive) == {"filter_time_end": "2025-01-01T00:00:00.000000Z"}
    assert wp.kwparams_of(wp.get_historical_session()) == {}


def test_launch_session_options() -> None:
    req = wp.launch_session(
        "JupyterLab",
        username="u",
        open_file="a.ipynb",
        working_directory="/w",
        launch_parameters={"name": "n", "cluster": "K", "future_option": 1},
        start_hooks="/bin/start",
        stop_hooks=[SessionHook("/bin/stop")],
        environment={"A": "1"},
    )
    assert wp.kwparams_of(req) == {
        "workbench": "JupyterLab",
        "name": "n",  # the session's name defaults to the launch parameters' one
        "username": "u",
        "open_file": "a.ipynb",
        "working_directory": "/w",
        "launch_parameters": {"name": "n", "cluster": "K", "future_option": 1},
        "start_hooks": [{"exe": "/bin/start"}],
        "stop_hooks": [{"exe": "/bin/stop"}],
        "environment": [{"name": "A", "value": "1"}],
    }
    env = wp.launch_session("RStudio", environment=[EnvironmentVariable("B", "2")])
    assert wp.kwparams_of(env)["environment"] == [{"name": "B", "value": "2"}]


def test_a_launch_names_the_session_once() -> None:
    # No launch parameters: sent anyway (launcher servers require them), named after the
    # session, else the IDE, on the Local cluster.
    plain = wp.kwparams_of(wp.launch_session("VS Code"))
    assert plain["launch_parameters"] == {"name": "VS Code", "cluster": "Local"}
    named = wp.kwparams_of(wp.launch_session("VS Code", name="etl"))
    assert named["name"] == "etl"
    assert named["launch_parameters"] == {"name": "etl", "cluster": "Local"}
    # Given launch parameters keep what they say; only missing name / cluster are filled.
    lp = wp.kwparams_of(
        wp.launch_session("RStudio", name="etl", launch_parameters={"cluster": "K8s", "x": 1})
    )
    assert lp["launch_parameters"] == {"name": "etl", "cluster": "K8s", "x": 1}
    from_lp = wp.kwparams_of(
        wp.launch_session("RStudio", launch_parameters=LaunchParameters(name="fit"))
    )
    assert from_lp["name"] == "fit"
    assert from_lp["launch_parameters"]["cluster"] == "Local"


def test_launch_parameters_are_written_in_full() -> None:
    lp = LaunchParameters(
        name="n",
        cluster="Kubernetes",
        container_image="img",
        resource_limits=[ResourceLimit(type="cpu", value="2")],
        placement_constraints=[PlacementConstraint("zone", "a")],
        resource_profile="small",
    )
    sent = wp.kwparams_of(wp.launch_session("RStudio", launch_parameters=lp))["launch_parameters"]
    assert sent == {
        "name": "n",
        "cluster": "Kubernetes",
        "container_image": "img",
        "placement_constraints": [{"name": "zone", "value": "a"}],
        "resource_limits": [{"type": "cpu", "value": "2"}],
        "queues": [],
        "resource_profile": "small",
    }


def test_job_spec_is_written_camel_case() -> None:
    spec = JobSpec(
        name="fit",
        cluster="Kubernetes",
        command="Rscript fit.R",
        working_directory="/home/u",
        environment={"A": "1"},
        tags=["t"],
        resource_limits=[ResourceLimit(type="memory", value="4")],
        placement_constraints=[PlacementConstraint("node", "gpu")],
        queues=["q"],
        user="alice",
        extra={"resourceProfile": "large"},
    )
    req = wp.launch_job(spec, apply_config_settings=False)
    assert wp.kwparams_of(req) == {
        "job": {
            "name": "fit",
            "cluster": "Kubernetes",
            "command": "Rscript fit.R",
            "workingDirectory": "/home/u",
            "environment": [{"name": "A", "value": "1"}],
            "tags": ["t"],
            "resourceLimits": [{"type": "memory", "value": "4"}],
            "placementConstraints": [{"name": "node", "value": "gpu"}],
            "queues": ["q"],
            "user": "alice",
            "resourceProfile": "large",
        },
        "apply_config_settings": False,
    }


# Each bad call and the error it must give. Some break the signatures on purpose, so they
# go through an untyped alias of the module.
bad: Any = wp

BAD_CALLS: list[tuple[Any, type[Exception], str]] = [
    (lambda: bad.launch_session(""), ValueError, "workbench is required"),
    (lambda: bad.launch_session("   "), ValueError, "workbench is required"),
    (lambda: bad.launch_session(None), TypeError, "workbench must be a string"),
    (
        lambda: bad.resume_session("s", launch_parameters=LaunchParameters(cluster="Local")),
        ValueError,
        "launch_parameters.name is required",
    ),
    (
        lambda: bad.launch_session("RStudio", launch_parameters={"name": " ", "cluster": "K"}),
        ValueError,
        "launch_parameters.name is required",
    ),
    (
        lambda: bad.resume_session("s", launch_parameters={"name": "n", "cluster": ""}),
        ValueError,
        "launch_parameters.cluster is required",
    ),
    (
        lambda: bad.launch_session("RStudio", launch_parameters="Local"),
        TypeError,
        "launch_parameters must be LaunchParameters or a mapping",
    ),
    (lambda: bad.launch_session("RStudio", name=""), ValueError, "name is required"),
    (
        lambda: bad.launch_session("RStudio", start_hooks=[3]),
        TypeError,
        "start_hooks[0] must be a SessionHook",
    ),
    (
        lambda: bad.launch_session("RStudio", environment=[("A", "1")]),
        TypeError,
        "environment[0] must be an EnvironmentVariable",
    ),
    (lambda: bad.get_session([]), ValueError, "session_ids must not be empty"),
    (lambda: bad.get_session(["a", ""]), ValueError, "session_ids[1] is required"),
    (lambda: bad.get_session("a,b"), ValueError, "session_ids[0] must not contain a comma"),
    (lambda: bad.get_session([7]), TypeError, "session_ids[0] must be a string"),
    (lambda: bad.get_session(fields="id"), TypeError, "fields must be a sequence of strings"),
    (lambda: bad.get_session(include_jobs="yes"), TypeError, "include_jobs must be True or False"),
    (lambda: bad.stop_session([]), ValueError, "session_ids must not be empty"),
    (lambda: bad.stop_session(["x,y"]), ValueError, "must not contain a comma"),
    (lambda: bad.stop_session("x", suspend=1), TypeError, "suspend must be True or False"),
    (lambda: bad.resume_session(""), ValueError, "session_id is required"),
    (lambda: bad.resume_session("a,b"), ValueError, "session_id must not contain a comma"),
    (
        lambda: bad.get_historical_session("last tuesday"),
        ValueError,
        "begin: invalid ISO-8601 timestamp 'last tuesday'",
    ),
    (lambda: bad.get_historical_session(end=5), ValueError, "end:"),
    (
        lambda: bad.get_historical_session("2025-02-01", "2025-01-01"),
        ValueError,
        "begin (2025-02-01T00:00:00.000000Z) is after end (2025-01-01T00:00:00.000000Z)",
    ),
    (
        lambda: bad.launch_job(JobSpec(name="", cluster="Local", exe="R")),
        ValueError,
        "job.name is required",
    ),
    (
        lambda: bad.launch_job(JobSpec(name="n", cluster="", exe="R")),
        ValueError,
        "job.cluster is required",
    ),
    (
        lambda: bad.launch_job(JobSpec(name="n", cluster="Local")),
        ValueError,
        "job.exe or job.command is required",
    ),
    (
        lambda: bad.launch_audited_job(JobSpec(name="n", cluster="Local")),
        ValueError,
        "audited_job.exe or audited_job.command is required",
    ),
    (
        lambda: bad.launch_job({"name": "n", "cluster": "c", "exe": "x"}),
        TypeError,
        "job must be a JobSpec",
    ),
    (
        lambda: bad.launch_job(
            JobSpec(name="n", cluster="c", exe="x", container=Container("a"), container_image="b")
        ),
        ValueError,
        "job: give container or container_image, not both",
    ),
    (
        lambda: bad.launch_job(
            JobSpec(name="n", cluster="c", exe="x", extra={"workingDirectory": "/"})
        ),
        ValueError,
        "job.extra['workingDirectory'] repeats a JobSpec field",
    ),
    (
        lambda: bad.launch_job(JobSpec(name="n", cluster="c", exe="x"), apply_config_settings="no"),
        TypeError,
        "apply_config_settings must be True or False",
    ),
    (lambda: bad.stop_job(""), ValueError, "job_id is required"),
    (lambda: bad.stop_audited_job(""), ValueError, "audited_job_id is required"),
    (lambda: bad.get_job_output(""), ValueError, "job_id is required"),
    (lambda: bad.get_job_output("j", user=""), ValueError, "user is required"),
    (lambda: bad.get_audited_job_output(""), ValueError, "audited_job_id is required"),
    (lambda: bad.get_audited_job_details(" "), ValueError, "audited_job_id is required"),
    (lambda: bad.get_compute_envs(user=""), ValueError, "user is required"),
]


@pytest.mark.parametrize(("call", "error", "message"), BAD_CALLS)
def test_bad_arguments_are_refused_before_sending(
    call: Any, error: type[Exception], message: str
) -> None:
    with pytest.raises(error) as info:
        call()
    assert message in str(info.value)


def test_same_container_in_both_forms_is_fine() -> None:
    spec = JobSpec(name="n", cluster="c", exe="x", container=Container("a"), container_image="a")
    assert wp.kwparams_of(wp.launch_job(spec))["job"]["container"] == {"image": "a"}


@given(st.lists(st.text(min_size=1).filter(lambda s: "," not in s and s.strip()), min_size=1))
def test_session_ids_join_and_split_back(ids: list[str]) -> None:
    joined = wp.kwparams_of(wp.stop_session(ids))["session_ids"]
    assert joined.split(",") == ids


def test_requests_carry_no_credentials() -> None:
    names = {a.name for a in attrs.fields(Request)}
    assert names == {"method", "path", "idempotent", "body", "params", "operation", "stream"}


# --------------------------------------------------------------------------- envelopes


def test_result_is_unwrapped() -> None:
    assert wp.decode_envelope("get_users", 200, body({"result": [1]})) == [1]
    assert wp.decode_envelope("get_users", 200, '{"result": []}') == []


@pytest.mark.parametrize(
    ("error", "cls", "code"),
    [
        ({"code": 401, "message": "Permission denied"}, AuthenticationError, 401),
        ({"code": 404, "message": "job not found"}, NotFoundError, 404),
        ({"message": "Session not found"}, NotFoundError, None),
        ({"code": "404", "message": "gone"}, NotFoundError, 404),
        ({"code": 1, "message": "permission denied for user"}, AuthenticationError, 1),
        ({"code": 500, "message": "launcher unavailable"}, ServerError, 500),
        ({"code": 400, "message": "Unknown resource profile"}, APIError, 400),
        ({"code": 2, "message": 'Kubernetes requires the "container" parameter'}, APIError, 2),
    ],
)
def test_error_in_200_body_is_mapped(error: dict[str, Any], cls: type[APIError], code: Any) -> None:
    with pytest.raises(APIError) as info:
        wp.decode_envelope("launch_job", 200, body({"error": error}))
    exc = info.value
    assert type(exc) is cls
    assert exc.status == 200
    assert exc.code == code
    assert exc.message == error["message"]
    assert exc.method == "launch_job"


def test_error_is_checked_before_result() -> None:
    with pytest.raises(NotFoundError):
        wp.decode_envelope(
            "get_session", 200, body({"result": {}, "error": {"code": 404, "message": "nope"}})
        )


def test_error_without_message_or_as_string() -> None:
    with pytest.raises(APIError) as info:
        wp.decode_envelope("get_session", 200, body({"error": {"code": 409}}))
    assert info.value.code == 409
    assert "409" in info.value.message
    with pytest.raises(AuthenticationError):
        wp.decode_envelope("get_session", 200, body({"error": "Permission denied"}))


def test_html_body_is_a_protocol_error_with_excerpt() -> None:
    html = b"<!DOCTYPE html><html><body><h1>Sign in</h1></body></html>"
    with pytest.raises(ProtocolError) as info:
        wp.decode_envelope("get_session", 200, html)
    exc = info.value
    assert not isinstance(exc, json.JSONDecodeError)
    assert "HTML" in str(exc)
    assert "Sign in" in exc.body
    assert exc.status == 200
    assert exc.__cause__ is None


@pytest.mark.parametrize(
    "raw",
    [b'{"result": ', b"not json", b"\xff\xfe", b"[1, 2]", b'"text"', b'{"something": 1}'],
)
def test_bad_bodies_are_protocol_errors(raw: bytes) -> None:
    with pytest.raises(ProtocolError):
        wp.decode_envelope("get_session", 200, raw)


@pytest.mark.parametrize("method", ["stop_session", "stop_job", "stop_audited_job"])
@pytest.mark.parametrize("raw", [b"", b"  \n", None, b"{}", b'{"result": {}}', b'{"result": null}'])
def test_stop_answers_are_ok(method: str, raw: bytes | None) -> None:
    assert wp.decode_envelope(method, 200, raw) is None


def test_stop_still_reports_errors() -> None:
    with pytest.raises(NotFoundError):
        wp.decode_envelope("stop_job", 200, body({"error": {"code": 404, "message": "no job"}}))


def test_empty_body_for_a_read_is_a_protocol_error() -> None:
    with pytest.raises(ProtocolError, match="empty response body"):
        wp.decode_envelope("get_session", 200, b"")


def test_version_is_accepted_wrapped_or_not() -> None:
    plain = {"version": {"major": "2024", "minor": "12", "patch": "0"}, "features": ["a"]}
    for raw in (plain, {"result": plain}):
        v = wp.parse_response("version", 200, body(raw), strict=True)
        assert v == ServerVersion(major=2024, minor=12, patch=0, features=("a",))


def test_version_full_shape() -> None:
    wire = {
        "version": {
            "major": 2024,
            "minor": "12",
            "patch": "1",
            "build_number": 467,
            "release_name": "Kousa Dogwood",
            "build_type": "Release",
        },
        "features": ["sessions", "jobs"],
    }
    v = wp.parse_version(wire, strict=True)
    assert (v.major, v.minor, v.patch, v.build_number) == (2024, 12, 1, "467")
    assert v.release_name == "Kousa Dogwood"
    assert v.build_type == "Release"
    assert v.has_feature("jobs")
    assert v.raw == wire
    with pytest.raises(ProtocolError, match=r"\$\.version: unknown key\(s\) 'codename'"):
        wp.parse_version({"version": {"major": 1, "codename": "x"}}, strict=True)
    with pytest.raises(ProtocolError, match=r"\$\.version: required key missing"):
        wp.parse_version({"features": []})


@pytest.mark.parametrize(
    ("status", "raw", "cls"),
    [
        (401, b"<html>401 Authorization Required</html>", AuthenticationError),
        (502, b"<html>Bad gateway</html>", ServerError),
        (503, b"", ServerError),
        (404, body({"error": {"code": 404, "message": "no such method"}}), NotFoundError),
        (400, body({"error": {"code": 400, "message": "bad kwparams"}}), APIError),
    ],
)
def test_http_errors_are_mapped_too(status: int, raw: bytes, cls: type[APIError]) -> None:
    with pytest.raises(APIError) as info:
        wp.decode_envelope("get_session", status, raw)
    assert type(info.value) is cls
    assert info.value.status == status


def test_error_text_is_redacted() -> None:
    secret = "Bearer abcdef0123456789"
    with pytest.raises(AuthenticationError) as info:
        wp.decode_envelope(
            "get_users", 200, body({"error": {"code": 401, "message": f"bad token {secret}"}})
        )
    text = str(info.value) + repr(info.value) + info.value.body + info.value.message
    assert "abcdef0123456789" not in text


# --------------------------------------------------------------------------- error_parser


def test_error_parser() -> None:
    assert wp.error_parser(
        401, body({"error": {"code": 401, "message": "Permission denied"}}), {}
    ) == (
        401,
        "Permission denied",
    )
    assert wp.error_parser(502, b"<html>bad gateway</html>", {}) is None
    assert wp.error_parser(500, body({"result": 1}), {}) is None
    assert wp.error_parser(500, b"", {}) is None
    assert wp.error_parser(500, b"\xff", None) is None
    assert wp.error_parser(500, body([1]), None) is None


# --------------------------------------------------------------------------- parse functions


def test_parse_response_dispatches_on_method() -> None:
    cases = {
        "launch_session": ("current.launch_session.result.json", LaunchedSession),
        "resume_session": ("preview.resume_session.result.json", LaunchedSession),
        "get_session": ("current.get_session.result.json", SessionListing),
        "get_historical_session": ("current.get_historical_session.result.json", SessionListing),
        "launch_job": ("current.launch_job.result.json", Job),
        "launch_audited_job": ("current.launch_audited_job.result.json", AuditedJob),
        "get_users": ("current.get_users.result.json", list),
        "get_audited_job_output": (
            "current.get_audited_job_output.result-finished.json",
            OutputChunk,
        ),
    }
    for method, (name, model) in cases.items():
        raw = (FIXTURES / name).read_bytes()
        assert isinstance(wp.parse_response(method, 200, raw, strict=True), model), method
    assert wp.parse_response("stop_session", 200, b"") is None
    with pytest.raises(ValueError, match="streams use parse_stream_object"):
        wp.parse_response("get_job_output", 200, b"{}")


def test_launch_job_accepts_both_shapes() -> None:
    job = load("current.launch_job.result.json")["result"]["result"]["job"]
    doubled = wp.parse_job_launch({"result": {"job": job}}, strict=True)
    single = wp.parse_job_launch({"job": job}, strict=True)
    assert doubled == single
    assert doubled.id == "..."
    audited = load("current.launch_audited_job.result.json")["result"]["result"]["audited_job"]
    for shape in (
        {"result": {"audited_job": audited}},
        {"audited_job": audited},
        {"job": audited},
        {"result": {"job": audited}},
    ):
        assert isinstance(wp.parse_audited_job_launch(shape, strict=True), AuditedJob)


def test_launch_job_without_job_is_a_protocol_error() -> None:
    with pytest.raises(ProtocolError, match=r"\$\.result\.result: no 'job' object"):
        wp.parse_job_launch({"result": {"id": "x"}})
    with pytest.raises(ProtocolError, match="expected an object"):
        wp.parse_job_launch(None)
    with pytest.raises(ProtocolError, match=r"unknown key\(s\) 'warning'"):
        wp.parse_job_launch({"result": {"job": {"id": "j"}, "warning": "x"}}, strict=True)
    lenient = wp.parse_job_launch({"result": {"job": {"id": "j"}, "warning": "x"}})
    assert lenient.id == "j"


def test_audited_details_key_spellings() -> None:
    details = load("current.get_audited_job_details.result.json")["result"]["audited_details"]
    for shape in ({"audited_details": details}, {"audit_details": details}, details):
        parsed = wp.parse_audited_job_details(shape, strict=True)
        assert parsed.script_output is not None
        assert parsed.script_output.checksum == "kFe4sdpdad"
    with pytest.raises(ProtocolError, match="no 'audited_details'"):
        wp.parse_audited_job_details({"other": 1})


def test_session_listing_with_jobs() -> None:
    job = load("current.launch_job.result.json")["result"]["result"]["job"]
    listing = wp.parse_session_listing({"sessions": [], "jobs": [job]}, strict=True)
    assert listing.job("...") is listing.jobs[0]
    assert wp.parse_session_listing({"sessions": None, "jobs": None}) == SessionListing()


# --------------------------------------------------------------------------- streams


def test_stream_chunk() -> None:
    chunk = wp.parse_stream_object(
        {"jobId": "j1", "outputType": "stdout", "output": "hello\n"}, strict=True
    )
    assert chunk == OutputChunk(job_id="j1", output_type="stdout", output="hello\n")
    odd = wp.parse_stream_object({"jobId": "j1", "outputType": "debug", "output": ""})
    assert odd.output_type == "debug"


def test_output_chunk_parser() -> None:
    chunk = wp.parse_output_chunk(
        {"jobId": "j", "outputType": "stderr", "output": "x", "outputSource": "job_launcher"},
        audited=True,
        strict=True,
    )
    assert chunk.output_source == "job_launcher"
    with pytest.raises(ProtocolError, match=r"could not read job output chunk: \$\.output: "):
        wp.parse_output_chunk({"jobId": "j", "outputType": "stdout"}, audited=False)


@pytest.mark.parametrize(
    ("error", "cls"),
    [
        ({"code": 404, "message": "job not found"}, NotFoundError),
        ({"code": 401, "message": "Permission denied"}, AuthenticationError),
        ({"code": 3, "message": "stream interrupted"}, APIError),
    ],
)
def test_error_mid_stream_raises(error: dict[str, Any], cls: type[APIError]) -> None:
    with pytest.raises(APIError) as info:
        wp.parse_stream_object({"error": error})
    assert type(info.value) is cls
    assert info.value.code == error["code"]
    assert info.value.method == "get_job_output"
    with pytest.raises(cls) as audited:
        wp.parse_stream_object({"error": error}, audited=True)
    assert audited.value.method == "get_audited_job_output"


@pytest.mark.parametrize(
    ("obj", "fragment"),
    [
        ([1, 2], "expected an object, got list"),
        (None, "expected an object, got null"),
        ({"result": {"job_output": {}}}, "no 'audited_job_output'"),
        ({"result": "done"}, "$.result: expected an object"),
        ({"jobId": 1, "outputType": "stdout", "output": "x"}, "$.jobId: expected a string"),
    ],
)
def test_bad_stream_objects(obj: Any, fragment: str) -> None:
    with pytest.raises(ProtocolError) as info:
        wp.parse_stream_object(obj, strict=True)
    assert fragment in str(info.value)


def test_finished_audited_output_strictness() -> None:
    data = load("current.get_audited_job_output.result-finished.json")
    data["result"]["next"] = 1
    with pytest.raises(ProtocolError, match=r"\$\.result: unknown key\(s\) 'next'"):
        wp.parse_stream_object(data, strict=True)
    assert wp.parse_stream_object(data).output == "The entire job output"


# --------------------------------------------------------------------------- states


def test_state_helpers() -> None:
    assert wp.session_state(Session(id="s", activity_state="running")) == "running"
    assert wp.session_state(Session(id="s")) == "unknown"
    assert wp.session_state(Session(id="s", job=Job(id="j"))) == "ended"
    assert wp.job_state(Job(id="j", status="Running")) == "Running"


# --------------------------------------------------------------------------- listings
# Listings are read on every poll and every sessions.get.


LISTINGS = [
    "current.get_session.result.json",
    "preview.get_session.result.json",
    "current.get_historical_session.result.json",
]


def read_listing(result: Any) -> Any:
    try:
        return wp.parse_session_listing(result)
    except ProtocolError as exc:
        return ("error", str(exc))


def assert_raw_is_the_wire_object(model: Any, data: Any) -> None:
    """Every model's raw is the very JSON object it was read from, at every level."""
    if isinstance(model, (list, tuple)) and isinstance(data, list):
        for item, value in zip(model, data, strict=True):
            assert_raw_is_the_wire_object(item, value)
    elif attrs.has(type(model)) and isinstance(data, dict):
        if "raw" in attrs.fields_dict(type(model)):
            assert model.raw is data
        conv = wp.converter()
        for a in attrs.fields(type(model)):
            key = conv.wire_name(type(model), a.name)
            if a.name != "raw" and key in data:
                assert_raw_is_the_wire_object(getattr(model, a.name), data[key])


@pytest.mark.parametrize("name", LISTINGS)
def test_listings_read_as_models(name: str) -> None:
    result = load(name)["result"]
    listing = read_listing(result)
    assert isinstance(listing, SessionListing)
    assert listing.sessions  # the fixture has sessions: real models were read
    assert_raw_is_the_wire_object(listing, result)


ODD_VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**17), max_value=10**17),
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from(["", "running", "Finished", "x", "12", "2025-07-23T00:00:00Z", "true"]),
    st.lists(st.sampled_from(["a", 1, None]), max_size=2),
    st.dictionaries(
        st.sampled_from(["id", "name", "value"]), st.sampled_from(["v", 2]), max_size=2
    ),
)


@given(
    st.sampled_from(LISTINGS),
    st.lists(st.tuples(st.integers(min_value=0, max_value=60), ODD_VALUES), max_size=4),
)
def test_altered_listings_read_as_models_or_fail_with_a_path(
    name: str, changes: list[tuple[int, Any]]
) -> None:
    result = load(name)["result"]
    session = result["sessions"][0]
    # Replace some of the session's (or its job's, or launch parameters') values.
    targets = [session]
    for key in ("job", "launch_parameters"):
        if isinstance(session.get(key), dict):
            targets.append(session[key])
    for index, value in changes:
        target = targets[index % len(targets)]
        keys = sorted(target)
        target[keys[index % len(keys)]] = value
    listing = read_listing(result)
    if isinstance(listing, tuple):
        assert listing[1].startswith("could not read session listing: $.result")
    else:
        assert isinstance(listing, SessionListing)
        assert_raw_is_the_wire_object(listing, result)


def test_session_ids_edge_cases_keep_their_errors() -> None:
    class Id(str):
        pass

    assert wp.kwparams_of(wp.get_session([Id("a"), "b"]))["session_id"] == "a,b"
    with pytest.raises(ValueError, match=r"session_ids\[1\] is required"):
        wp.get_session(["a", " \t"])
    with pytest.raises(ValueError, match=r"session_ids\[0\] must not contain a comma"):
        wp.get_session([Id("a,b")])
    with pytest.raises(TypeError, match=r"session_ids\[2\] must be a string"):
        wp.get_session(["a", "b", None])  # type: ignore[list-item]


@pytest.mark.parametrize("raw", [b"", b" \r\n\t", " ", "\u2003"])
def test_blank_bodies_are_empty_for_reads(raw: bytes | str) -> None:
    with pytest.raises(ProtocolError, match="get_session: empty response body"):
        wp.decode_envelope("get_session", 200, raw)
