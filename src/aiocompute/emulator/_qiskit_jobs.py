"""Emulated Qiskit Runtime jobs, served beside the sessions under ``/qiskit/api``.

Layout (route names ``qiskit.<method>``, as for sessions)::

    POST   /v1/jobs                 run a primitive                         run_job
    GET    /v1/jobs                 list (offset pagination, filters)       list_jobs
    GET    /v1/jobs/{id}            read one                                get_job
    DELETE /v1/jobs/{id}            delete (204)                            delete_job
    POST   /v1/jobs/{id}/cancel     cancel (204; 409 once it has ended)     cancel_job
    GET    /v1/jobs/{id}/results    the primitive's result (JSON, streamed) job_results
    GET    /v1/jobs/{id}/logs       plain text                              job_logs
    GET    /v1/jobs/{id}/metrics    timestamps, usage, queue position       job_metrics
    PUT    /v1/jobs/{id}/tags       {"tags": [...]} -> 204                  update_job_tags

A job is ``Queued`` for ``queue_delay``, ``Running`` for ``run_delay``, then ``Completed``
(or ``Failed`` with probability ``fail_rate``), each delay drawn from the seeded RNG; see
:class:`~aiocompute.emulator.QiskitJobsConfig` for the steering params, the per-user rate
limit (429 + ``Retry-After``) and the instance usage limit (409). ``status`` and
``state.status`` say the same; ``state.reason`` explains a failure or cancellation.

Results have the shape IBM's ``RuntimeEncoder`` writes and ``RuntimeDecoder`` reads: a
``PrimitiveResult`` of ``SamplerPubResult`` (a ``DataBin`` with a ``BitArray`` ``meas``
of random outcomes) or ``EstimatorPubResult`` (``evs`` / ``stds`` arrays), arrays as
base64 of zlib-compressed ``.npy`` bytes. The body is streamed, so the stream faults of
:class:`~aiocompute.emulator.FaultConfig` apply to it. A failed job's "result" is its error
text. A private job hides its params and its result can be read once.

``emu.qiskit.jobs[job_id]`` is the :class:`QiskitJobRecord` (``transitions``, ``params``...).
"""

from __future__ import annotations

import base64
import collections
import json
import math
import random
import struct
import zlib
from collections.abc import Iterator
from datetime import datetime, timezone
from typing import Any, Protocol

import attrs
from aiohttp import web

from ._config import QiskitEmulatorConfig, QiskitJobsConfig
from ._runtime import Runtime, Transition, entered_by, first_entered, phase_at

__all__ = ["ROUTES", "QiskitJobRecord", "QiskitJobs"]

#: ``(verb, path under the API root, method)`` of every job route.
ROUTES: tuple[tuple[str, str, str], ...] = (
    ("POST", "/v1/jobs", "run_job"),
    ("GET", "/v1/jobs", "list_jobs"),
    ("GET", "/v1/jobs/{id}", "get_job"),
    ("DELETE", "/v1/jobs/{id}", "delete_job"),
    ("POST", "/v1/jobs/{id}/cancel", "cancel_job"),
    ("GET", "/v1/jobs/{id}/results", "job_results"),
    ("GET", "/v1/jobs/{id}/logs", "job_logs"),
    ("GET", "/v1/jobs/{id}/metrics", "job_metrics"),
    ("PUT", "/v1/jobs/{id}/tags", "update_job_tags"),
)

_PROGRAMS = ("sampler", "estimator")
_BODY_KEYS = frozenset(
    {
        "program_id",
        "backend",
        "params",
        "session_id",
        "tags",
        "log_level",
        "cost",
        "private",
        "calibration_id",
        "runtime",
        # Sent by older clients; accepted and ignored.
        "start_session",
        "session_time",
        "hub",
        "group",
        "project",
    }
)
_LOG_LEVELS = ("debug", "info", "warning", "error", "critical")
_FINAL = ("Completed", "Failed", "Cancelled")
_PAGE_MAX = 200
_CHUNK = 64 * 1024
_ID_CHARS = "0123456789abcdefghijklmnopqrstuv"  # IBM job ids look like base32hex, lower case


def _iso(wall: float) -> str:
    stamp = datetime.fromtimestamp(wall, tz=timezone.utc)
    return stamp.strftime("%Y-%m-%dT%H:%M:%S.") + f"{stamp.microsecond // 1000:03d}Z"


def _npy(descr: str, shape: tuple[int, ...], data: bytes) -> str:
    """An array as ``RuntimeEncoder`` writes it: ``.npy`` bytes, zlib, base64."""
    # A tuple's repr is numpy's spelling of a shape: (), (5,), (4096, 1).
    header = f"{{'descr': '{descr}', 'fortran_order': False, 'shape': {tuple(shape)!r}, }}"
    # Magic (6) + version (2) + header length (2) + header + "\n", padded to a multiple of 64.
    header += " " * (-(10 + len(header) + 1) % 64) + "\n"
    raw = b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header.encode("latin1") + data
    return base64.standard_b64encode(zlib.compress(raw)).decode("ascii")


def _as_bytes(value: object) -> bytes:
    # The result body goes out in pieces that are already bytes.
    assert isinstance(value, bytes)
    return value


def _ndarray(descr: str, shape: tuple[int, ...], data: bytes) -> dict[str, Any]:
    return {"__type__": "ndarray", "__value__": _npy(descr, shape, data)}


class JobError(Exception):
    """An error answer of a job route: HTTP status, the service's code and message
    (answered in the configured error shape, like the sessions' errors)."""

    def __init__(self, status: int, code: Any, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


class _Session(Protocol):
    accepting_jobs: bool

    def state_at(self, now: float) -> str: ...


class _Service(Protocol):
    """What jobs use of :class:`~aiocompute.emulator.QiskitState` (the sessions module
    imports this one, so not the other way round)."""

    config: QiskitEmulatorConfig

    def _authenticate(self, request: web.Request) -> tuple[str, str]: ...

    async def _body(self, request: web.Request) -> dict[str, Any]: ...

    def _find(self, user: str, instance: str, session_id: str) -> _Session: ...

    def _error(self, exc: Any) -> web.Response: ...


@attrs.define(eq=False)
class QiskitJobRecord:
    """One emulated job; its status is a schedule of phases evaluated at read time."""

    id: str
    user_id: str
    instance: str
    program: str
    backend: str
    params: dict[str, Any]
    created: float
    _runtime: Runtime = attrs.field(repr=False)
    session_id: str | None = None
    tags: list[str] = attrs.field(factory=list)
    private: bool = False
    cost: int | None = None
    log_level: str = "warning"
    quantum_seconds: float = 0.0
    phases: list[Transition] = attrs.field(factory=list, repr=False)
    reasons: dict[str, tuple[str, int]] = attrs.field(factory=dict, repr=False)
    results_read: int = 0
    #: The result body once built (a result never changes; reads after the first reuse it).
    result_body: bytes | None = attrs.field(default=None, repr=False)

    @property
    def status(self) -> str:
        """The ``status`` now."""
        return self.status_at(self._runtime.now())

    def status_at(self, now: float) -> str:
        """The ``status`` at an instant of the emulator clock."""
        return phase_at(self.phases, now).state

    @property
    def transitions(self) -> list[Transition]:
        """Statuses entered so far, oldest first."""
        return entered_by(self.phases, self._runtime.now())

    def entered(self, status: str, now: float) -> float | None:
        """When ``status`` was entered, if it has been by ``now``."""
        found = first_entered(self.phases, status, now)
        return found.monotonic if found else None

    def ended_at(self, now: float) -> float | None:
        """When the job ended, if it has by ``now``."""
        for phase in self.phases:
            if phase.state in _FINAL and phase.monotonic <= now:
                return phase.monotonic
        return None

    def schedule(self, now: float, steps: list[tuple[str, float]]) -> None:
        """Replace the future with ``steps``: each status is entered, then lasts its delay."""
        self.phases = entered_by(self.phases, now)
        at = now
        for status, delay in steps:
            self.phases.append(Transition(status, self._runtime.wall(at), at))
            at += delay
            if math.isinf(at):
                break

    def used(self, now: float) -> float:
        """Quantum seconds billed by ``now``: a job that ran is billed once it ends."""
        ended = self.ended_at(now)
        if ended is None or self.entered("Running", now) is None:
            return 0.0
        return self.quantum_seconds


class QiskitJobs:
    """The job half of the emulated Qiskit Runtime (``emu.qiskit.jobs``).

    ``records`` holds every job not deleted, by id (``emu.qiskit.jobs[jid]`` reads one);
    ``rate_limited`` counts the creations refused with 429, ``usage_refused`` those refused
    with 409.
    """

    def __init__(self, state: _Service, runtime: Runtime) -> None:
        self._state = state
        self._rt = runtime
        seed = runtime.seed
        self._ids = random.Random(f"qiskit-job-ids:{seed}")
        self._timing = random.Random(f"qiskit-job-timing:{seed}")
        self.records: dict[str, QiskitJobRecord] = {}
        self._created_by: dict[str, collections.deque[float]] = {}
        self.rate_limited = 0
        self.usage_refused = 0

    # -- mapping-like access for tests --------------------------------------------------
    def __getitem__(self, job_id: str) -> QiskitJobRecord:
        return self.records[job_id]

    def __contains__(self, job_id: object) -> bool:
        return job_id in self.records

    def __len__(self) -> int:
        return len(self.records)

    def __iter__(self) -> Iterator[str]:
        return iter(self.records)

    @property
    def config(self) -> QiskitJobsConfig:
        """The job settings in force."""
        return self._state.config.jobs

    def _error(self, status: int, code: Any, message: str) -> JobError:
        return JobError(status, code, message)

    def _draw(self, bounds: tuple[float, float]) -> float:
        low, high = bounds
        return low if low == high else self._timing.uniform(low, high)

    def _new_id(self) -> str:
        while True:
            job_id = "".join(self._ids.choice(_ID_CHARS) for _ in range(20))
            if job_id not in self.records:
                return job_id

    def _find(self, request: web.Request) -> tuple[QiskitJobRecord, float]:
        user, crn = self._state._authenticate(request)
        record = self.records.get(request.match_info["id"])
        if record is None or record.user_id != user or record.instance != crn:
            raise self._error(404, 1291, "Job not found.")
        return record, self._rt.now()

    # -- limits -------------------------------------------------------------------------
    def _check_rate(self, user: str, now: float) -> None:
        limit = self.config.rate_limit
        if limit is None:
            return
        window = self.config.rate_window
        recent = self._created_by.setdefault(user, collections.deque())
        while recent and recent[0] <= now - window:
            recent.popleft()
        if len(recent) >= limit:
            self.rate_limited += 1
            wait = max(1, math.ceil(recent[0] + window - now))
            raise _RateLimited(wait, limit, window)
        recent.append(now)

    def _check_usage(self, instance: str, now: float) -> None:
        limit = self.config.usage_limit
        if limit is None:
            return
        used = sum(r.used(now) for r in self.records.values() if r.instance == instance)
        if used >= limit:
            self.usage_refused += 1
            raise self._error(409, 1352, "Usage exceeds instance limit.")

    # -- wire shapes --------------------------------------------------------------------
    def _job_json(self, r: QiskitJobRecord, now: float, *, with_params: bool) -> dict[str, Any]:
        status = r.status_at(now)
        state: dict[str, Any] = {"status": status}
        if status in r.reasons:
            reason, code = r.reasons[status]
            state["reason"] = reason
            state["reason_code"] = code
        used = r.used(now)
        data: dict[str, Any] = {
            "id": r.id,
            "backend": r.backend,
            "state": state,
            "status": status,
            "program": {"id": r.program},
            "created": _iso(self._rt.wall(r.created)),
            "runtime": "",
            "cost": r.cost if r.cost is not None else 600,
            "session_id": r.session_id,
            "tags": list(r.tags),
            "private": r.private,
            "user_id": r.user_id,
            "usage": {"seconds": round(used, 3), "quantum_seconds": round(used, 3)},
            "estimated_running_time_seconds": round(self.config.run_delay[1], 3),
        }
        if with_params and not r.private:
            data["params"] = r.params
        return data

    def _flag(self, request: web.Request, name: str, default: bool) -> bool:
        value = request.query.get(name)
        if value is None:
            return default
        if value.lower() not in ("true", "false"):
            raise self._error(400, 1311, f"{name} must be true or false")
        return value.lower() == "true"

    # -- handlers -----------------------------------------------------------------------
    async def handle(self, method: str, request: web.Request) -> web.StreamResponse:
        """Answer one job request; a creation over the rate limit gets 429 + Retry-After.
        (The sessions' own errors, e.g. an unknown session, are answered by their module.)"""
        try:
            response: web.StreamResponse = await getattr(self, method)(request)
            return response
        except JobError as exc:
            return self._state._error(exc)
        except _RateLimited as exc:
            refused = self._state._error(JobError(429, 3458, str(exc)))
            refused.headers["Retry-After"] = str(exc.retry_after)
            return refused

    async def run_job(self, request: web.Request) -> web.StreamResponse:
        """``POST /v1/jobs``."""
        user, crn = self._state._authenticate(request)
        body = await self._state._body(request)
        unknown = set(body) - _BODY_KEYS
        if unknown:
            raise self._error(400, 1311, f"Unknown properties: {', '.join(sorted(unknown))}")
        program = body.get("program_id")
        if program not in _PROGRAMS:
            raise self._error(400, 1311, f"program_id must be one of: {', '.join(_PROGRAMS)}")
        backend = body.get("backend")
        if not isinstance(backend, str) or not backend:
            raise self._error(400, 1311, "backend is required")
        if backend not in self._state.config.backends:
            raise self._error(404, 1216, f"Backend {backend} not found.")
        params = body.get("params")
        if not isinstance(params, dict):
            raise self._error(400, 1311, "params must be a JSON object")
        tags = body.get("tags", [])
        if not isinstance(tags, list) or not all(isinstance(t, str) and t for t in tags):
            raise self._error(400, 1311, "tags must be an array of non-empty strings")
        log_level = body.get("log_level", "warning")
        if log_level not in _LOG_LEVELS:
            raise self._error(400, 1311, f"log_level must be one of: {', '.join(_LOG_LEVELS)}")
        cost = body.get("cost")
        if cost is not None and (isinstance(cost, bool) or not isinstance(cost, int) or cost < 1):
            raise self._error(400, 1311, "cost must be a positive integer")
        private = body.get("private", False)
        if not isinstance(private, bool):
            raise self._error(400, 1311, "private must be a boolean")
        session_id = body.get("session_id")
        now = self._rt.now()
        if session_id is not None:
            if not isinstance(session_id, str):
                raise self._error(400, 1311, "session_id must be a string")
            session = self._state._find(user, crn, session_id)
            live = session.state_at(now)
            if live == "closed" or not session.accepting_jobs:
                raise self._error(
                    400, 1218, f"Session {session_id} is closed or no longer accepts jobs."
                )
        self._check_rate(user, now)
        self._check_usage(crn, now)
        record = QiskitJobRecord(
            id=self._new_id(),
            user_id=user,
            instance=crn,
            program=program,
            backend=backend,
            params=params,
            created=now,
            runtime=self._rt,
            session_id=session_id,
            tags=list(dict.fromkeys(tags)),
            private=private,
            cost=cost,
            log_level=log_level,
            quantum_seconds=round(self._draw(self.config.quantum_seconds), 3),
        )
        self._plan(record, now)
        self.records[record.id] = record
        answer: dict[str, Any] = {"id": record.id, "backend": backend}
        if session_id is not None:
            answer["session_id"] = session_id
        if private:
            answer["private"] = True
        return web.json_response(answer)

    def _plan(self, r: QiskitJobRecord, now: float) -> None:
        cfg = self.config
        outcome = r.params.get("emu_outcome")
        queued = self._draw(cfg.queue_delay)
        running = self._draw(cfg.run_delay)
        failing = self._timing.random() < cfg.fail_rate
        if outcome == "stuck":
            r.schedule(now, [("Queued", math.inf)])
        elif outcome == "too_long":
            r.reasons["Cancelled"] = ("Ran too long", 1305)
            r.schedule(now, [("Queued", queued), ("Running", running), ("Cancelled", math.inf)])
        elif outcome == "fail" or failing:
            r.reasons["Failed"] = ("Error in the primitive: the emulator failed this job", 1517)
            r.schedule(now, [("Queued", queued), ("Running", running), ("Failed", math.inf)])
        else:
            r.schedule(now, [("Queued", queued), ("Running", running), ("Completed", math.inf)])

    async def list_jobs(self, request: web.Request) -> web.StreamResponse:
        """``GET /v1/jobs``: ``{"jobs", "count", "limit", "offset"}``."""
        user, crn = self._state._authenticate(request)
        query = request.query
        try:
            limit = int(query.get("limit", _PAGE_MAX))
            offset = int(query.get("offset", 0))
        except ValueError:
            raise self._error(400, 1311, "limit and offset must be integers") from None
        if limit < 1 or offset < 0:
            raise self._error(400, 1311, "limit must be >= 1 and offset >= 0")
        limit = min(limit, _PAGE_MAX)
        with_params = not self._flag(request, "exclude_params", True)
        sort = query.get("sort", "DESC").upper()
        if sort not in ("ASC", "DESC"):
            raise self._error(400, 1311, "sort must be ASC or DESC")
        after = self._when(query.get("created_after"), "created_after")
        before = self._when(query.get("created_before"), "created_before")
        tags = query.getall("tags", [])
        now = self._rt.now()
        pending = self._flag(request, "pending", False) if "pending" in query else None
        matched = []
        for r in self.records.values():
            if r.user_id != user or r.instance != crn:
                continue
            if pending is not None and (r.status_at(now) not in _FINAL) != pending:
                continue
            if "program" in query and r.program != query["program"]:
                continue
            if "backend" in query and r.backend != query["backend"]:
                continue
            if "session_id" in query and r.session_id != query["session_id"]:
                continue
            if any(tag not in r.tags for tag in tags):
                continue
            wall = self._rt.wall(r.created)
            if (after is not None and wall < after) or (before is not None and wall > before):
                continue
            matched.append(r)
        # By creation time, and jobs created at the same instant in the order they came (the
        # records are kept in that order; the sort is stable).
        matched.sort(key=lambda r: r.created)
        if sort == "DESC":
            matched.reverse()
        page = matched[offset : offset + limit]
        return web.json_response(
            {
                "jobs": [self._job_json(r, now, with_params=with_params) for r in page],
                "count": len(matched),
                "limit": limit,
                "offset": offset,
            }
        )

    def _when(self, value: str | None, name: str) -> float | None:
        if value is None:
            return None
        try:
            stamp = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            raise self._error(400, 1311, f"{name} must be an ISO-8601 date and time") from None
        if stamp.tzinfo is None:
            stamp = stamp.replace(tzinfo=timezone.utc)
        return stamp.timestamp()

    async def get_job(self, request: web.Request) -> web.StreamResponse:
        """``GET /v1/jobs/{id}`` (``exclude_params`` false returns the params)."""
        record, now = self._find(request)
        with_params = not self._flag(request, "exclude_params", False)
        return web.json_response(self._job_json(record, now, with_params=with_params))

    async def delete_job(self, request: web.Request) -> web.StreamResponse:
        """``DELETE /v1/jobs/{id}`` -> 204."""
        record, _ = self._find(request)
        del self.records[record.id]
        return web.Response(status=204)

    async def cancel_job(self, request: web.Request) -> web.StreamResponse:
        """``POST /v1/jobs/{id}/cancel`` -> 204; 409 once the job has ended."""
        record, now = self._find(request)
        status = record.status_at(now)
        if status in _FINAL:
            raise self._error(409, 1293, f"Job cannot be cancelled: it is {status}.")
        record.reasons["Cancelled"] = ("Cancelled by the user", 1300)
        record.schedule(now, [("Cancelled", math.inf)])
        return web.Response(status=204)

    async def update_job_tags(self, request: web.Request) -> web.StreamResponse:
        """``PUT /v1/jobs/{id}/tags`` with ``{"tags": [...]}`` -> 204."""
        record, _ = self._find(request)
        body = await self._state._body(request)
        tags = body.get("tags")
        if (
            set(body) != {"tags"}
            or not isinstance(tags, list)
            or not all(isinstance(t, str) and t for t in tags)
        ):
            raise self._error(400, 1311, 'The body must be {"tags": [<non-empty strings>]}')
        record.tags = list(dict.fromkeys(tags))
        return web.Response(status=204)

    async def job_logs(self, request: web.Request) -> web.StreamResponse:
        """``GET /v1/jobs/{id}/logs``: plain text, growing as the job runs."""
        record, now = self._find(request)
        wall = self._rt.wall
        lines = []
        for phase in record.phases:
            if phase.monotonic > now:
                break
            stamp = _iso(wall(phase.monotonic))
            if phase.state == "Queued":
                lines.append(f"{stamp} INFO Job {record.id} queued on {record.backend}")
            elif phase.state == "Running":
                lines.append(f"{stamp} INFO Running {record.program} ({self._pubs(record)} pubs)")
            else:
                reason = record.reasons.get(phase.state, ("", 0))[0]
                level = "INFO" if phase.state == "Completed" else "ERROR"
                tail = f": {reason}" if reason else ""
                lines.append(f"{stamp} {level} Job {phase.state.lower()}{tail}")
        return web.Response(text="\n".join(lines) + "\n", content_type="text/plain")

    async def job_metrics(self, request: web.Request) -> web.StreamResponse:
        """``GET /v1/jobs/{id}/metrics``."""
        record, now = self._find(request)
        wall = self._rt.wall
        running = record.entered("Running", now)
        ended = record.ended_at(now)
        status = record.status_at(now)
        used = record.used(now)
        data: dict[str, Any] = {
            "timestamps": {
                "created": _iso(wall(record.created)),
                "running": None if running is None else _iso(wall(running)),
                "finished": None if ended is None else _iso(wall(ended)),
            },
            "bss": {"seconds": round(used, 3)},
            "usage": {"quantum_seconds": round(used, 3), "seconds": round(used, 3)},
            "executions": self._pubs(record) if status == "Completed" else 0,
            "num_circuits": self._pubs(record),
            "qiskit_version": "qiskit_ibm_runtime-0.40.0,qiskit-2.1.0*",
        }
        if status == "Queued":
            ahead = [
                r
                for r in self.records.values()
                if r.backend == record.backend
                and r.status_at(now) == "Queued"
                and (r.created, r.id) < (record.created, record.id)
            ]
            starts = next((p.monotonic for p in record.phases if p.state == "Running"), None)
            data["position_in_queue"] = len(ahead) + 1
            data["position_in_provider"] = len(ahead) + 1
            if starts is not None:
                data["estimated_start_time"] = _iso(wall(starts))
        if status in ("Queued", "Running"):
            finish = next((p.monotonic for p in record.phases if p.state in _FINAL), None)
            if finish is not None:
                data["estimated_completion_time"] = _iso(wall(finish))
        return web.json_response(data)

    async def job_results(self, request: web.Request) -> web.StreamResponse:
        """``GET /v1/jobs/{id}/results``: the result JSON (streamed in 64 KiB pieces), a
        failed job's error text, or 404 before the job has a result."""
        record, now = self._find(request)
        status = record.status_at(now)
        if status == "Failed":
            reason = record.reasons.get("Failed", ("failed", 0))[0]
            text = f"Traceback (most recent call last):\n  ...\nRuntimeError: {reason}\n"
            return web.Response(text=text, content_type="text/plain")
        if status != "Completed":
            raise self._error(404, 1292, f"Job results not found: the job is {status}.")
        if record.private and record.results_read:
            raise self._error(
                404, 1292, "Job results not found: a private job's result is read once."
            )
        record.results_read += 1
        if record.result_body is None:
            record.result_body = json.dumps(self._result(record), separators=(",", ":")).encode()
        body = record.result_body
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        await response.prepare(request)
        with self._rt.open_stream(request, response, "qiskit.job_results", _as_bytes) as sink:
            for start in range(0, len(body), _CHUNK):
                if not await sink.send(body[start : start + _CHUNK]):
                    break
            if not sink.cut:
                await response.write_eof()
        return response

    # -- results ------------------------------------------------------------------------
    def _pubs(self, r: QiskitJobRecord) -> int:
        pubs = r.params.get("pubs")
        return len(pubs) if isinstance(pubs, list) and pubs else 1

    def _shots(self, r: QiskitJobRecord, pub: Any) -> int:
        if isinstance(pub, list) and len(pub) >= 3 and isinstance(pub[2], int) and pub[2] > 0:
            return int(pub[2])
        shots = r.params.get("shots")
        if isinstance(shots, int) and not isinstance(shots, bool) and shots > 0:
            return shots
        options = r.params.get("options")
        if isinstance(options, dict):
            default = options.get("default_shots")
            if isinstance(default, int) and not isinstance(default, bool) and default > 0:
                return default
        return int(self.config.default_shots)

    def _result(self, r: QiskitJobRecord) -> dict[str, Any]:
        rng = random.Random(f"qiskit-job-result:{self._rt.seed}:{r.id}")
        pubs = r.params.get("pubs")
        items = pubs if isinstance(pubs, list) and pubs else [None]
        results = [
            self._sampler_pub(r, pub, rng) if r.program == "sampler" else self._estimator_pub(rng)
            for pub in items
        ]
        return {
            "__type__": "PrimitiveResult",
            "__value__": {"pub_results": results, "metadata": {"version": 2}},
        }

    def _sampler_pub(self, r: QiskitJobRecord, pub: Any, rng: random.Random) -> dict[str, Any]:
        shots = self._shots(r, pub)
        bits = int(self.config.sampler_num_bits)
        width = (bits + 7) // 8
        mask = (1 << bits) - 1
        # Outcomes as numpy's BitArray packs them: one row of big-endian bytes per shot.
        data = rng.randbytes(shots * width)
        if bits % 8:
            top = mask >> (8 * (width - 1))
            data = bytes(b & top if i % width == 0 else b for i, b in enumerate(data))
        meas = {
            "__type__": "BitArray",
            "__value__": {"array": _ndarray("|u1", (shots, width), data), "num_bits": bits},
        }
        return {
            "__type__": "SamplerPubResult",
            "__value__": {
                "data": {
                    "__type__": "DataBin",
                    "__value__": {
                        "field_names": ["meas"],
                        "field_types": ["BitArray"],
                        "shape": [],
                        "fields": {"meas": meas},
                    },
                },
                "metadata": {"circuit_metadata": {}},
            },
        }

    def _estimator_pub(self, rng: random.Random) -> dict[str, Any]:
        ev = rng.uniform(-1.0, 1.0)
        std = rng.uniform(0.005, 0.02)

        def scalar(value: float) -> dict[str, Any]:
            return _ndarray("<f8", (), struct.pack("<d", value))

        return {
            "__type__": "PubResult",
            "__value__": {
                "data": {
                    "__type__": "DataBin",
                    "__value__": {
                        "field_names": ["evs", "stds", "ensemble_standard_error"],
                        "field_types": ["ndarray", "ndarray", "ndarray"],
                        "shape": [],
                        "fields": {
                            "evs": scalar(ev),
                            "stds": scalar(std),
                            "ensemble_standard_error": scalar(std),
                        },
                    },
                },
                "metadata": {"target_precision": 0.015625, "shots": 4096, "circuit_metadata": {}},
            },
        }


class _RateLimited(Exception):
    """A creation over the per-user rate limit (answered 429 with Retry-After)."""

    def __init__(self, retry_after: int, limit: int, window: float) -> None:
        super().__init__(f"Rate limit exceeded: at most {limit} jobs per {window:g} s per user.")
        self.retry_after = retry_after
