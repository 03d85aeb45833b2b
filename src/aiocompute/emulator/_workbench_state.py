"""The emulated Workbench server (see :mod:`aiocompute.emulator.workbench`): users, sessions,
jobs, every method's handler, the streamed job output and the dispatch of a request.
"""

from __future__ import annotations

import collections
import hashlib
import json
import random
from collections.abc import Callable, Container, Mapping
from typing import Any

from aiohttp import web

from ._config import WorkbenchEmulatorConfig
from ._runtime import Runtime, phase_at
from ._workbench_records import _EXIT_KILL, _EXIT_TERM, JobRecord, SessionRecord
from ._workbench_rpc import (
    _ADMIN_ROLES,
    _CLUSTERS,
    _PROFILES,
    _R_IDES,
    API,
    WORKBENCHES,
    Identity,
    RpcError,
    _compute_envs,
    _denied,
    _emu_options,
    _first,
    _id_list,
    _iso_naive,
    _iso_seconds,
    _iso_z,
    _ms,
    _ok,
    _opt_bool,
    _opt_list,
    _opt_str,
    _parse_iso,
    _req_str,
    _role_rank,
    _unauthorized,
)

# -- the state and the API -----------------------------------------------------------------


class WorkbenchState:
    """The simulated Workbench server: users, sessions, jobs and their schedules.

    Attributes:
        config: the :class:`WorkbenchEmulatorConfig` in force.
        sessions: every session ever launched, by id (ended ones included).
        jobs: every job launched with ``launch_job``, by id.
        audited_jobs: every audited job, by audited job id.
    """

    def __init__(self, config: WorkbenchEmulatorConfig, runtime: Runtime) -> None:
        self.config = config
        self._rt = runtime
        seed = runtime.seed
        self._ids = random.Random(f"workbench-ids:{seed}")
        self._timing = random.Random(f"workbench-timing:{seed}")
        self.sessions: dict[str, SessionRecord] = {}
        self.jobs: dict[str, JobRecord] = {}
        self.audited_jobs: dict[str, JobRecord] = {}
        self._by_owner: dict[str, dict[str, SessionRecord]] = {}
        self._jobs_by_owner: dict[str, list[JobRecord]] = {}
        self._job_ids: set[str] = set()
        self._born = runtime.wall(runtime.now())
        self._users = self._make_users()
        framing = config.stream_framing
        self._encode: Callable[[object], bytes]
        if framing == "pretty":
            self._encode = lambda v: json.dumps(v, indent=2).encode() + b"\n"
        elif framing == "concatenated":
            self._encode = lambda v: json.dumps(v, separators=(",", ":")).encode()
        else:
            self._encode = lambda v: json.dumps(v, separators=(",", ":")).encode() + b"\n"

    # -- identities ----------------------------------------------------------------------
    def _make_users(self) -> dict[str, dict[str, Any]]:
        roles: dict[str, str] = {}
        for user, role in self.config.tokens.values():
            # A user holding several tokens gets the strongest role in the listing.
            if user not in roles or _role_rank(role) > _role_rank(roles[user]):
                roles[user] = role
        for user in self.config.rpc_cookies.values():
            roles.setdefault(user, "user")
        stamp = _iso_z(self._born)
        return {
            name: {
                "username": name,
                "status": "Active",
                "isAdmin": roles[name] in _ADMIN_ROLES,
                "isSuperAdmin": roles[name] == "super-admin",
                "uid": 1001 + index,
                "lastSignIn": stamp,
                "created": stamp,
            }
            for index, name in enumerate(sorted(roles))
        }

    def authenticate(self, request: web.Request) -> Identity | None:
        """The caller's identity from its bearer token or RPC cookie; None if neither is valid."""
        header = request.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() == "bearer" and token.strip():
            found = self.config.tokens.get(token.strip())
            return None if found is None else Identity(found[0], found[1])
        cookie = request.headers.get("X-RS-Session-Server-RPC-Cookie")
        if cookie:
            user = self.config.rpc_cookies.get(cookie.strip())
            return None if user is None else Identity(user, "user", via_cookie=True)
        return None

    def _target(self, ident: Identity, kw: Mapping[str, Any], name: str) -> str:
        return _opt_str(kw, name) or ident.username

    def _check_read(self, ident: Identity, target: str) -> None:
        if target != ident.username and not ident.is_admin:
            raise _denied()

    def _check_launch(self, ident: Identity, target: str) -> None:
        if target == ident.username:
            return
        if ident.role != "super-admin":
            raise _denied()
        if target not in self._users:
            raise RpcError(404, f"user not found: {target}")

    # -- helpers -------------------------------------------------------------------------
    def _draw(self, bounds: tuple[float, float]) -> float:
        low, high = bounds
        return low if low == high else self._timing.uniform(low, high)

    def _new_id(self, taken: Container[str], bits: int = 32) -> str:
        while True:
            candidate = f"{self._ids.getrandbits(bits):0{bits // 4}x}"
            if candidate not in taken:
                return candidate

    def _validate_placement(
        self, cluster: Any, image: Any, profile: Any, where: str
    ) -> tuple[str, str]:
        if not isinstance(cluster, str) or not cluster:
            raise RpcError(400, f"{where}cluster is required")
        if cluster not in _CLUSTERS:
            raise RpcError(400, f'Unknown cluster "{cluster}"')
        if image is not None and not isinstance(image, str):
            raise RpcError(400, f"{where}container image must be a string")
        if cluster == "Kubernetes" and not image:
            raise RpcError(400, 'Kubernetes requires the "container" parameter')
        if profile is not None and profile not in _PROFILES[cluster]:
            raise RpcError(400, "Unknown resource profile")
        return cluster, image or ""

    # -- sessions ------------------------------------------------------------------------
    def _session_json(self, s: SessionRecord, now: float) -> dict[str, Any]:
        wall = self._rt.wall
        current = phase_at(s.phases, now)
        state = current.state
        r_ide = s.workbench in _R_IDES
        return {
            "name": s.name,
            "url": s.url,
            "id": s.id,
            "launch_parameters": s.launch_parameters,
            "created": _ms(wall(s.created)),
            "activity_state": state,
            "last_state_updated": _ms(current.wall_time),
            "label": s.name,
            "display_name": s.name,
            "status_detail": s.status_detail if state == "failed" else "",
            "project": None,
            "project_id": s.project_id,
            "running": state == "running",
            "working_dir": s.working_dir,
            "executing": False,
            "save_prompt_required": False,
            "last_used": _ms(wall(s.last_used(now))),
            "r_version": "4.3.0" if r_ide else "",
            "r_version_label": "",
            "r_version_home": "/usr/lib/R" if r_ide else "",
            "suspend_size": s.suspend_size if state == "suspended" else 0,
            "workbench": s.workbench,
        }

    def _historical_json(self, s: SessionRecord, now: float) -> dict[str, Any]:
        wall = self._rt.wall
        ended = s.ended_at(now) or now
        running = s.first_time("running", now)
        terminated = s.stop_requested if s.stop_requested is not None else ended
        job: dict[str, Any] = {
            "name": s.name,
            "cluster": s.launch_parameters.get("cluster", "Local"),
            "id": s.job_id,
            "container": s.launch_parameters.get("container_image", ""),
            "status": s.end_status,
            "exitCode": s.end_exit_code,
            "submissionTime": _iso_naive(wall(s.created)),
            "lastUpdateTime": _iso_seconds(wall(ended)),
            "terminatedTime": _iso_naive(wall(terminated)),
        }
        if running is not None:
            job["runningTimestamp"] = _iso_naive(wall(running))
        return {
            "id": s.id,
            "username": s.owner,
            "launch_parameters": {
                "cluster": s.launch_parameters.get("cluster", "Local"),
                "container_image": s.launch_parameters.get("container_image", ""),
            },
            "created": _iso_naive(wall(s.created)),
            "label": s.name,
            "display_name": s.name,
            "project": hashlib.sha1(s.project_id.encode()).hexdigest()[:13],
            "running": False,
            "executing": False,
            "save_prompt_required": False,
            "last_used": _iso_seconds(wall(s.last_used(now))),
            "workbench": s.workbench,
            "job": job,
        }

    def _launch_steps(self, name: str) -> tuple[list[tuple[str, float]], str]:
        cfg = self.config
        d_launch = self._draw(cfg.session_launch_delay)
        d_pending = self._draw(cfg.session_pending_delay)
        d_starting = self._draw(cfg.session_starting_delay)
        if "emu-stuck" in name:
            return [("launching", d_launch), ("pending", 0.0)], ""
        if "emu-fail" in name:
            detail = "Session failed to launch: the emulated launcher was asked to fail (emu-fail)"
            return [("launching", d_launch), ("pending", d_pending), ("failed", 0.0)], detail
        steps = [
            ("launching", d_launch),
            ("pending", d_pending),
            ("starting", d_starting),
            ("running", 0.0),
        ]
        return steps, ""

    async def launch_session(self, ident: Identity, kw: dict[str, Any]) -> web.StreamResponse:
        target = self._target(ident, kw, "username")
        self._check_launch(ident, target)
        workbench = _req_str(kw, "workbench")
        if workbench not in WORKBENCHES:
            raise RpcError(400, f'Unknown workbench "{workbench}"; expected one of {WORKBENCHES}')
        name = _opt_str(kw, "name") or f"{workbench} Session"
        raw_lp = kw.get("launch_parameters")
        if raw_lp is None:
            if self.config.require_launch_parameters:
                raise RpcError(400, "launch_parameters is required: launcher sessions are enabled")
            raw_lp = {"cluster": "Local"}
        if not isinstance(raw_lp, dict):
            raise RpcError(400, "parameter 'launch_parameters' must be an object")
        image = _first(raw_lp, "container_image", "default_image")
        cluster, image = self._validate_placement(
            raw_lp.get("cluster"), image, raw_lp.get("resource_profile"), "launch_parameters."
        )
        for key in ("placement_constraints", "resource_limits", "queues"):
            _opt_list(raw_lp, key, "launch_parameters.")
        working_dir = _opt_str(kw, "working_directory") or "~"
        _opt_str(kw, "open_file")
        launch_parameters = {
            "name": raw_lp.get("name") or name,
            "cluster": cluster,
            "placement_constraints": raw_lp.get("placement_constraints") or [],
            "resource_limits": raw_lp.get("resource_limits") or [],
            "queues": raw_lp.get("queues") or [],
            "container_image": image,
            "default_image": raw_lp.get("default_image") or "",
            "container_images": [image],
        }
        for key, value in raw_lp.items():
            launch_parameters.setdefault(key, value)

        now = self._rt.now()
        sid = self._new_id(self.sessions)
        project_id = f"{self._ids.getrandbits(32):08x}"
        user_hash = hashlib.sha1(target.encode()).hexdigest()[:5]
        steps, detail = self._launch_steps(name)
        record = SessionRecord(
            id=sid,
            owner=target,
            workbench=workbench,
            name=name,
            project_id=project_id,
            url=f"/s/{user_hash}{project_id}{sid}/",
            launch_parameters=launch_parameters,
            working_dir=working_dir,
            created=now,
            job_id=self._new_id(self._job_ids, 64),
            suspend_size=self._ids.randint(1_000_000, 50_000_000),
            runtime=self._rt,
            status_detail=detail,
        )
        record.schedule(now, steps)
        if detail:
            record.end_status, record.end_exit_code = "Failed", 1
        self.sessions[sid] = record
        self._by_owner.setdefault(target, {})[sid] = record
        return _ok({"url": record.url, "id": sid, "project_id": project_id})

    async def get_session(self, ident: Identity, kw: dict[str, Any]) -> web.StreamResponse:
        target = self._target(ident, kw, "user")
        self._check_read(ident, target)
        ids = _id_list(kw.get("session_id"), "session_id")
        fields = kw.get("fields")
        if fields is not None and not (
            isinstance(fields, list) and all(isinstance(f, str) for f in fields)
        ):
            raise RpcError(400, "parameter 'fields' must be an array of strings")
        include_jobs = _opt_bool(kw, "include_jobs")
        include_all_jobs = _opt_bool(kw, "include_all_jobs")
        now = self._rt.now()
        owned = self._by_owner.get(target, {})
        candidates = list(owned.values()) if ids is None else [owned[i] for i in ids if i in owned]
        sessions = []
        for s in candidates:
            if s.state_at(now) == "ended":
                continue
            data = self._session_json(s, now)
            if fields is not None:
                data = {k: v for k, v in data.items() if k in fields}
            sessions.append(data)
        result: dict[str, Any] = {"sessions": sessions}
        if include_jobs or include_all_jobs:
            if self.config.adhoc_jobs_require_include_all and not include_all_jobs:
                result["jobs"] = []
            else:
                jobs = self._jobs_by_owner.get(target, [])
                result["jobs"] = [self._job_json(j, now) for j in jobs]
        return _ok(result)

    async def get_historical_session(
        self, ident: Identity, kw: dict[str, Any]
    ) -> web.StreamResponse:
        begin = _parse_iso("filter_time_begin", kw.get("filter_time_begin"))
        end = _parse_iso("filter_time_end", kw.get("filter_time_end"))
        include_jobs = _opt_bool(kw, "include_jobs")
        all_users = _opt_bool(kw, "include_all_users") and ident.is_admin
        now = self._rt.now()
        owners = list(self._by_owner) if all_users else [ident.username]
        sessions = []
        for owner in owners:
            for s in self._by_owner.get(owner, {}).values():
                ended = s.ended_at(now)
                if ended is None:
                    continue
                ended_wall = self._rt.wall(ended)
                if (begin is not None and ended_wall < begin) or (
                    end is not None and ended_wall > end
                ):
                    continue
                sessions.append(self._historical_json(s, now))
        result: dict[str, Any] = {"sessions": sessions}
        if include_jobs:
            result["jobs"] = [
                self._job_json(j, now)
                for owner in owners
                for j in self._jobs_by_owner.get(owner, [])
                if j.end_time <= now
            ]
        return _ok(result)

    async def resume_session(self, ident: Identity, kw: dict[str, Any]) -> web.StreamResponse:
        target = self._target(ident, kw, "username")
        self._check_launch(ident, target)
        sid = _req_str(kw, "session_id")
        lp = kw.get("launch_parameters")
        if lp is not None and not isinstance(lp, dict):
            raise RpcError(400, "parameter 'launch_parameters' must be an object")
        record = self._by_owner.get(target, {}).get(sid)
        now = self._rt.now()
        if record is None or record.state_at(now) == "ended":
            raise RpcError(404, "session not found")
        state = record.state_at(now)
        if state != "suspended":
            raise RpcError(400, f"session {sid} is not suspended (activity_state is {state})")
        record.schedule(
            now, [("resuming", self._draw(self.config.session_resume_delay)), ("running", 0.0)]
        )
        return _ok({"url": record.url, "id": record.id, "project_id": record.project_id})

    async def stop_session(self, ident: Identity, kw: dict[str, Any]) -> web.StreamResponse:
        ids = _id_list(kw.get("session_ids"), "session_ids")
        if not ids:
            raise RpcError(400, "parameter 'session_ids' is required")
        force = _opt_bool(kw, "force_quit")
        suspend = _opt_bool(kw, "suspend_session") or _opt_bool(kw, "suspend")
        now = self._rt.now()
        records = []
        for sid in ids:
            record = self.sessions.get(sid)
            if record is None or record.state_at(now) == "ended":
                raise RpcError(404, f"session not found: {sid}")
            if record.owner != ident.username and not ident.is_admin:
                raise _denied()
            records.append(record)
        for record in records:
            self._stop_one(record, now, force=force, suspend=suspend)
        return _ok({})

    def _stop_one(self, record: SessionRecord, now: float, *, force: bool, suspend: bool) -> None:
        cfg = self.config
        state = record.state_at(now)
        heading = record.final_state()
        if force:
            if state in ("killed", "ended"):
                return
            record.stop_requested = now
            if state == "failed":
                record.schedule(now, [("ended", 0.0)])
                return
            record.end_status, record.end_exit_code = "Killed", _EXIT_KILL
            record.schedule(now, [("killed", self._draw(cfg.session_kill_delay)), ("ended", 0.0)])
            return
        if heading == "ended":
            return  # already on its way out
        if state in ("failed", "suspended"):
            record.stop_requested = now
            if state == "suspended":
                record.end_status, record.end_exit_code = "Finished", 0
            record.schedule(now, [("ended", 0.0)])
            return
        if suspend and record.workbench in cfg.suspendable_workbenches and state == "running":
            record.schedule(
                now, [("suspending", self._draw(cfg.session_suspend_delay)), ("suspended", 0.0)]
            )
            return
        record.stop_requested = now
        record.end_status, record.end_exit_code = "Finished", _EXIT_TERM
        record.schedule(
            now,
            [
                ("shutting_down", self._draw(cfg.session_stop_delay)),
                ("quitting", self._draw(cfg.session_stop_delay)),
                ("ended", 0.0),
            ],
        )

    # -- jobs ----------------------------------------------------------------------------
    def _job_json(self, j: JobRecord, now: float) -> dict[str, Any]:
        wall = self._rt.wall
        status = j.status_at(now)
        spec = j.spec
        last = j.submitted
        if j.ran() and j.running_at <= now:
            last = j.running_at
        if j.end_time <= now:
            last = j.end_time
        data: dict[str, Any] = {
            "id": j.id,
            "cluster": spec["cluster"],
            "name": spec["name"],
            "user": j.owner,
            "queues": spec["queues"],
            "workingDirectory": spec["workingDirectory"],
        }
        if spec["image"]:
            data["container"] = {"image": spec["image"]}
        data.update(
            {
                "host": "localhost",
                "status": status,
                "pid": j.pid,
                "command": spec["command"],
                "exe": spec["exe"],
                "stdoutFile": "",
                "stderrFile": "",
                "stdin": "",
                "args": spec["args"],
                "environment": spec["environment"],
                "placementConstraints": spec["placementConstraints"],
                "lastUpdateTime": _iso_z(wall(last)),
                "submissionTime": _iso_z(wall(j.submitted)),
                "exposedPorts": [],
                "mounts": [],
                "config": spec["config"],
                "resourceLimits": spec["resourceLimits"],
                "tags": spec["tags"],
                "metadata": spec["metadata"],
                "resourceProfile": spec["resourceProfile"],
            }
        )
        if j.ran() and j.running_at <= now:
            data["runningTimestamp"] = _iso_z(wall(j.running_at))
        if j.end_time <= now:
            data["terminatedTime"] = _iso_z(wall(j.end_time))
            code = j.final_exit_code
            if code is not None:
                data["exitCode"] = code
            if status == "Failed":
                data["statusMessage"] = "The job failed (emulated failure requested by --emu-fail)"
            elif status in ("Killed", "Canceled"):
                data["statusMessage"] = "The job was stopped by a stop request"
        return data

    def _launch(self, ident: Identity, raw: Any, key: str, *, audited: bool) -> JobRecord:
        if not isinstance(raw, dict):
            raise RpcError(400, f"parameter {key!r} is required and must be an object")
        target = _opt_str(raw, "user") or ident.username
        self._check_launch(ident, target)
        name = _req_str(raw, "name")
        exe = _opt_str(raw, "exe") or ""
        command = _opt_str(raw, "command") or ""
        if not exe and not command:
            raise RpcError(400, f"{key}.exe or {key}.command is required")
        args = _opt_list(raw, "args", f"{key}.")
        if not all(isinstance(a, str) for a in args):
            raise RpcError(400, f"{key}.args must be an array of strings")
        container = raw.get("container")
        image = _first(raw, "container_image", "containerImage")
        if isinstance(container, dict):
            image = image or container.get("image")
        elif isinstance(container, str):
            image = image or container
        profile = _first(raw, "resource_profile", "resourceProfile")
        cluster, image = self._validate_placement(
            raw.get("cluster", "Local"), image, profile, f"{key}."
        )
        opts = _emu_options(args)
        cfg = self.config
        spec: dict[str, Any] = {
            "name": name,
            "cluster": cluster,
            "image": image,
            "exe": exe,
            "command": command,
            "args": list(args),
            "workingDirectory": _first(raw, "working_directory", "workingDirectory") or "",
            "queues": _opt_list(raw, "queues", f"{key}."),
            "environment": _opt_list(raw, "environment", f"{key}."),
            "tags": _opt_list(raw, "tags", f"{key}."),
            "placementConstraints": _first(raw, "placement_constraints", "placementConstraints")
            or [],
            "resourceLimits": _first(raw, "resource_limits", "resourceLimits") or [],
            "config": _opt_list(raw, "config", f"{key}."),
            "metadata": raw.get("metadata") if isinstance(raw.get("metadata"), dict) else {},
            "resourceProfile": profile or "custom",
        }
        chunks = int(opts.get("chunks", cfg.job_chunk_count))
        interval = float(opts.get("interval", cfg.job_chunk_interval))
        now = self._rt.now()
        pending = float(opts["pending"]) if "pending" in opts else self._draw(cfg.job_pending_delay)
        running_at = now + pending
        if "duration" in opts:
            duration = float(opts["duration"])
            interval = duration / chunks if chunks else 0.0
        else:
            duration = chunks * interval
        table = self.audited_jobs if audited else self.jobs
        job_id = self._new_id(self._job_ids, 64)
        self._job_ids.add(job_id)
        record = JobRecord(
            id=job_id,
            launcher_id=self._new_id(self._job_ids, 64) if audited else job_id,
            owner=target,
            audited=audited,
            spec=spec,
            submitted=now,
            running_at=running_at,
            chunk_count=chunks,
            interval=interval,
            natural_end=running_at + duration,
            chunk_bytes=int(opts.get("bytes", cfg.job_chunk_bytes)),
            stderr_every=int(opts.get("stderr-every", cfg.job_stderr_every)),
            exit_code=int(opts.get("exit", cfg.job_exit_code)),
            fail=bool(opts.get("fail", False)),
            pid=self._ids.randint(1000, 999_999),
            seed=self._rt.seed,
            runtime=self._rt,
            split_lines=bool(opts.get("split-lines", False)),
            writes=collections.deque(maxlen=cfg.job_write_log_size),
        )
        table[job_id] = record
        self._jobs_by_owner.setdefault(target, []).append(record)
        return record

    def _launched(self, record: JobRecord, key: str) -> web.Response:
        body = {key: self._job_json(record, self._rt.now())}
        if self.config.job_result_nesting == "double":
            return _ok({"result": body})
        return _ok(body)

    async def launch_job(self, ident: Identity, kw: dict[str, Any]) -> web.StreamResponse:
        _opt_bool(kw, "apply_config_settings", True)
        record = self._launch(ident, kw.get("job"), "job", audited=False)
        return self._launched(record, "job")

    async def launch_audited_job(self, ident: Identity, kw: dict[str, Any]) -> web.StreamResponse:
        _opt_bool(kw, "apply_config_settings", True)
        raw = kw.get("audited_job", kw.get("job"))
        record = self._launch(ident, raw, "audited_job", audited=True)
        return self._launched(record, "audited_job")

    def _find_job(
        self, ident: Identity, kw: Mapping[str, Any], table: Mapping[str, JobRecord], *names: str
    ) -> JobRecord:
        job_id = None
        for name in names:
            job_id = _opt_str(kw, name)
            if job_id is not None:
                break
        if job_id is None:
            raise RpcError(400, f"parameter {names[0]!r} is required")
        target = self._target(ident, kw, "user")
        self._check_read(ident, target)
        record = table.get(job_id)
        if record is None or record.owner != target:
            raise RpcError(404, "job not found")
        return record

    async def _stream(
        self,
        request: web.Request,
        job: JobRecord,
        key: str,
        extra: Mapping[str, str],
    ) -> web.StreamResponse:
        response = web.StreamResponse(status=200)
        response.content_type = "application/json"
        response.enable_chunked_encoding()
        await response.prepare(request)
        seq = job.streams_opened
        job.streams_opened += 1
        rt = self._rt
        index = 0

        def written(nbytes: int, monotonic: float) -> None:
            job.record_write(seq, index, nbytes, monotonic)

        with rt.open_stream(request, response, key, self._encode) as sink:
            while True:
                now = rt.now()
                available = job.chunks_at(now)
                while index < available:
                    kind, text = job.chunk(index)
                    value = {"jobId": job.launcher_id, "outputType": kind, "output": text, **extra}
                    if not await sink.send(value, written=written):
                        return response
                    index += 1
                if now >= job.end_time and index >= job.total_chunks:
                    return response
                wake = job.end_time
                if index < job.total_chunks:
                    wake = min(wake, job.chunk_time(index))
                await rt.sleep(wake - rt.now(), job.signal)
                if rt.closing:
                    sink.abort()
                    return response

    async def get_job_output(
        self, ident: Identity, kw: dict[str, Any], request: web.Request
    ) -> web.StreamResponse:
        job = self._find_job(ident, kw, self.jobs, "job_id")
        return await self._stream(request, job, f"{API}.get_job_output", {})

    async def get_audited_job_output(
        self, ident: Identity, kw: dict[str, Any], request: web.Request
    ) -> web.StreamResponse:
        job = self._find_job(ident, kw, self.audited_jobs, "audited_job_id", "job_id")
        if job.end_time <= self._rt.now():
            output = {
                "jobId": job.id,
                "outputType": "stdout",
                "output": job.full_output(),
                "outputSource": "audit_details_store",
            }
            return _ok({"audited_job_output": output})
        extra = {"outputSource": "job_launcher"}
        return await self._stream(request, job, f"{API}.get_audited_job_output", extra)

    async def get_audited_job_details(
        self, ident: Identity, kw: dict[str, Any]
    ) -> web.StreamResponse:
        job = self._find_job(ident, kw, self.audited_jobs, "audited_job_id", "job_id")
        if job.end_time > self._rt.now():
            raise RpcError(
                400, "audit details are only available for jobs that have completed running"
            )
        checksum = hashlib.sha256(job.full_output().encode()).hexdigest()[:10]
        return _ok(
            {
                "audited_details": {
                    "script_output": {
                        "checksum": checksum,
                        "user_defined_data": [
                            {
                                "file_name": "user-defined-1.txt",
                                "file_contents": f"user-defined data of job {job.id}",
                            }
                        ],
                    },
                    "environment": {
                        "summary": f"{job.spec['cluster']} session of {job.owner}, "
                        f"exe {job.spec['exe'] or job.spec['command']}"
                    },
                }
            }
        )

    def _stop_job(
        self, ident: Identity, kw: Mapping[str, Any], table: Mapping[str, JobRecord], *names: str
    ) -> web.Response:
        job_id = None
        for name in names:
            job_id = _opt_str(kw, name)
            if job_id is not None:
                break
        if job_id is None:
            raise RpcError(400, f"parameter {names[0]!r} is required")
        force = _opt_bool(kw, "force_quit")
        record = table.get(job_id)
        if record is None:
            raise RpcError(404, "job not found")
        if record.owner != ident.username and not ident.is_admin:
            raise _denied()
        record.stop(self._rt.now(), force=force, grace=self.config.job_stop_delay)
        return _ok({})

    async def stop_job(self, ident: Identity, kw: dict[str, Any]) -> web.StreamResponse:
        return self._stop_job(ident, kw, self.jobs, "job_id")

    async def stop_audited_job(self, ident: Identity, kw: dict[str, Any]) -> web.StreamResponse:
        return self._stop_job(ident, kw, self.audited_jobs, "audited_job_id", "job_id")

    # -- server-wide ---------------------------------------------------------------------
    async def version(self, ident: Identity, kw: dict[str, Any]) -> web.StreamResponse:
        # The one method whose body is not wrapped in "result".
        return web.json_response(
            {"version": dict(self.config.version), "features": list(self.config.features)}
        )

    async def get_users(self, ident: Identity, kw: dict[str, Any]) -> web.StreamResponse:
        if not ident.is_admin:
            raise _denied()
        return _ok(list(self._users.values()))

    async def get_compute_envs(self, ident: Identity, kw: dict[str, Any]) -> web.StreamResponse:
        target = self._target(ident, kw, "user")
        self._check_read(ident, target)
        return _ok(_compute_envs())

    # -- dispatch ------------------------------------------------------------------------
    async def _read_kwparams(self, request: web.Request, method: str) -> dict[str, Any]:
        if request.method != "POST":
            return {}
        raw = await request.read()
        if not raw.strip():
            return {}
        try:
            body = json.loads(raw)
        except (UnicodeDecodeError, ValueError):
            raise RpcError(400, "invalid request: the body is not valid JSON") from None
        if not isinstance(body, dict):
            raise RpcError(400, "invalid request: the body must be a JSON object")
        if body.get("method") != method:
            raise RpcError(
                400,
                f"invalid request: body method {body.get('method')!r} does not match "
                f"the URL method {method!r}",
            )
        kwparams = body.get("kwparams", {})
        if kwparams is None:
            return {}
        if not isinstance(kwparams, dict):
            raise RpcError(400, "invalid request: 'kwparams' must be a JSON object")
        return kwparams

    async def handle(self, method: str, request: web.Request) -> web.StreamResponse:
        """Answer one API request (auth, body validation, then the method)."""
        ident = self.authenticate(request)
        if ident is None:
            return _unauthorized()
        if ident.via_cookie and method in self.config.cookie_denied_methods:
            return _unauthorized()
        try:
            kw = await self._read_kwparams(request, method)
            if method in ("get_job_output", "get_audited_job_output"):
                streamer = getattr(self, method)
                response: web.StreamResponse = await streamer(ident, kw, request)
                return response
            handler = getattr(self, method)
            response = await handler(ident, kw)
            return response
        except RpcError as exc:
            return web.json_response({"error": {"code": exc.code, "message": exc.message}})
