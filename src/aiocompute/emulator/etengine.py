"""The emulated ET Engine batches API, served under ``/etengine/v1``.

Routes (names ``"etengine.<method>"`` for stats and faults)::

    POST   /etengine/v1/tools/<tool_id>                   create a batch      create_batch
    GET    /etengine/v1/batches                           list batches        list_batches
    DELETE /etengine/v1/batches                           delete them all     delete_all_batches
    GET    /etengine/v1/batches/<batch_id>                status counts       get_batch
    DELETE /etengine/v1/batches/<batch_id>                delete one          delete_batch
    GET    /etengine/v1/batches/<batch_id>/jobs           list its jobs       list_jobs
    GET    /etengine/v1/batches/<batch_id>/jobs/<job_id>  describe a job      get_job

It follows ``reference/et-engine-batches-api.txt`` and ``API-NOTES.md``, quirks included:
``Authorization: <key>`` with no scheme (``Bearer <key>`` is accepted too); bare JSON bodies,
no envelope, no pagination; errors in plain text (400 "Invalid request body", 401 "Missing
authorization header", 403 "Access denied", 500 "Unknown error occurred"); an empty 200 body
for deletes; the batch id answered as plain text on create; job statuses in upper or lower
case (:attr:`~aiocompute.emulator.ETEngineEmulatorConfig.status_case`); the job description
as a list of one; deleting a batch does not stop its jobs (they go on in
:attr:`ETEngineState.jobs`); no log endpoint. Ids the service does not know are answered
like the service does, 500 "Unknown error occurred" (``unknown_batch_status`` changes it).

Each job's life (delays drawn from seeded ranges): unregistered (invisible) for
``register_delay``; ``SUBMITTING`` for ``submitting_delay`` (listed and described, but not
counted: AWS Batch does not know it yet); then SUBMITTED, PENDING, RUNNABLE and STARTING for
``phase_delay`` each; RUNNING for ``run_delay``; then SUCCEEDED, or FAILED when its arguments
hold a truthy ``"emu-fail"`` or a seeded draw falls under ``failure_rate``.
"""

from __future__ import annotations

import json
import random
from datetime import datetime, timezone
from typing import Any

import attrs
from aiohttp import web

from ._config import ETEngineEmulatorConfig
from ._runtime import Runtime, Transition, entered_by, first_entered, phase_at

__all__ = [
    "API",
    "API_ROOT",
    "PREFIX",
    "ETBatchRecord",
    "ETEngineState",
    "ETJobRecord",
    "create_app",
]

#: API name, the first part of every stats / fault key (``"etengine.get_batch"``).
API = "etengine"
#: Where the API is mounted on the emulator.
PREFIX = "/etengine"
#: The API's base URL under the prefix (the service's ``https://api.exploretech.ai/v1``).
API_ROOT = "/v1"

_PHASES = ("SUBMITTED", "PENDING", "RUNNABLE", "STARTING")
_UNKNOWN = "Unknown error occurred"


class TextError(Exception):
    """An error answered as plain text."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@attrs.define(eq=False)
class ETJobRecord:
    """One emulated job. Its status is a schedule evaluated at read time.

    ``phases`` starts with ``""`` (not registered yet), then ``SUBMITTING``, the AWS Batch
    statuses and the final one, each with its time.
    """

    job_id: str
    batch_id: str
    log_id: str
    args: dict[str, Any]
    fail: bool
    upper: bool
    _runtime: Runtime = attrs.field(repr=False)
    phases: list[Transition] = attrs.field(factory=list, repr=False)

    def status_at(self, now: float) -> str:
        """The upper-case status at ``now`` (``""``: not registered yet)."""
        return phase_at(self.phases, now).state

    @property
    def status(self) -> str:
        """The upper-case status now."""
        return self.status_at(self._runtime.now())

    @property
    def transitions(self) -> list[Transition]:
        """Statuses entered so far (the unregistered phase left out)."""
        return [p for p in entered_by(self.phases, self._runtime.now()) if p.state]

    def time_of(self, state: str, now: float) -> float | None:
        """When ``state`` was entered, if it has been by ``now``."""
        found = first_entered(self.phases, state, now)
        return found.wall_time if found else None


@attrs.define(eq=False)
class ETBatchRecord:
    """One emulated batch: its tool, hardware and jobs."""

    batch_id: str
    owner: str
    tool_id: str
    hardware: dict[str, Any]
    jobs: list[ETJobRecord]
    created: float
    deleted: bool = False

    @property
    def n_jobs(self) -> int:
        """How many jobs the batch was created with."""
        return len(self.jobs)


class ETEngineState:
    """The simulated ET Engine service.

    Attributes:
        config: the :class:`~aiocompute.emulator.ETEngineEmulatorConfig` in force.
        batches: live batches by id (deleted ones leave).
        deleted: batches deleted so far, by id; their jobs keep running.
        jobs: every job ever submitted, by id (deleting a batch does not stop its jobs).
    """

    def __init__(self, config: ETEngineEmulatorConfig, runtime: Runtime) -> None:
        self.config = config
        self._rt = runtime
        seed = runtime.seed
        self._ids = random.Random(f"etengine-ids:{seed}")
        self._timing = random.Random(f"etengine-timing:{seed}")
        self.batches: dict[str, ETBatchRecord] = {}
        self.deleted: dict[str, ETBatchRecord] = {}
        self.jobs: dict[str, ETJobRecord] = {}

    # -- helpers -------------------------------------------------------------------------
    def _draw(self, bounds: tuple[float, float]) -> float:
        low, high = bounds
        return low if low == high else self._timing.uniform(low, high)

    def _uuid(self) -> str:
        h = f"{self._ids.getrandbits(128):032x}"
        return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-a{h[17:20]}-{h[20:]}"

    def _case(self, job: ETJobRecord, status: str) -> str:
        return status if job.upper else status.lower()

    def _time(self, wall: float | None) -> Any:
        if wall is None:
            return ""
        if self.config.time_format == "iso":
            return datetime.fromtimestamp(wall, tz=timezone.utc).isoformat()
        return int(wall * 1000)

    def _authenticate(self, request: web.Request) -> str:
        header = request.headers.get("Authorization")
        if header is None or not header.strip():
            raise TextError(401, "Missing authorization header")
        key = header.strip()
        scheme, _, rest = key.partition(" ")
        if scheme.lower() == "bearer" and rest.strip():
            key = rest.strip()
        user = self.config.api_keys.get(key)
        if user is None:
            raise TextError(403, "Access denied")
        return user

    def _batch(self, user: str, batch_id: str) -> ETBatchRecord:
        record = self.batches.get(batch_id)
        if record is None or record.owner != user:
            status = self.config.unknown_batch_status
            raise TextError(status, _UNKNOWN if status >= 500 else "Batch not found")
        return record

    def _visible(self, job: ETJobRecord, now: float) -> bool:
        return job.status_at(now) != ""

    # -- JSON views ----------------------------------------------------------------------
    def _tool_json(self, tool_id: str) -> dict[str, Any]:
        name, description = self.config.tools.get(tool_id, ("", ""))
        return {"tool_id": tool_id, "tool_name": name, "tool_description": description}

    def _counts(self, batch: ETBatchRecord, now: float) -> dict[str, int]:
        counts = dict.fromkeys((*_PHASES, "RUNNING", "SUCCEEDED", "FAILED"), 0)
        for job in batch.jobs:
            status = job.status_at(now)
            if status in counts:  # unregistered and SUBMITTING jobs are not counted
                counts[status] += 1
        return counts

    # -- handlers ------------------------------------------------------------------------
    async def create_batch(self, request: web.Request) -> web.StreamResponse:
        """``POST /tools/<tool_id>``: answers the new batch id (plain text by default)."""
        user = self._authenticate(request)
        tool_id = request.match_info["tool_id"]
        if tool_id not in self.config.tools:
            raise TextError(403, "Access denied")
        body = await self._body(request)
        fixed, variable, hardware = self._check_create(body)
        now = self._rt.now()
        batch_id = self._uuid()
        jobs: list[ETJobRecord] = []
        for entry in variable or [{}]:
            args = {**fixed, **entry}
            fail = bool(args.get("emu-fail")) or (self._timing.random() < self.config.failure_rate)
            upper = {"upper": True, "lower": False}.get(
                self.config.status_case, self._timing.random() < 0.5
            )
            job = ETJobRecord(
                job_id=self._uuid(),
                batch_id=batch_id,
                log_id=f"{tool_id}/default/{self._ids.getrandbits(64):016x}",
                args=args,
                fail=fail,
                upper=upper,
                runtime=self._rt,
            )
            steps = [
                ("", self._draw(self.config.register_delay)),
                ("SUBMITTING", self._draw(self.config.submitting_delay)),
            ]
            steps += [(phase, self._draw(self.config.phase_delay)) for phase in _PHASES]
            steps += [("RUNNING", self._draw(self.config.run_delay))]
            steps += [("FAILED" if fail else "SUCCEEDED", 0.0)]
            at = now
            for state, delay in steps:
                job.phases.append(Transition(state, self._rt.wall(at), at))
                at += delay
            jobs.append(job)
            self.jobs[job.job_id] = job
        self.batches[batch_id] = ETBatchRecord(
            batch_id=batch_id,
            owner=user,
            tool_id=tool_id,
            hardware=hardware,
            jobs=jobs,
            created=now,
        )
        answer = self.config.create_answer
        if answer == "json":
            return web.json_response({"batch_id": batch_id})
        if answer == "empty":
            return web.Response(status=200)
        return web.Response(status=200, text=batch_id, content_type="text/plain")

    async def _body(self, request: web.Request) -> Any:
        raw = await request.read()
        try:
            return json.loads(raw)
        except (UnicodeDecodeError, ValueError):
            raise TextError(400, "Invalid request body") from None

    def _check_create(
        self, body: Any
    ) -> tuple[dict[str, Any], list[dict[str, Any]], dict[str, Any]]:
        invalid = TextError(400, "Invalid request body")
        if not isinstance(body, dict) or not {"fixed_args", "variable_args", "hardware"} <= set(
            body
        ):
            raise invalid
        fixed, variable, hardware = body["fixed_args"], body["variable_args"], body["hardware"]
        if not isinstance(fixed, dict) or not isinstance(variable, list):
            raise invalid
        if not all(isinstance(v, dict) for v in variable):
            raise invalid
        if not isinstance(hardware, dict):
            raise invalid
        cpu, memory = hardware.get("cpu"), hardware.get("memory")
        filesystems = hardware.get("filesystems", [])
        for value in (cpu, memory):
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise invalid
        if not isinstance(filesystems, list) or not all(
            isinstance(f, str) and f in self.config.filesystems for f in filesystems
        ):
            raise invalid
        return fixed, variable, {"cpu": cpu, "memory": memory, "filesystems": filesystems}

    async def list_batches(self, request: web.Request) -> web.StreamResponse:
        """``GET /batches``."""
        user = self._authenticate(request)
        out = []
        for batch in self.batches.values():
            if batch.owner != user:
                continue
            hw = batch.hardware
            out.append(
                {
                    "batch_id": batch.batch_id,
                    "batch_tool": self._tool_json(batch.tool_id),
                    "n_jobs": batch.n_jobs,
                    "hardware": {
                        "filesystem_list": [
                            {"filesystem_id": f, "filesystem_name": self.config.filesystems[f]}
                            for f in hw["filesystems"]
                        ],
                        "cpu": hw["cpu"],
                        "memory": hw["memory"],
                    },
                }
            )
        return web.json_response(out)

    async def delete_all_batches(self, request: web.Request) -> web.StreamResponse:
        """``DELETE /batches``: empty 200; the jobs go on."""
        user = self._authenticate(request)
        for batch_id in [b for b, r in self.batches.items() if r.owner == user]:
            self._forget(batch_id)
        return web.Response(status=200)

    def _forget(self, batch_id: str) -> None:
        record = self.batches.pop(batch_id)
        record.deleted = True
        self.deleted[batch_id] = record

    async def get_batch(self, request: web.Request) -> web.StreamResponse:
        """``GET /batches/<batch_id>``: the counts (flat, or nested under submitted_jobs)."""
        user = self._authenticate(request)
        batch = self._batch(user, request.match_info["batch_id"])
        counts = self._counts(batch, self._rt.now())
        if self.config.status_shape == "nested":
            hw = batch.hardware
            return web.json_response(
                {
                    "batch_id": batch.batch_id,
                    "tool_id": batch.tool_id,
                    "n_jobs": batch.n_jobs,
                    "hardware": {
                        "filesystems": hw["filesystems"],
                        "memory": hw["memory"],
                        "cpu": hw["cpu"],
                    },
                    "n_submitted": sum(counts.values()),
                    "submitted_jobs": counts,
                }
            )
        return web.json_response({k.lower(): v for k, v in counts.items()})

    async def delete_batch(self, request: web.Request) -> web.StreamResponse:
        """``DELETE /batches/<batch_id>``: empty 200, known id or not; the jobs go on."""
        user = self._authenticate(request)
        batch_id = request.match_info["batch_id"]
        record = self.batches.get(batch_id)
        if record is not None and record.owner == user:
            self._forget(batch_id)
        return web.Response(status=200)

    async def list_jobs(self, request: web.Request) -> web.StreamResponse:
        """``GET /batches/<batch_id>/jobs``: the registered jobs."""
        user = self._authenticate(request)
        batch = self._batch(user, request.match_info["batch_id"])
        now = self._rt.now()
        return web.json_response(
            [
                {
                    "job_id": job.job_id,
                    "job_tool": self._tool_json(batch.tool_id),
                    "job_log_id": job.log_id,
                    "job_argument_list": [
                        {"argument_key": k, "argument_value": v} for k, v in job.args.items()
                    ],
                }
                for job in batch.jobs
                if self._visible(job, now)
            ]
        )

    async def get_job(self, request: web.Request) -> web.StreamResponse:
        """``GET /batches/<batch_id>/jobs/<job_id>``: a list of one, by default."""
        user = self._authenticate(request)
        batch = self._batch(user, request.match_info["batch_id"])
        now = self._rt.now()
        job = self.jobs.get(request.match_info["job_id"])
        if job is None or job.batch_id != batch.batch_id or not self._visible(job, now):
            raise TextError(500, _UNKNOWN)
        status = job.status_at(now)
        hw = batch.hardware
        started = job.time_of("RUNNING", now)
        stopped = job.time_of(status, now) if status in ("SUCCEEDED", "FAILED") else None
        detail = {
            "job_id": job.job_id,
            "log_id": job.log_id,
            "hardware": {
                "filesystems": hw["filesystems"],
                "memory": hw["memory"],
                "cpu": hw["cpu"],
            },
            "args": job.args,
            "status": self._case(job, status),
            "reason": "Essential container in task exited" if status == "FAILED" else "",
            "create_time": self._time(job.time_of("SUBMITTED", now)),
            "start_time": self._time(started),
            "stop_time": self._time(stopped),
        }
        return web.json_response([detail] if self.config.job_detail_as_list else detail)

    async def handle(self, method: str, request: web.Request) -> web.StreamResponse:
        """Answer one request; errors as plain text."""
        try:
            handler = getattr(self, method)
            response: web.StreamResponse = await handler(request)
            return response
        except TextError as exc:
            return web.Response(status=exc.status, text=exc.message, content_type="text/plain")


def create_app(state: ETEngineState) -> web.Application:
    """The ET Engine sub-application: ``/v1/...`` routes named ``"etengine.<method>"``."""
    app = web.Application()
    routes: tuple[tuple[str, str, str], ...] = (
        ("POST", f"{API_ROOT}/tools/{{tool_id}}", "create_batch"),
        ("GET", f"{API_ROOT}/batches", "list_batches"),
        ("DELETE", f"{API_ROOT}/batches", "delete_all_batches"),
        ("GET", f"{API_ROOT}/batches/{{batch_id}}", "get_batch"),
        ("DELETE", f"{API_ROOT}/batches/{{batch_id}}", "delete_batch"),
        ("GET", f"{API_ROOT}/batches/{{batch_id}}/jobs", "list_jobs"),
        ("GET", f"{API_ROOT}/batches/{{batch_id}}/jobs/{{job_id}}", "get_job"),
    )
    for verb, path, method in routes:

        async def handler(request: web.Request, _method: str = method) -> web.StreamResponse:
            return await state.handle(_method, request)

        app.router.add_route(verb, path, handler, name=f"{API}.{method}")
    return app
