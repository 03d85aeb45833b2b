"""ET Engine sans-I/O protocol: reference examples in strict mode (quirks included), request
builders, the derived batch state, the create answer, and plain-text errors."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from aiocompute import NotFoundError, ProtocolError
from aiocompute.etengine import (
    Batch,
    BatchStatus,
    Filesystem,
    Hardware,
    JobArgument,
    JobStatus,
    SubmittedBatch,
    Tool,
)
from aiocompute.etengine import _protocol as ep
from aiocompute.etengine._states import BATCH_STATES, JOB_STATES

FIXTURES = Path(__file__).parent / "fixtures" / "etengine"
UTC = timezone.utc
PHASES = ("submitted", "pending", "runnable", "starting", "running")


def load(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text())


# --------------------------------------------------------------------------- reference examples


def test_list_batches_example_strict() -> None:
    (batch,) = ep.parse_batches(load("list_batches.response.json"), strict=True)
    assert batch.batch_id == "string"
    assert batch.batch_tool == Tool("string", "string", "string")
    assert batch.tool == "string"
    assert batch.n_jobs == 123
    assert batch.hardware is not None
    assert batch.hardware.filesystem_list == (Filesystem("string", "string"),)
    assert (batch.hardware.cpu, batch.hardware.memory) == (123, 123)
    assert batch.hardware.filesystem_ids == ("string",)


def test_batch_status_example_strict() -> None:
    status = ep.parse_batch_status(load("get_batch.response.json"), batch_id="b1", strict=True)
    assert status.counts == dict.fromkeys((*PHASES, "succeeded", "failed"), 123)
    assert status.batch_id == "b1"
    assert (status.total, status.done, status.remaining) == (861, 246, 615)
    assert status.state == "running"
    assert status.raw == load("get_batch.response.json")


def test_list_jobs_example_strict() -> None:
    (job,) = ep.parse_jobs(load("list_jobs.response.json"), strict=True)
    assert job.job_id == "string"
    assert job.job_tool == Tool("string", "string", "string")
    assert job.log == "string"
    assert job.job_argument_list == (JobArgument("string", "string"),)
    assert job.arguments == {"string": "string"}
    assert job.state == "unknown"


def test_job_detail_example_is_a_list_with_a_trailing_comma() -> None:
    verbatim = (FIXTURES / "get_job.response.verbatim.txt").read_text()
    with pytest.raises(ValueError, match="double quotes"):
        json.loads(verbatim)  # the documented quirk: not JSON as printed
    fixed = load("get_job.response.fixed-trailing-comma.json")
    assert isinstance(fixed, list)
    job = ep.parse_job(fixed, strict=True)
    assert (job.job_id, job.log, job.reason) == ("string", "string", "string")
    assert job.args == {"name": "value"}
    assert job.arguments == {"name": "value"}
    assert job.hardware is not None
    assert (job.hardware.filesystems, job.hardware.memory, job.hardware.cpu) == (("id",), 123, 123)
    assert job.status == "string"  # not a status name: kept as sent
    assert job.create_time == "string"  # nor a time
    # A bare object reads the same.
    assert ep.parse_job(fixed[0], strict=True) == job


def test_strict_rejects_unknown_keys_lenient_keeps_them() -> None:
    data = load("list_batches.response.json")
    data[0]["owner"] = "me"
    with pytest.raises(ProtocolError, match=r"\$\[0\].*owner"):
        ep.parse_batches(data, strict=True)
    assert ep.parse_batches(data)[0].raw["owner"] == "me"


# --------------------------------------------------------------------------- other shapes


def test_older_list_shape_with_bare_tool_id() -> None:
    data = [{"batch_id": "b", "tool_id": "t", "n_jobs": 2, "hardware": {"filesystems": ["f"]}}]
    (batch,) = ep.parse_batches(data, strict=True)
    assert batch.tool == "t"
    assert batch.hardware is not None
    assert batch.hardware.filesystem_ids == ("f",)


def test_status_in_upper_case_nested_and_as_a_list() -> None:
    nested = {
        "batch_id": "b9",
        "tool_id": "t",
        "n_jobs": 5,
        "hardware": {"filesystems": [], "memory": 256, "cpu": 1},
        "n_submitted": 3,
        "submitted_jobs": {
            "SUBMITTED": 0, "PENDING": 0, "RUNNABLE": 1, "STARTING": 0,
            "RUNNING": 0, "SUCCEEDED": 2, "FAILED": 0,
        },
    }  # fmt: skip
    status = ep.parse_batch_status(nested)
    assert (status.batch_id, status.n_jobs, status.runnable, status.succeeded) == ("b9", 5, 1, 2)
    assert status.other == {}
    assert status.state == "runnable"
    assert ep.parse_batch_status([nested]) == status
    upper = ep.parse_batch_status({"RUNNING": 2, "Succeeded": 1}, strict=True)
    assert (upper.running, upper.succeeded, upper.state) == (2, 1, "running")


def test_unknown_statuses_are_kept_lenient_refused_strict() -> None:
    status = ep.parse_batch_status({"SUBMITTING": 2, "succeeded": 1, "pending": None})
    assert status.other == {"submitting": 2}
    assert status.counted == 3
    assert status.state == "submitting"
    with pytest.raises(ProtocolError, match="submitting"):
        ep.parse_batch_status({"SUBMITTING": 2}, strict=True)
    with pytest.raises(ProtocolError, match="appears twice"):
        ep.parse_batch_status({"running": 1, "RUNNING": 1})


@pytest.mark.parametrize(
    ("data", "error"),
    [
        (None, ProtocolError),
        ("running", ProtocolError),
        ([], NotFoundError),
        ([{}, {}], ProtocolError),
        ({"running": "many"}, ProtocolError),
    ],
)
def test_bad_status_answers(data: Any, error: type[Exception]) -> None:
    with pytest.raises(error):
        ep.parse_batch_status(data)


def test_job_detail_as_the_service_sends_it() -> None:
    detail = {
        "job_id": "j1",
        "log_id": "l1",
        "tool_id": "t",
        "args": {"a": 1},
        "status": "RUNNING",
        "reason": "",
        "create_time": 1_746_100_800_000,
        "start_time": "2025-05-01T12:00:05+00:00",
        "stop_time": "",
    }
    job = ep.parse_job([detail])
    assert job.status is JobStatus.RUNNING
    assert job.state == "running"
    assert not job.is_finished
    assert job.create_time == datetime(2025, 5, 1, 12, tzinfo=UTC)
    assert job.start_time == datetime(2025, 5, 1, 12, 0, 5, tzinfo=UTC)
    assert job.stop_time is None
    assert ep.parse_job({**detail, "status": "SUBMITTING"}).state == "submitting"
    assert ep.parse_job({**detail, "status": "failed"}).is_finished
    with pytest.raises(NotFoundError):
        ep.parse_job([])
    with pytest.raises(ProtocolError, match="expected an array"):
        ep.parse_jobs({"jobs": []})


@pytest.mark.parametrize("text", ["RUNNING", "running", "Running", " running "])
def test_job_status_matches_any_case(text: str) -> None:
    assert JobStatus(text) is JobStatus.RUNNING


# --------------------------------------------------------------------------- derived state


def counts(**kw: int) -> BatchStatus:
    return BatchStatus(**kw)  # type: ignore[arg-type]


def test_state_derivation() -> None:
    assert counts().state == "submitted"  # nothing registered yet: never finished
    assert not counts().is_finished
    assert counts(succeeded=3).state == "succeeded"
    assert counts(succeeded=2, failed=1).state == "failed"
    assert counts(pending=1, running=1, succeeded=1).state == "running"
    assert counts(submitted=2, starting=1, failed=1).state == "starting"
    # Jobs not registered yet keep a batch whose visible jobs are done from finishing.
    early = BatchStatus(succeeded=2, n_jobs=3)
    assert (early.total, early.remaining, early.state) == (3, 1, "submitted")
    assert BatchStatus(succeeded=3, n_jobs=3).state == "succeeded"


@given(
    st.lists(st.sampled_from([*PHASES, "succeeded", "failed"]), min_size=1, max_size=30),
    st.integers(min_value=0, max_value=5),
)
def test_state_is_terminal_exactly_when_every_job_finished(jobs: list[str], unseen: int) -> None:
    tally = {name: jobs.count(name) for name in set(jobs)}
    status = BatchStatus(**tally, n_jobs=len(jobs) + unseen)  # type: ignore[arg-type]
    finished = unseen == 0 and all(j in ("succeeded", "failed") for j in jobs)
    assert status.is_finished == finished
    assert BATCH_STATES.is_terminal(status.state) == finished
    if finished:
        assert status.state == ("failed" if "failed" in jobs else "succeeded")
    else:
        assert status.state in PHASES


def test_state_tables_normalize_case() -> None:
    assert BATCH_STATES.is_terminal("SUCCEEDED")
    assert BATCH_STATES.can_reach("RUNNING", "succeeded")
    assert BATCH_STATES.can_reach("running", "pending")  # phases can go back
    assert not BATCH_STATES.can_reach("failed", "succeeded")
    assert JOB_STATES.is_known("Runnable")
    assert not JOB_STATES.is_known("SUBMITTING")


# --------------------------------------------------------------------------- requests


def test_create_request_and_defaults() -> None:
    request = ep.create_batch("tool-1")
    assert (request.method, request.path, request.idempotent) == ("POST", "/tools/tool-1", False)
    # The defaults of API-NOTES: {"cpu": 1, "memory": 256, "filesystems": []}.
    assert request.body == {
        "fixed_args": {},
        "variable_args": [],
        "hardware": {"cpu": 1, "memory": 256, "filesystems": []},
    }
    assert ep.n_jobs_of(request) == 1
    request = ep.create_batch(
        "tool-1",
        fixed_args={"mode": "fast"},
        variable_args=[{"i": 1}, {"i": 2}],
        hardware=Hardware(cpu=4, memory=1024, filesystems=["fs-1"]),
    )
    assert request.body["fixed_args"] == {"mode": "fast"}
    assert request.body["variable_args"] == [{"i": 1}, {"i": 2}]
    assert request.body["hardware"] == {"cpu": 4, "memory": 1024, "filesystems": ["fs-1"]}
    assert ep.n_jobs_of(request) == 2


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"fixed_args": [1]}, TypeError, "fixed_args must be a mapping"),
        ({"variable_args": {"i": 1}}, TypeError, "variable_args must be a sequence"),
        ({"variable_args": [{"i": 1}, 2]}, TypeError, r"variable_args\[1\]"),
        ({"fixed_args": {"x": object()}}, TypeError, "JSON-serialisable"),
        ({"fixed_args": {"x": float("nan")}}, TypeError, "JSON-serialisable"),
        ({"hardware": {"cpu": 1}}, TypeError, "hardware must be a Hardware"),
    ],
)
def test_create_request_rejects_bad_arguments(
    kwargs: dict[str, Any], error: type[Exception], match: str
) -> None:
    with pytest.raises(error, match=match):
        ep.create_batch("tool-1", **kwargs)


def test_hardware_is_validated() -> None:
    with pytest.raises(ValueError, match="cpu"):
        Hardware(cpu=0)
    with pytest.raises(TypeError, match="memory"):  # a bool is the wrong kind
        Hardware(memory=True)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="filesystems"):
        Hardware(filesystems="fs-1")  # type: ignore[arg-type]


def test_read_and_delete_requests() -> None:
    cases = {
        ep.list_batches(): ("GET", "/batches", True),
        ep.delete_all_batches(): ("DELETE", "/batches", False),
        ep.get_batch_status("b1"): ("GET", "/batches/b1", True),
        # Documented as a second GET; it is a DELETE.
        ep.delete_batch("b1"): ("DELETE", "/batches/b1", False),
        ep.list_jobs("b1"): ("GET", "/batches/b1/jobs", True),
        ep.get_job("b1", "j1"): ("GET", "/batches/b1/jobs/j1", True),
    }
    for request, expected in cases.items():
        assert (request.method, request.path, request.idempotent) == expected
        assert request.body is None
    for bad in ("", "a/b", "a b", "x?y"):
        with pytest.raises(ValueError, match="batch_id"):
            ep.get_batch_status(bad)
    with pytest.raises(ValueError, match="job_id"):
        ep.get_job("b1", "../j")
    with pytest.raises(ValueError, match="tool_id"):
        ep.create_batch("t#1")


# --------------------------------------------------------------------------- responses


@pytest.mark.parametrize(
    ("body", "batch_id"),
    [
        (b"3f2a9c1e-0b7d-4c1a-9d2e-7a6b5c4d3e2f", "3f2a9c1e-0b7d-4c1a-9d2e-7a6b5c4d3e2f"),
        (b'"abc-123"\n', "abc-123"),
        (b'{"batch_id": "abc-123"}', "abc-123"),
        (b'[{"batch_id": "abc-123"}]', "abc-123"),
        (b"12345", "12345"),
        (b"", None),
        (b"  \n", None),
    ],
)
def test_created_batch_id_in_every_form(body: bytes, batch_id: str | None) -> None:
    assert ep.parse_created_batch(body, tool_id="t", n_jobs=2) == SubmittedBatch(batch_id, "t", 2)


@pytest.mark.parametrize("body", [b"<html>login</html>", b'{"ok": true}', b"two words"])
def test_unreadable_create_answers(body: bytes) -> None:
    with pytest.raises(ProtocolError, match="new batch's id"):
        ep.parse_created_batch(body, tool_id="t", n_jobs=1)


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (b"Access denied", (None, "Access denied")),
        (b"Missing authorization header\n", (None, "Missing authorization header")),
        (b"Unknown error occurred", (None, "Unknown error occurred")),
        (b'{"message": "Forbidden"}', (None, "Forbidden")),
        (b'{"message": "Internal server error", "code": 7}', (7, "Internal server error")),
        (b'"quoted text"', (None, "quoted text")),
        (b"<html><body>502</body></html>", None),
        (b"", None),
        (b"[1, 2]", None),
    ],
)
def test_error_parser_reads_plain_text(body: bytes, expected: Any) -> None:
    assert ep.error_parser(400, body, {}) == expected


def test_models_are_public_and_frozen() -> None:
    batch = Batch(batch_id="b")
    with pytest.raises(AttributeError):
        batch.batch_id = "c"  # type: ignore[misc]


def test_plain_ids_are_sent_as_they_are() -> None:
    assert ep.get_job("b-1", "job_2.x~").path == "/batches/b-1/jobs/job_2.x~"
    assert ep.get_job("b:1", "j").path == "/batches/b%3A1/jobs/j"
    with pytest.raises(TypeError, match="job_id must be a str, got int"):
        ep.get_job("b", 3)  # type: ignore[arg-type]
