"""Qiskit Runtime jobs: the protocol (plain data), the client against aioresponses (shapes,
errors, pagination, 409, 429), and the client against the emulator over loopback HTTP
(schedule, waits, bulk polls, results, logs, metrics, limits, the session handle)."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator
from datetime import datetime, timedelta, timezone
from typing import Any

import anyio
import attrs
import pytest
from aioresponses import aioresponses
from yarl import URL

from aiocompute import (
    APIError,
    ConflictError,
    NotFoundError,
    OutcomeUnknown,
    ProtocolError,
    RateGovernor,
    RateLimitError,
    ServerError,
    UnreachableState,
    UsageLimitExceeded,
    WaitTimeout,
)
from aiocompute.emulator import Emulator, QiskitEmulatorConfig, QiskitJobsConfig
from aiocompute.qiskit import QISKIT_RETRY, Job, JobStatus, QiskitRuntimeClient
from aiocompute.qiskit import _protocol as P
from aiocompute.qiskit._states import JOB_STATES
from helpers import (
    QUICK_POLL,
    EmulatorFactory,
    make_emulator_on_loop_clock,
    quick_governor,
    quick_retry,
)

CRN = "crn:v1:bluemix:public:quantum-computing:us-east:a/abc::"
KEY = "qiskit-key"
JOBS = QiskitJobsConfig(queue_delay=(0.05, 0.1), run_delay=(0.05, 0.15))
FAST = QiskitEmulatorConfig(
    activate_delay=0.05, interactive_ttl=5.0, drain_delay=0.1, pending_inactive_delay=0.0, jobs=JOBS
)
QUICK_RETRY = quick_retry(QISKIT_RETRY)
SAMPLER = {"pubs": [["OPENQASM 3.0; ...", None, 64]], "version": 2}

pytestmark = [pytest.mark.emulator(seed=11, qiskit=FAST), pytest.mark.virtual_time]


def client(emu: Emulator, **kwargs: Any) -> QiskitRuntimeClient:
    kwargs.setdefault("token", KEY)
    kwargs.setdefault("instance", CRN)
    kwargs.setdefault("cadence", QUICK_POLL)
    kwargs.setdefault("retry", QUICK_RETRY)
    return QiskitRuntimeClient(base_url=emu.qiskit_url, iam_url=emu.qiskit_iam_url, **kwargs)


@pytest.fixture
async def q(emu: Emulator) -> AsyncIterator[QiskitRuntimeClient]:
    async with client(emu) as c:
        yield c


# =========================================================================== protocol


def test_run_job_body_carries_what_was_given() -> None:
    request = P.run_job(
        "sampler",
        "ibm_kyiv",
        params={"pubs": []},
        session_id="s-1",
        tags=["a", "aiocompute-token:1234"],
        private=True,
        log_level="INFO",
        max_execution_time=300,
    )
    assert (request.method, request.path, request.idempotent) == ("POST", "/v1/jobs", False)
    assert request.body == {
        "program_id": "sampler",
        "backend": "ibm_kyiv",
        "params": {"pubs": []},
        "session_id": "s-1",
        "tags": ["a", "aiocompute-token:1234"],
        "private": True,
        "log_level": "info",
        "cost": 300,
    }
    minimal = P.run_job("estimator", "ibm_fez", params={})
    assert minimal.body == {"program_id": "estimator", "backend": "ibm_fez", "params": {}}


@pytest.mark.parametrize(
    ("kwargs", "error", "says"),
    [
        ({"tags": "one"}, TypeError, "tags must be a list"),
        ({"tags": ["ok", ""]}, ValueError, r"tags\[1\]"),
        ({"params": [1, 2]}, TypeError, "params must be a mapping"),
        ({"log_level": "loud"}, ValueError, "log_level"),
        ({"max_execution_time": 0}, ValueError, "max_execution_time"),
        ({"max_execution_time": True}, TypeError, "max_execution_time"),
        ({"private": "yes"}, TypeError, "private"),
        ({"session_id": ""}, ValueError, "session_id"),
    ],
)
def test_run_job_refuses_bad_arguments(kwargs: dict[str, Any], error: type, says: str) -> None:
    arguments: dict[str, Any] = {"params": {}, **kwargs}
    with pytest.raises(error, match=says):
        P.run_job("sampler", "ibm_kyiv", **arguments)


def test_list_jobs_query() -> None:
    after = datetime(2025, 5, 1, 12, 0, tzinfo=timezone(timedelta(hours=2)))
    request = P.list_jobs(
        limit=50,
        offset=100,
        pending=True,
        program="sampler",
        backend="ibm_kyiv",
        session_id="s-1",
        tags=["a", "b"],
        created_after=after,
        created_before="2025-06-01T00:00:00Z",
        descending=False,
    )
    assert request.params == {
        "limit": 50,
        "offset": 100,
        "pending": True,
        "program": "sampler",
        "backend": "ibm_kyiv",
        "session_id": "s-1",
        "tags": ["a", "b"],
        "created_after": "2025-05-01T10:00:00Z",
        "created_before": "2025-06-01T00:00:00Z",
        "sort": "ASC",
        "exclude_params": True,
    }
    with pytest.raises(ValueError, match=r"limit must be within 1\.\.200, got 201"):
        P.list_jobs(limit=201)
    with pytest.raises(ValueError, match="offset"):
        P.list_jobs(offset=-1)
    with pytest.raises(TypeError, match="tags"):
        P.list_jobs(tags="a")


def test_job_paths_are_checked_and_idempotence_stated() -> None:
    assert P.get_job("j1").path == "/v1/jobs/j1"
    assert P.get_job("j1").params == {"exclude_params": True}
    assert P.get_job("j1", include_params=True).params == {"exclude_params": False}
    assert (P.cancel_job("j1").method, P.cancel_job("j1").idempotent) == ("POST", False)
    assert (P.delete_job("j1").method, P.delete_job("j1").idempotent) == ("DELETE", False)
    assert P.job_results("j1").stream
    assert P.job_results("j1").idempotent
    assert P.job_logs("j1").path == "/v1/jobs/j1/logs"
    assert P.job_metrics("j1").path == "/v1/jobs/j1/metrics"
    assert P.update_job_tags("j1", ["x"]).body == {"tags": ["x"]}
    with pytest.raises(ValueError, match="job_id"):
        P.get_job("../sessions")


def test_parse_job_reads_state_reason_and_keeps_unknowns() -> None:
    job = P.parse_job(
        {
            "id": "j1",
            "backend": "ibm_kyiv",
            "status": "Failed",
            "state": {"status": "Failed", "reason": "boom", "reason_code": 1517},
            "program": {"id": "sampler"},
            "created": "2025-05-01T12:00:00.123Z",
            "session_id": None,
            "tags": ["t"],
            "usage": {"quantum_seconds": 2},
            "brand_new_field": 1,
        }
    )
    assert job.status is JobStatus.FAILED
    assert job.status_name == "Failed"
    assert (job.reason, job.program_id, job.tags) == ("boom", "sampler", ("t",))
    assert job.done
    assert not job.completed
    assert isinstance(job.created, datetime)
    assert job.raw["brand_new_field"] == 1
    # Other spellings stay readable strings, and the state table still knows them.
    odd = P.parse_job({"id": "j2", "status": "CANCELLED - RAN TOO LONG"})
    assert odd.status_name == "CANCELLED - RAN TOO LONG"
    assert odd.done
    assert JOB_STATES.is_terminal(P.job_state(odd))
    assert JOB_STATES.is_terminal("COMPLETED")
    assert not JOB_STATES.is_terminal("Queued")


def test_parse_job_created_fills_in_what_was_sent() -> None:
    job = P.parse_job_created(
        {"id": "j1", "backend": "ibm_kyiv"}, program_id="sampler", tags=["t"], session_id="s1"
    )
    assert (job.id, job.backend, job.program_id, job.tags, job.session_id) == (
        "j1",
        "ibm_kyiv",
        "sampler",
        ("t",),
        "s1",
    )
    assert job.status is None
    assert job.status_name == "unknown"
    assert job.private is False  # as sent, when the answer does not say


def test_parse_job_list_and_next_offset() -> None:
    page = P.parse_job_list(
        {"jobs": [{"id": "a"}, {"id": "b"}], "count": 5, "limit": 2, "offset": 2}
    )
    assert [j.id for j in page.jobs] == ["a", "b"]
    assert page.next_offset == 4
    last = P.parse_job_list({"jobs": [{"id": "e"}], "count": 5, "limit": 2, "offset": 4})
    assert last.next_offset is None
    # An empty page never asks for another (a count that overstates would loop).
    assert P.parse_job_list({"jobs": [], "count": 9, "offset": 0}).next_offset is None
    with pytest.raises(ProtocolError, match="'jobs' must be an array"):
        P.parse_job_list({"jobs": {"id": "a"}})
    with pytest.raises(ProtocolError, match="job list"):
        P.parse_job_list(b"<html>proxy</html>")


def test_parse_job_metrics() -> None:
    metrics = P.parse_job_metrics(
        {
            "timestamps": {"created": "x", "running": None, "finished": None},
            "usage": {"quantum_seconds": 3, "seconds": 3},
            "position_in_queue": 2,
            "estimated_start_time": "2025-05-01T12:00:00Z",
        }
    )
    assert metrics.quantum_seconds == 3.0
    assert metrics.position_in_queue == 2
    assert isinstance(metrics.estimated_start_time, datetime)


# =========================================================================== edge: aioresponses

BASE = "https://quantum.example.com/api"
IAM = "https://iam.example.com/identity/token"
JOBS_URL = BASE + "/v1/jobs"


def mocked_client(m: aioresponses, **kwargs: Any) -> QiskitRuntimeClient:
    m.post(IAM, payload={"access_token": "tok-1", "token_type": "Bearer", "expires_in": 3600})
    kwargs.setdefault("retry", quick_retry(QISKIT_RETRY, retry_after_max=1.0))
    # After a 429 the retry policy spaces the tries, not the default governor's 1 s pace.
    kwargs.setdefault("governor", quick_governor())
    return QiskitRuntimeClient(token=KEY, instance=CRN, base_url=BASE, iam_url=IAM, **kwargs)


def posts(m: aioresponses) -> int:
    return len(m.requests.get(("POST", URL(JOBS_URL)), []))


async def test_run_waits_out_a_429_and_sends_the_body(mocked: aioresponses) -> None:
    m = mocked
    m.post(JOBS_URL, status=429, headers={"Retry-After": "0"}, payload={"errors": []})
    m.post(JOBS_URL, payload={"id": "j1", "backend": "ibm_kyiv", "session_id": "s1"})
    async with mocked_client(m) as q:
        job = await q.jobs.run("sampler", "ibm_kyiv", params=SAMPLER, session_id="s1", tags=["t"])
    assert (job.id, job.session_id, job.tags[0], job.program_id) == ("j1", "s1", "t", "sampler")
    assert posts(m) == 2
    sent = json.loads(m.requests[("POST", URL(JOBS_URL))][0].kwargs["data"])
    assert sent["tags"][0] == "t"  # then the owner label and the client token
    assert [t.split(":")[0] for t in sent["tags"][1:]] == ["aiocompute-owner", "aiocompute-token"]
    assert sent["session_id"] == "s1"


async def test_run_gives_up_on_a_long_429_with_its_retry_after(mocked: aioresponses) -> None:
    m = mocked
    for _ in range(4):
        m.post(JOBS_URL, status=429, headers={"Retry-After": "1"}, body="slow down")
    async with mocked_client(m, retry=quick_retry(QISKIT_RETRY, max_attempts=2)) as q:
        with pytest.raises(RateLimitError) as info:
            await q.jobs.run("sampler", "ibm_kyiv", params={})
    assert info.value.retry_after == 1
    assert posts(m) == 2


@pytest.mark.parametrize("status", [500, 502, 503, 504])
async def test_run_is_not_repeated_after_a_server_error(mocked: aioresponses, status: int) -> None:
    # Not reconciled here: a 500 is a plain "no"; a 502/503/504 may have come after the
    # service took the job, so it is an unknown outcome, never sent again blindly.
    m = mocked
    m.post(JOBS_URL, status=status, body="oops")
    m.post(JOBS_URL, payload={"id": "dup", "backend": "ibm_kyiv"})
    async with mocked_client(m) as q:
        with pytest.raises(OutcomeUnknown if status != 500 else ServerError):
            await q.jobs.run("sampler", "ibm_kyiv", params={}, reconcile=False)
    assert posts(m) == 1


async def test_a_run_whose_answer_is_lost_is_found_by_its_token(mocked: aioresponses) -> None:
    m = mocked
    m.post(JOBS_URL, status=502, body="bad gateway")
    async with mocked_client(m) as q:
        listed = re.compile(re.escape(JOBS_URL) + r"\?.*tags=aiocompute-token")
        m.get(listed, payload={"jobs": [{"id": "landed", "backend": "ibm_kyiv"}], "count": 1})
        job = await q.jobs.run("sampler", "ibm_kyiv", params={})
    assert job.id == "landed"
    assert posts(m) == 1


async def test_409_is_the_usage_limit(mocked: aioresponses) -> None:
    body = {"errors": [{"code": 1352, "message": "Usage exceeds instance limit."}]}
    m = mocked
    m.post(JOBS_URL, status=409, payload=body)
    async with mocked_client(m) as q:
        with pytest.raises(UsageLimitExceeded) as info:
            await q.jobs.run("sampler", "ibm_kyiv", params={})
    assert isinstance(info.value, ConflictError)
    assert info.value.status == 409
    assert info.value.code == 1352
    assert "instance usage limit was exceeded" in str(info.value)
    assert "Usage exceeds instance limit." in str(info.value)
    assert posts(m) == 1


async def test_other_409s_stay_conflicts(mocked: aioresponses) -> None:
    url = JOBS_URL + "/j1/cancel"
    m = mocked
    m.post(url, status=409, payload={"errors": [{"message": "Job cannot be cancelled"}]})
    async with mocked_client(m) as q:
        with pytest.raises(ConflictError) as info:
            await q.jobs.cancel("j1")
    assert not isinstance(info.value, UsageLimitExceeded)


async def test_list_walks_the_offsets(mocked: aioresponses) -> None:
    pattern = re.compile(re.escape(JOBS_URL) + r"\?.*")
    pages = [
        {"jobs": [{"id": "a"}, {"id": "b"}], "count": 5, "limit": 2, "offset": 0},
        # A job created meanwhile pushed "b" onto this page: it is not yielded twice.
        {"jobs": [{"id": "b"}, {"id": "c"}], "count": 6, "limit": 2, "offset": 2},
        {"jobs": [{"id": "d"}, {"id": "e"}], "count": 6, "limit": 2, "offset": 4},
    ]
    m = mocked
    for page in pages:
        m.get(pattern, payload=page)
    async with mocked_client(m) as q:
        jobs = await q.jobs.list(tags=["x"], limit=2)
    assert [j.id for j in jobs] == ["a", "b", "c", "d", "e"]
    urls = [str(url) for (verb, url) in m.requests if verb == "GET"]
    offsets = sorted(URL(u).query.get("offset", "0") for u in urls)
    assert offsets == ["0", "2", "4"]
    assert all(URL(u).query["tags"] == "x" for u in urls)


async def test_results_read_json_or_bytes_and_refuse_text(mocked: aioresponses) -> None:
    url = JOBS_URL + "/j1/results"
    result = {"__type__": "PrimitiveResult", "__value__": {"pub_results": [], "metadata": {}}}
    m = mocked
    m.get(url, body=json.dumps(result), content_type="application/json")
    m.get(url, body=json.dumps(result), content_type="application/json")
    m.get(url, body="Traceback (most recent call last): boom", content_type="text/plain")
    async with mocked_client(m) as q:
        assert await q.jobs.results("j1") == result
        assert await q.jobs.results("j1", raw=True) == json.dumps(result).encode()
        with pytest.raises(ProtocolError):
            await q.jobs.results("j1")


async def test_missing_job_is_named(mocked: aioresponses) -> None:
    m = mocked
    m.get(
        re.compile(re.escape(JOBS_URL) + r"/j404.*"),
        status=404,
        payload={"errors": [{"code": 1291, "message": "Job not found."}]},
        repeat=True,
    )
    async with mocked_client(m) as q:
        with pytest.raises(NotFoundError, match="job 'j404' not found"):
            await q.jobs.get("j404")
        with pytest.raises(NotFoundError, match="job 'j404' not found"):
            await q.jobs.results("j404")


# =========================================================================== whole: emulator


async def test_run_wait_results_logs_metrics(q: QiskitRuntimeClient, emu: Emulator) -> None:
    job = await q.jobs.run("sampler", "ibm_kyiv", params=SAMPLER, tags=["exp-1"])
    assert job.program_id == "sampler"
    assert job.tags[0] == "exp-1"
    record = emu.qiskit.jobs[job.id]
    assert (record.backend, record.program, record.params) == ("ibm_kyiv", "sampler", SAMPLER)

    done = await q.jobs.wait(job.id, timeout=10)
    assert done.status is JobStatus.COMPLETED
    assert done.completed
    assert [t.state for t in record.transitions] == ["Queued", "Running", "Completed"]
    assert done.params is None  # left out unless asked for
    assert (await q.jobs.get(job.id, include_params=True)).params == SAMPLER

    result = await q.jobs.results(job.id)
    pub = result["__value__"]["pub_results"][0]
    assert result["__type__"] == "PrimitiveResult"
    assert pub["__type__"] == "SamplerPubResult"
    meas = pub["__value__"]["data"]["__value__"]["fields"]["meas"]
    assert meas["__type__"] == "BitArray"
    assert meas["__value__"]["num_bits"] == 2
    raw = await q.jobs.results(job.id, raw=True)
    assert json.loads(raw) == result
    chunks = [c async for c in q.jobs.iter_results(job.id)]
    assert b"".join(chunks) == raw

    logs = await q.jobs.logs(job.id)
    assert f"Job {job.id} queued on ibm_kyiv" in logs
    assert "Job completed" in logs
    metrics = await q.jobs.metrics(job.id)
    assert metrics.quantum_seconds == record.quantum_seconds
    assert metrics.timestamps is not None
    assert metrics.timestamps["finished"] is not None


@pytest.mark.xdist_group("ibm-client")  # with the interop tests: one worker imports it
async def test_results_decode_with_the_vendor_decoder(q: QiskitRuntimeClient) -> None:
    from qiskit_ibm_runtime import RuntimeDecoder  # in the test extra (about 2 s to import)

    sampler = await q.jobs.run("sampler", "ibm_kyiv", params={"pubs": [["c", None, 100]] * 2})
    estimator = await q.jobs.run("estimator", "ibm_kyiv", params={"pubs": [["c", "ZZ"]]})
    await q.jobs.wait_all([sampler.id, estimator.id], timeout=10)
    counts = json.loads(await q.jobs.results(sampler.id, raw=True), cls=RuntimeDecoder)
    assert len(counts) == 2
    assert sum(counts[0].data.meas.get_counts().values()) == 100
    assert set(counts[1].data.meas.get_counts()) <= {"00", "01", "10", "11"}
    values = json.loads(await q.jobs.results(estimator.id, raw=True), cls=RuntimeDecoder)
    assert -1.0 <= float(values[0].data.evs) <= 1.0


async def test_large_results_stream_in_pieces(emulator: EmulatorFactory) -> None:
    # About 5.5 MB of JSON: 4 pubs x 1,000,000 shots x 8 random bits, base64 of zlib of .npy.
    jobs = attrs.evolve(JOBS, sampler_num_bits=8)
    emu = await emulator(seed=3, qiskit=attrs.evolve(FAST, jobs=jobs))
    params = {"pubs": [["c", None, 1_000_000]] * 4}
    async with client(emu) as q:
        await _read_a_large_result(q, params)


async def _read_a_large_result(q: QiskitRuntimeClient, params: dict[str, Any]) -> None:
    job = await q.jobs.run("sampler", "ibm_kyiv", params=params)
    await q.jobs.wait(job.id, timeout=20)
    sizes = [len(c) async for c in q.jobs.iter_results(job.id)]
    assert sum(sizes) > 5_000_000
    assert len(sizes) > 10
    assert max(sizes) < sum(sizes) // 4
    result = await q.jobs.results(job.id)
    assert len(result["__value__"]["pub_results"]) == 4
    with pytest.raises(ProtocolError, match=r"max_bytes|larger"):
        await q.jobs.results(job.id, raw=True, max_bytes=1_000_000)
    with pytest.raises(ProtocolError):
        await q.jobs.results(job.id, max_bytes=1_000_000)


async def test_a_result_cut_off_is_read_again(q: QiskitRuntimeClient, emu: Emulator) -> None:
    job = await q.jobs.run("sampler", "ibm_kyiv", params={"pubs": [["c", None, 200_000]]})
    await q.jobs.wait(job.id, timeout=10)
    whole = await q.jobs.results(job.id)
    emu.faults.drop_stream_after_bytes = 20_000
    emu.faults.drop_stream_count = 1
    before = emu.stats["qiskit.job_results"]
    assert await q.jobs.results(job.id) == whole
    assert emu.stats["qiskit.job_results"] - before == 2
    assert emu.stats["faults.drop_stream"] == 1


async def test_failed_and_too_long_jobs_say_why(q: QiskitRuntimeClient) -> None:
    failing = await q.jobs.run("sampler", "ibm_kyiv", params={"emu_outcome": "fail"})
    with pytest.raises(UnreachableState, match="the emulator failed this job") as info:
        await q.jobs.wait(failing.id, timeout=10)
    assert isinstance(info.value.last, Job)
    assert info.value.last.status is JobStatus.FAILED
    assert info.value.last.state is not None
    assert info.value.last.state.reason_code == 1517
    slow = await q.jobs.run("estimator", "ibm_kyiv", params={"emu_outcome": "too_long"})
    ended = await q.jobs.wait(slow.id, ("completed", "failed", "cancelled"), timeout=10)
    assert ended.status is JobStatus.CANCELLED
    assert ended.reason == "Ran too long"
    with pytest.raises(ProtocolError):  # a failed job's "result" is its error text
        await q.jobs.results(failing.id)
    assert b"the emulator failed this job" in await q.jobs.results(failing.id, raw=True)


async def test_cancel_delete_and_conflicts(q: QiskitRuntimeClient, emu: Emulator) -> None:
    stuck = await q.jobs.run("sampler", "ibm_kyiv", params={"emu_outcome": "stuck"})
    with pytest.raises(WaitTimeout):
        await q.jobs.wait(stuck.id, timeout=0.2)
    assert (await q.jobs.get(stuck.id)).status is JobStatus.QUEUED
    metrics = await q.jobs.metrics(stuck.id)
    assert metrics.position_in_queue is not None
    assert metrics.position_in_queue >= 1
    await q.jobs.cancel(stuck.id)
    cancelled = await q.jobs.wait(stuck.id, "cancelled", timeout=5)
    assert cancelled.reason == "Cancelled by the user"
    with pytest.raises(ConflictError, match="cannot be cancelled"):
        await q.jobs.cancel(stuck.id)
    with pytest.raises(NotFoundError):  # no result for a cancelled job
        await q.jobs.results(stuck.id)
    await q.jobs.delete(stuck.id)
    assert stuck.id not in emu.qiskit.jobs
    with pytest.raises(NotFoundError, match=f"job '{stuck.id}' not found"):
        await q.jobs.get(stuck.id)


async def test_wait_on_cancel_cancels_the_job(q: QiskitRuntimeClient, emu: Emulator) -> None:
    stuck = await q.jobs.run("sampler", "ibm_kyiv", params={"emu_outcome": "stuck"})
    with pytest.raises(WaitTimeout):
        await q.jobs.wait(stuck.id, timeout=0.2, on_cancel="cancel")
    assert emu.qiskit.jobs[stuck.id].status == "Cancelled"


async def test_private_jobs_hide_params_and_read_once(q: QiskitRuntimeClient) -> None:
    job = await q.jobs.run("sampler", "ibm_kyiv", params=SAMPLER, private=True)
    assert job.private is True
    done = await q.jobs.wait(job.id, timeout=10)
    assert (await q.jobs.get(job.id, include_params=True)).params is None
    assert done.private is True
    await q.jobs.results(job.id)
    with pytest.raises(NotFoundError, match="read once"):
        await q.jobs.results(job.id)


async def test_list_filters_and_paginates(q: QiskitRuntimeClient, emu: Emulator) -> None:
    start = datetime.now(timezone.utc) - timedelta(seconds=5)
    session = await q.sessions.create("ibm_fez")
    ids = []
    for i in range(5):
        job = await q.jobs.run(
            "sampler" if i % 2 == 0 else "estimator",
            "ibm_fez" if i < 4 else "ibm_kyiv",
            params={"emu_outcome": "stuck"} if i == 0 else {},
            session_id=session.id if i < 3 else None,
            tags=["batch-7", f"n{i}"],
        )
        ids.append(job.id)
    before = emu.stats["qiskit.list_jobs"]
    newest_first = await q.jobs.list(tags=["batch-7"], limit=2)
    assert [j.id for j in newest_first] == ids[::-1]
    assert emu.stats["qiskit.list_jobs"] - before == 3  # pages of 2, 2 and 1
    oldest_first = [j.id async for j in q.jobs.list(tags=["batch-7"], descending=False)]
    assert oldest_first == ids
    assert [j.id for j in await q.jobs.list(tags=["batch-7", "n3"])] == [ids[3]]
    assert {j.id for j in await q.jobs.list(session_id=session.id)} == set(ids[:3])
    assert {j.id for j in await q.jobs.list(program="estimator")} == {ids[1], ids[3]}
    assert [j.id for j in await q.jobs.list(backend="ibm_kyiv")] == [ids[4]]
    assert [j.id for j in await q.jobs.list(created_before=start)] == []
    assert len(await q.jobs.list(created_after=start)) == 5
    assert len(await q.jobs.list(max_items=3)) == 3
    await q.jobs.wait_all(ids[1:], timeout=10)
    assert [j.id for j in await q.jobs.list(pending=True)] == [ids[0]]
    assert {j.id for j in await q.jobs.list(pending=False)} == set(ids[1:])
    page = await q.jobs.list_page(limit=2, offset=4)
    assert (page.count, [j.id for j in page.jobs], page.next_offset) == (5, [ids[0]], None)
    await q.jobs.cancel(ids[0])


async def test_another_users_jobs_are_invisible(q: QiskitRuntimeClient, emu: Emulator) -> None:
    job = await q.jobs.run("sampler", "ibm_kyiv", params={})
    async with client(emu, token="qiskit-key-bob") as bob:
        assert await bob.jobs.list() == []
        with pytest.raises(NotFoundError):
            await bob.jobs.get(job.id)


async def test_jobs_of_a_session_are_read_with_one_list(
    q: QiskitRuntimeClient, emu: Emulator
) -> None:
    session = await q.sessions.create("ibm_kyiv")
    in_session = [
        (await q.jobs.run("sampler", "ibm_kyiv", params={}, session_id=session.id)).id
        for _ in range(6)
    ]
    loose = [(await q.jobs.run("sampler", "ibm_kyiv", params={})).id for _ in range(2)]
    lists, gets = emu.stats["qiskit.list_jobs"], emu.stats["qiskit.get_job"]
    found = await q.jobs.get_many([*in_session, *loose])
    assert set(found) == {*in_session, *loose}
    assert emu.stats["qiskit.list_jobs"] - lists == 1  # the six session jobs
    assert emu.stats["qiskit.get_job"] - gets == 2  # one read per loose job
    # A fresh client learns the sessions from its first reads, then lists.
    async with client(emu) as other:
        await other.jobs.get_many(in_session)
        lists = emu.stats["qiskit.list_jobs"]
        await other.jobs.get_many(in_session)
        assert emu.stats["qiskit.list_jobs"] - lists == 1
    waited = await q.jobs.wait_all(in_session, timeout=10)
    assert all(j.completed for j in waited)


async def test_a_job_needs_a_session_that_takes_jobs(q: QiskitRuntimeClient) -> None:
    with pytest.raises(NotFoundError):
        await q.jobs.run("sampler", "ibm_kyiv", params={}, session_id="no-such-session")
    session = await q.sessions.create("ibm_kyiv")
    await q.sessions.update(session.id, accepting_jobs=False)
    with pytest.raises(APIError, match="no longer accepts jobs") as info:
        await q.jobs.run("sampler", "ibm_kyiv", params={}, session_id=session.id)
    assert info.value.status == 400
    with pytest.raises(NotFoundError, match="Backend nowhere not found"):
        await q.jobs.run("sampler", "nowhere", params={})
    with pytest.raises(APIError, match="program_id"):
        await q.jobs.run("transpiler", "ibm_kyiv", params={})


# On virtual time: the server's one-second rate window passes on the loop's clock
async def test_run_waits_out_the_rate_limit() -> None:
    jobs = QiskitJobsConfig(rate_limit=2, rate_window=1.0)
    clock = asyncio.get_running_loop().time
    patient = quick_retry(QISKIT_RETRY, retry_after_max=5.0)
    async with (
        make_emulator_on_loop_clock(seed=2, qiskit=QiskitEmulatorConfig(jobs=jobs)) as emu,
        client(emu, retry=patient, governor=RateGovernor(clock=clock)) as q,
    ):
        for _ in range(3):
            await q.jobs.run("sampler", "ibm_kyiv", params={})
        assert len(emu.qiskit.jobs) == 3
        assert emu.qiskit.jobs.rate_limited == 1
        assert emu.stats["qiskit.run_job"] == 4  # the refused one was sent again, once
        once = quick_retry(QISKIT_RETRY, max_attempts=1)
        async with client(emu, retry=once, governor=RateGovernor(clock=clock)) as q:
            await q.jobs.run("sampler", "ibm_kyiv", params={})
            with pytest.raises(RateLimitError) as info:
                await q.jobs.run("sampler", "ibm_kyiv", params={})
    assert info.value.retry_after is not None
    assert info.value.retry_after >= 1


async def test_usage_limit_refuses_new_jobs(emulator: EmulatorFactory) -> None:
    jobs = QiskitJobsConfig(usage_limit=1.0, quantum_seconds=2.0, run_delay=0.05, queue_delay=0.05)
    emu = await emulator(seed=2, qiskit=QiskitEmulatorConfig(jobs=jobs))
    async with client(emu) as q:
        first = await q.jobs.run("sampler", "ibm_kyiv", params={})
        await q.jobs.wait(first.id, timeout=10)
        with pytest.raises(UsageLimitExceeded, match="usage limit was exceeded"):
            await q.jobs.run("sampler", "ibm_kyiv", params={})
    assert len(emu.qiskit.jobs) == 1
    assert emu.qiskit.jobs.usage_refused == 1
    assert emu.stats["qiskit.run_job"] == 2  # a 409 is never retried


async def test_session_handle_lets_runs_in_flight_get_in_first(emu: Emulator) -> None:
    # Submissions take 0.3 s to be accepted; the block ends while one is in flight.
    emu.faults.latency["qiskit.run_job"] = 0.3
    created: list[Job] = []
    async with client(emu) as q, anyio.create_task_group() as tg:
        async with q.sessions.opened("ibm_kyiv") as s:

            async def submit() -> None:
                created.append(await q.jobs.run("sampler", "ibm_kyiv", params={}, session_id=s.id))

            tg.start_soon(submit)
            with anyio.fail_after(5):
                while q._submissions.busy(s.id) == 0:  # noqa: ASYNC110 (no event to wait on)
                    await anyio.sleep(0.01)
        # The run got in before the session stopped taking jobs (else a 400 had failed it).
        record = emu.qiskit.sessions[s.id]
        assert not record.accepting_jobs
    assert len(created) == 1
    assert created[0].session_id == s.id
    assert emu.qiskit.jobs[created[0].id].session_id == s.id
    patch = [r for r in emu.requests if r.method == "update_session"]
    run = [r for r in emu.requests if r.method == "run_job"]
    assert len(patch) == 1
    assert len(run) == 1


@pytest.mark.virtual_time(False)  # the sync client's own loop runs on real time
async def test_sync_twin_runs_and_lists(emu: Emulator) -> None:
    from aiocompute.sync import QiskitRuntimeClient as SyncQiskit

    def work() -> tuple[str, list[str], bytes]:
        with SyncQiskit(
            token=KEY,
            instance=CRN,
            base_url=emu.qiskit_url,
            iam_url=emu.qiskit_iam_url,
            cadence=QUICK_POLL,
        ) as q:
            job = q.jobs.run("sampler", "ibm_kyiv", params=SAMPLER, tags=["sync"])
            done = q.jobs.wait(job.id, timeout=10)
            listed = [j.id for j in q.jobs.list(tags=["sync"])]
            return done.status_name, listed, b"".join(q.jobs.iter_results(job.id))

    status, listed, raw = await anyio.to_thread.run_sync(work)
    assert status == "Completed"
    assert len(listed) == 1
    assert json.loads(raw)["__type__"] == "PrimitiveResult"


async def test_a_revoked_token_is_replaced_for_streamed_results(
    q: QiskitRuntimeClient, emu: Emulator
) -> None:
    job = await q.jobs.run("sampler", "ibm_kyiv", params=SAMPLER)
    await q.jobs.wait(job.id, timeout=10)
    tokens = emu.stats["qiskit.iam_token"]
    assert emu.qiskit.revoke_tokens() >= 1
    result = await q.jobs.results(job.id)
    assert result["__type__"] == "PrimitiveResult"
    assert emu.stats["qiskit.iam_token"] - tokens == 1  # one fresh token, then the read
    assert emu.stats["qiskit.job_results"] == 2  # the refused read and the good one


async def test_wait_until_done_takes_a_failed_job(emu: Emulator) -> None:
    async with client(emu) as q:
        job = await q.jobs.run("sampler", "ibm_kyiv", params={"emu_outcome": "fail"})
        ended = await q.jobs.wait(job.id, until="done", timeout=60)
        assert ended.status_name == "Failed"
        with pytest.raises(UnreachableState):
            await q.jobs.wait(job.id, until="completed", timeout=60)
