"""Logging (``AIOCOMPUTE_LOG``, the ``aiocompute`` logger tree) and OpenTelemetry spans.

Spans are checked against the emulator over real loopback HTTP, with the SDK's in-memory
exporter. OpenTelemetry lets a process set its tracer provider once, so this module sets
one for the whole session, with a sampler that records only while a test of this module
runs: other modules see the same non-recording spans they would see without an SDK.

Every test here ends by scanning every span it made (attributes, events, status text) for
the credentials in use: none may show up.
"""

from __future__ import annotations

import json
import logging
import os
import re
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, ALWAYS_ON, Sampler, SamplingResult
from opentelemetry.trace import StatusCode

from aiocompute import (
    ETEngineClient,
    JobSpec,
    LakeSailClient,
    NotFoundError,
    QiskitRuntimeClient,
    WorkbenchClient,
)
from aiocompute._core import observability
from aiocompute.emulator import (
    Emulator,
    EmulatorConfig,
    ETEngineEmulatorConfig,
    LakeSailEmulatorConfig,
    QiskitEmulatorConfig,
    WorkbenchEmulatorConfig,
)
from aiocompute.qiskit import QISKIT_RETRY
from helpers import QUICK_POLL, QUICK_RESUME, QUICK_RETRY

SRC = Path(__file__).resolve().parent.parent / "src"

# Distinctive credentials: if one ever shows up in a span, it leaked.
WB_TOKEN = "wbtok-OTEL-5f3c9e2d7a"
ET_KEY = "etkey-OTEL-8e1b44c0f2"
QK_KEY = "qkkey-OTEL-31d9aa7c55"
LS_TOKEN = "lstok-OTEL-c2f0e9b813"
SECRETS = (WB_TOKEN, ET_KEY, QK_KEY, LS_TOKEN)

CRN = "crn:v1:bluemix:public:quantum-computing:us-east:a/abc::"
CONFIG = EmulatorConfig(
    workbench=WorkbenchEmulatorConfig(
        tokens={WB_TOKEN: ("alice", "user")},
        session_launch_delay=0.02,
        session_pending_delay=0.02,
        session_starting_delay=0.02,
        session_stop_delay=0.01,
        job_pending_delay=0.01,
        job_chunk_count=3,
        job_chunk_interval=0.01,
    ),
    etengine=ETEngineEmulatorConfig(api_keys={ET_KEY: "user-1"}),
    qiskit=QiskitEmulatorConfig(api_keys={QK_KEY: "user-alice"}, activate_delay=0.05),
    lakesail=LakeSailEmulatorConfig(
        tokens={LS_TOKEN: ("MALICE", "member")}, provision_delay=0.02, idle_delay=0.5
    ),
)


# --------------------------------------------------------------------------- the provider


class _Switch(Sampler):
    """Records while ``on``: the provider is global and stays for the whole session."""

    on = False

    def should_sample(self, *args: Any, **kwargs: Any) -> SamplingResult:
        return (ALWAYS_ON if self.on else ALWAYS_OFF).should_sample(*args, **kwargs)

    def get_description(self) -> str:
        return "tests.test_observability switch"


_SWITCH = _Switch()
_EXPORTER = InMemorySpanExporter()


@pytest.fixture(scope="session")
def _provider() -> TracerProvider:
    provider = TracerProvider(sampler=_SWITCH)
    provider.add_span_processor(SimpleSpanProcessor(_EXPORTER))
    trace.set_tracer_provider(provider)  # once per process: OpenTelemetry allows no more
    return provider


@pytest.fixture
def spans(_provider: TracerProvider) -> Iterator[InMemorySpanExporter]:
    """The exporter, recording for this test only; the spans are scanned for secrets after."""
    _EXPORTER.clear()
    _SWITCH.on = True
    try:
        yield _EXPORTER
    finally:
        _SWITCH.on = False
    finished = _EXPORTER.get_finished_spans()
    _EXPORTER.clear()
    leaks = [(s.name, text) for s in finished for text in _texts(s) if _has_secret(text)]
    assert not leaks, leaks


def _texts(span: ReadableSpan) -> list[str]:
    texts = [span.name, str(span.status.description or "")]
    texts += [f"{k}={v}" for k, v in (span.attributes or {}).items()]
    for event in span.events:
        texts.append(event.name)
        texts += [f"{k}={v}" for k, v in (event.attributes or {}).items()]
    return texts


def _has_secret(text: str) -> bool:
    return any(secret in text for secret in SECRETS) or "Authorization" in text


def named(exporter: InMemorySpanExporter, name: str) -> list[ReadableSpan]:
    return [s for s in exporter.get_finished_spans() if s.name == name]


def one(exporter: InMemorySpanExporter, name: str) -> ReadableSpan:
    found = named(exporter, name)
    assert len(found) == 1, [s.name for s in exporter.get_finished_spans()]
    return found[0]


def events(span: ReadableSpan, name: str) -> list[dict[str, Any]]:
    return [dict(e.attributes or {}) for e in span.events if e.name == name]


def names(exporter: InMemorySpanExporter) -> set[str]:
    return {s.name for s in exporter.get_finished_spans()}


# --------------------------------------------------------------------------- fixtures


pytestmark = pytest.mark.emulator(seed=5, config=CONFIG)


@pytest.fixture
async def wb(emu: Emulator) -> AsyncIterator[WorkbenchClient]:
    async with WorkbenchClient(
        emu.workbench_url, token=WB_TOKEN, retry=QUICK_RETRY, cadence=QUICK_POLL
    ) as client:
        yield client


@pytest.fixture
async def et(emu: Emulator) -> AsyncIterator[ETEngineClient]:
    async with ETEngineClient(
        api_key=ET_KEY, base_url=emu.etengine_url, retry=QUICK_RETRY, cadence=QUICK_POLL
    ) as client:
        yield client


@pytest.fixture
async def q(emu: Emulator) -> AsyncIterator[QiskitRuntimeClient]:
    async with QiskitRuntimeClient(
        token=QK_KEY,
        instance=CRN,
        base_url=emu.qiskit_url,
        iam_url=emu.qiskit_iam_url,
        retry=QISKIT_RETRY.replace(backoff_initial=0.01, backoff_max=0.02),
        cadence=QUICK_POLL,
    ) as client:
        yield client


@pytest.fixture
async def ls(emu: Emulator) -> AsyncIterator[LakeSailClient]:
    async with LakeSailClient(
        LS_TOKEN, base_url=emu.lakesail_url, retry=QUICK_RETRY, cadence=QUICK_POLL
    ) as client:
        yield client


def job_spec(*args: str) -> JobSpec:
    return JobSpec(name="otel", cluster="Local", exe="Rscript", args=list(args))


# --------------------------------------------------------------------------- spans per API


async def test_workbench_spans(spans: InMemorySpanExporter, wb: WorkbenchClient) -> None:
    await wb.version()
    launched = await wb.sessions.launch(
        "RStudio", name="t", launch_parameters={"name": "t", "cluster": "Local"}
    )
    session = await wb.sessions.wait(launched.id, timeout=10)
    await wb.sessions.get(session.id)
    await wb.sessions.stop(session.id)
    job = await wb.jobs.launch(job_spec("--emu-chunks=2"))
    chunks = [c async for c in wb.jobs.output(job.id)]
    assert chunks

    assert {
        "workbench.version",
        "workbench.sessions.launch",
        "workbench.sessions.wait",
        "workbench.sessions.get",
        "workbench.sessions.stop",
        "workbench.jobs.launch",
        "workbench.jobs.output",
    } <= names(spans)
    version = one(spans, "workbench.version")
    assert version.attributes is not None
    assert version.attributes["aiocompute.api"] == "workbench"
    assert version.attributes["http.response.status_code"] == 200
    assert version.attributes["aiocompute.retry_count"] == 0
    assert "aiocompute.resource_id" not in version.attributes
    # The id the call names, whether given alone or (for stop) as the only id.
    for name in ("workbench.sessions.get", "workbench.sessions.stop", "workbench.sessions.wait"):
        attributes = one(spans, name).attributes or {}
        assert attributes["aiocompute.resource_id"] == session.id, name
    output = one(spans, "workbench.jobs.output")
    assert (output.attributes or {})["aiocompute.resource_id"] == job.id
    assert output.status.status_code is StatusCode.UNSET


async def test_etengine_spans(spans: InMemorySpanExporter, et: ETEngineClient) -> None:
    created = await et.batches.create("tool-sim", variable_args=[{"i": 1}, {"i": 2}])
    assert created.batch_id is not None
    await et.batches.list()
    status = await et.batches.status(created.batch_id)
    await et.batches.wait(created.batch_id, timeout=10)
    (job, *_) = await et.jobs.list(created.batch_id)
    await et.jobs.get(created.batch_id, job.job_id)

    assert {
        "etengine.batches.create",
        "etengine.batches.list",
        "etengine.batches.status",
        "etengine.jobs.list",
        "etengine.jobs.get",
        "etengine.batches.wait",
    } <= names(spans)
    first = named(spans, "etengine.batches.status")[0]
    assert first.attributes is not None
    assert first.attributes["aiocompute.resource_id"] == status.batch_id
    assert first.attributes["http.response.status_code"] == 200
    get = one(spans, "etengine.jobs.get").attributes or {}
    assert get["aiocompute.resource_id"] == created.batch_id  # the first id it names


async def test_qiskit_spans(spans: InMemorySpanExporter, q: QiskitRuntimeClient) -> None:
    session = await q.sessions.create("ibm_kyiv", max_ttl=600)
    await q.sessions.get(session.id)
    await q.sessions.wait(session.id, timeout=10)
    await q.sessions.close(session.id)
    with pytest.raises(NotFoundError):
        await q.sessions.get("nope-0000")

    assert {
        "qiskit.sessions.create",
        "qiskit.sessions.get",
        "qiskit.sessions.wait",
        "qiskit.sessions.close",
    } <= names(spans)
    create = one(spans, "qiskit.sessions.create").attributes or {}
    assert create["aiocompute.api"] == "qiskit"
    assert "aiocompute.resource_id" not in create  # create names a backend, not an id
    (missing,) = [
        s
        for s in named(spans, "qiskit.sessions.get")
        if (s.attributes or {}).get("aiocompute.resource_id") == "nope-0000"
    ]
    assert missing.status.status_code is StatusCode.ERROR
    assert "nope-0000" in str(missing.status.description)
    attributes = missing.attributes or {}
    assert attributes["error.type"] == "NotFoundError"
    assert attributes["http.response.status_code"] == 404
    (exception,) = events(missing, "exception")
    assert exception["exception.type"] == "NotFoundError"


async def test_lakesail_spans(spans: InMemorySpanExporter, ls: LakeSailClient) -> None:
    session = await ls.sessions.create(name="otel")
    await ls.sessions.get(session.id)
    listed = await ls.sessions.list()
    assert [s.id for s in listed] == [session.id]
    await ls.workload_configs.list()
    await ls.sessions.wait(session.id, timeout=10)
    await ls.sessions.close(session.id)

    assert {
        "lakesail.sessions.create",
        "lakesail.sessions.get",
        "lakesail.sessions.list",  # one per page fetched
        "lakesail.workload_configs.list",
        "lakesail.sessions.wait",
        "lakesail.sessions.close",
    } <= names(spans)
    get = one(spans, "lakesail.sessions.get").attributes or {}
    assert get["aiocompute.resource_id"] == session.id
    assert get["aiocompute.api"] == "lakesail"


# --------------------------------------------------------------------------- retries, waits


async def test_retries_are_counted_and_recorded(
    spans: InMemorySpanExporter, et: ETEngineClient, emu: Emulator
) -> None:
    created = await et.batches.create("tool-hello")
    assert created.batch_id is not None
    emu.faults.error_next["etengine"] = 2  # two 503 pages, then the answer
    await et.batches.status(created.batch_id)

    (span,) = [s for s in named(spans, "etengine.batches.status") if events(s, "retry")]
    attributes = span.attributes or {}
    assert attributes["aiocompute.retry_count"] == 2
    assert attributes["http.response.status_code"] == 200  # the last answer
    assert span.status.status_code is StatusCode.UNSET
    retries = events(span, "retry")
    assert [r["attempt"] for r in retries] == [1, 2]
    assert {r["error.type"] for r in retries} == {"ServerError"}
    assert all(isinstance(r["delay"], float) and r["delay"] >= 0 for r in retries)


async def test_wait_transitions_and_children(
    spans: InMemorySpanExporter, q: QiskitRuntimeClient
) -> None:
    session = await q.sessions.create("ibm_fez")
    await q.sessions.wait(session.id, "active", timeout=10)

    wait = one(spans, "qiskit.sessions.wait")
    transitions = events(wait, "wait.transition")
    assert transitions[0] == {"id": session.id, "to": "open"}  # no "from" for the first
    assert transitions[-1]["to"] == "active"
    assert all(t["from"] != t["to"] for t in transitions[1:])
    # The polls are the wait's children, in the same trace.
    assert wait.context is not None
    polls = [
        s
        for s in named(spans, "qiskit.sessions.get")
        if s.parent is not None and s.parent.span_id == wait.context.span_id
    ]
    assert polls
    assert all(p.context is not None and p.context.trace_id == wait.context.trace_id for p in polls)


async def test_wait_all_as_completed_and_watch_record_transitions(
    spans: InMemorySpanExporter, et: ETEngineClient
) -> None:
    ids = []
    for _ in range(2):
        created = await et.batches.create("tool-hello")
        assert created.batch_id is not None
        ids.append(created.batch_id)
    await et.batches.wait_all(ids, timeout=10)
    results = [r async for r in et.batches.as_completed(ids, timeout=10)]
    assert {r.id for r in results} == set(ids)
    watched = [e async for e in et.batches.watch(ids[:1], timeout=10)]
    assert watched

    for name in ("etengine.batches.wait_all", "etengine.batches.as_completed"):
        seen = {t["id"] for t in events(one(spans, name), "wait.transition")}
        assert seen == set(ids), name
    watch = events(one(spans, "etengine.batches.watch"), "wait.transition")
    assert [t["to"] for t in watch] == [e.new_state for e in watched]


async def test_stream_reconnect_event(
    spans: InMemorySpanExporter, wb: WorkbenchClient, emu: Emulator
) -> None:
    emu.faults.drop_stream_after_bytes = 300
    emu.faults.drop_stream_count = 1
    job = await wb.jobs.launch(job_spec("--emu-chunks=6", "--emu-interval=0.01"))
    collected = await wb.jobs.collect(job.id, resume=QUICK_RESUME)
    assert collected.stdout == emu.workbench.jobs[job.id].full_output()

    output = one(spans, "workbench.jobs.output")
    (reconnect,) = events(output, "stream.reconnect")
    assert reconnect["attempt"] == 1
    assert reconnect["offset"] > 0  # characters delivered before the drop
    assert reconnect["reason"] == "TransportError"
    # collect reads output: the stream's span is its child.
    collect = one(spans, "workbench.jobs.collect")
    assert output.parent is not None
    assert collect.context is not None
    assert output.parent.span_id == collect.context.span_id


async def test_a_stream_span_is_never_current_between_items(
    spans: InMemorySpanExporter, wb: WorkbenchClient
) -> None:
    job = await wb.jobs.launch(job_spec("--emu-chunks=3"))
    outside = trace.get_current_span()
    seen = []
    async for _chunk in wb.jobs.output(job.id):
        seen.append(trace.get_current_span())
        await wb.version()  # a call made between items is not the stream's child
    assert len(seen) == 3
    assert all(s is outside for s in seen)
    # Nothing was current around the loop, so the calls made in it are roots.
    assert all(version.parent is None for version in named(spans, "workbench.version"))
    assert one(spans, "workbench.jobs.output").parent is None


async def test_leaving_a_stream_early_ends_its_span_without_error(
    spans: InMemorySpanExporter, et: ETEngineClient
) -> None:
    created = await et.batches.create("tool-hello")
    assert created.batch_id is not None
    async for _result in et.batches.as_completed([created.batch_id], timeout=10):
        break
    events_ = et.batches.watch([created.batch_id], timeout=10)
    await events_.__anext__()
    await events_.aclose()

    for name in ("etengine.batches.as_completed", "etengine.batches.watch"):
        span = one(spans, name)
        assert span.end_time is not None
        assert span.status.status_code is StatusCode.UNSET, name


async def test_cancelled_call_is_marked(spans: InMemorySpanExporter, et: ETEngineClient) -> None:
    created = await et.batches.create("tool-hello")
    assert created.batch_id is not None
    with anyio.move_on_after(0.05):
        await et.batches.wait(created.batch_id, lambda _b: False, timeout=10)
    span = one(spans, "etengine.batches.wait")
    assert span.status.status_code is StatusCode.ERROR
    assert (span.attributes or {})["error.type"] == "CancelledError"


async def test_nothing_is_recorded_outside_a_call(spans: InMemorySpanExporter) -> None:
    # The transport's hooks and the stream's events find no call: no error, no span.
    observability.record_response(200)
    observability.record_retry(1, RuntimeError("x"), 0.1)
    observability.record_event("stream.reconnect", {"attempt": 1})
    assert observability.observe_transitions(None) is None
    assert spans.get_finished_spans() == ()


def test_api_call_is_the_identity_without_opentelemetry(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(observability, "_OTEL_INSTALLED", False)

    async def method(self: object) -> None:
        """Doc."""

    assert observability.api_call("method")(method) is method


def test_api_call_keeps_name_doc_and_signature() -> None:
    import inspect

    version = WorkbenchClient.__dict__["version"]
    assert version.__name__ == "version"
    assert inspect.getdoc(version) == "The server's version and enabled features."
    assert inspect.iscoroutinefunction(version)
    output = type(WorkbenchClient("http://127.0.0.1:9", token="t").jobs).output
    assert inspect.isasyncgenfunction(output)
    assert list(inspect.signature(output).parameters)[:2] == ["self", "job_id"]


# --------------------------------------------------------------------------- subprocesses


def run(code: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run ``code`` in a fresh interpreter that imports this checkout."""
    environ = {k: v for k, v in os.environ.items() if k != observability.LOG_ENV}
    environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(SRC), environ.get("PYTHONPATH")]))
    environ.update(env or {})
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=environ, timeout=60
    )


# One ET Engine read against the emulator; prints what the root and aiocompute loggers hold.
REQUEST = f"""
import asyncio, json, logging
from aiocompute import ETEngineClient
from aiocompute.emulator import Emulator, EmulatorConfig, ETEngineEmulatorConfig

async def main():
    config = EmulatorConfig(etengine=ETEngineEmulatorConfig(api_keys={{{ET_KEY!r}: "u"}}))
    async with Emulator(config=config) as emu:
        async with ETEngineClient(api_key={ET_KEY!r}, base_url=emu.etengine_url) as et:
            await et.batches.list()

asyncio.run(main())
logger = logging.getLogger("aiocompute")
print(json.dumps({{
    "root_handlers": len(logging.getLogger().handlers),
    "handlers": len(logger.handlers),
    "level": logger.level,
}}))
"""


def test_aiocompute_log_debug_logs_requests_to_stderr() -> None:
    done = run(REQUEST, {"AIOCOMPUTE_LOG": "Debug"})
    assert done.returncode == 0, done.stderr
    lines = done.stderr.splitlines()
    requests = [line for line in lines if "aiocompute.transport" in line and "-> 200" in line]
    assert requests, done.stderr
    assert " DEBUG " in requests[0]
    assert "GET " in requests[0]
    assert ET_KEY not in done.stderr
    assert "Authorization" not in done.stderr
    state = json.loads(done.stdout)
    assert state == {"root_handlers": 0, "handlers": 1, "level": logging.DEBUG}


def test_without_aiocompute_log_nothing_is_logged() -> None:
    done = run(REQUEST)
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    assert json.loads(done.stdout) == {"root_handlers": 0, "handlers": 0, "level": 0}


def test_aiocompute_log_info_hides_debug_lines() -> None:
    done = run(REQUEST, {"AIOCOMPUTE_LOG": "INFO"})
    assert done.returncode == 0, done.stderr
    assert "aiocompute.transport" not in done.stderr
    assert json.loads(done.stdout)["level"] == logging.INFO


def test_a_bad_aiocompute_log_warns_once_and_logs_nothing() -> None:
    done = run(REQUEST, {"AIOCOMPUTE_LOG": "loud"})
    assert done.returncode == 0, done.stderr
    warnings = [line for line in done.stderr.splitlines() if "Warning" in line]
    assert len(warnings) == 1, done.stderr
    assert "AIOCOMPUTE_LOG" in warnings[0]
    assert all(level in warnings[0] for level in ("debug", "info", "warning", "error"))
    assert "aiocompute.transport" not in done.stderr
    assert json.loads(done.stdout)["handlers"] == 0


def test_aiocompute_log_handler_is_added_once() -> None:
    code = (
        "import importlib, logging, sys, aiocompute\n"
        "importlib.reload(aiocompute)\n"
        "for name in [m for m in sys.modules if m.startswith('aiocompute')]:\n"
        "    del sys.modules[name]\n"
        "import aiocompute\n"
        "print(len(logging.getLogger('aiocompute').handlers), len(logging.getLogger().handlers))\n"
    )
    done = run(code, {"AIOCOMPUTE_LOG": "debug"})
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["1", "0"]


def test_calls_work_with_opentelemetry_hidden() -> None:
    code = (
        "import sys\n"
        "sys.modules['opentelemetry'] = None  # as if not installed\n"
        + REQUEST
        + "from aiocompute._core import observability\n"
        "from aiocompute.etengine import ETEngineClient\n"
        "assert not observability._OTEL_INSTALLED\n"
        "fn = ETEngineClient.__annotations__  # the client module was defined\n"
        "from aiocompute.etengine.client import BatchesResource\n"
        "assert not hasattr(BatchesResource.status, '__wrapped__')  # no wrapper at all\n"
        "print('ok')\n"
    )
    done = run(code)
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    assert done.stdout.splitlines()[-1] == "ok"


def test_every_logger_is_in_the_aiocompute_tree() -> None:
    # Every getLogger under src names a child of "aiocompute", by concern (the parent
    # itself only where AIOCOMPUTE_LOG puts its handler).
    found = {
        match
        for path in SRC.rglob("*.py")
        for match in re.findall(r"getLogger\(([^)]*)\)", path.read_text(encoding="utf-8"))
    }
    assert found == {
        '"aiocompute"',
        '"aiocompute.transport"',
        '"aiocompute.retries"',
        '"aiocompute.stream"',
        '"aiocompute.polling"',
        '"aiocompute.auth"',
        '"aiocompute.handles"',
        '"aiocompute.reconcile"',
    }
