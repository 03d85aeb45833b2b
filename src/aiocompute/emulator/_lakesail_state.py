"""The emulated LakeSail platform's state: principals, sessions, workload configs, schedules.

The records (:class:`LakeSailSessionRecord`, :class:`WorkloadConfigRecord`,
:class:`Principal`), the errors the API answers (:class:`ApiError`) and
:class:`LakeSailStore`, the tables and the phase schedules behind
:class:`~aiocompute.emulator.LakeSailState`. No HTTP routes or wire shapes live here: those
are in :mod:`aiocompute.emulator.lakesail`, which re-exports the records and :class:`Principal`.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
import string
from collections.abc import Iterable, Mapping
from datetime import datetime, timezone
from typing import Any

import attrs

from ._config import LakeSailEmulatorConfig
from ._runtime import Runtime, Transition, entered_by, phase_at

__all__ = [
    "ApiError",
    "LakeSailSessionRecord",
    "LakeSailStore",
    "Principal",
    "WorkloadConfigRecord",
]

_ID = re.compile(r"[A-Z0-9]{1,20}")
_STATUSES = ("pending", "active", "idle", "closed", "failed")
_TERMINAL = frozenset({"closed", "failed"})
_ENDPOINT_TYPES = ("spark_connect",)
_ID_CHARS = string.ascii_uppercase + string.digits


class ApiError(Exception):
    """An error answer: HTTP ``status``, a short ``code`` and a ``message``."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


def _bad(message: str) -> ApiError:
    return ApiError(400, "invalid_request", message)


def _not_found(kind: str, ident: str) -> ApiError:
    return ApiError(404, "not_found", f"{kind} {ident} not found")


@attrs.frozen
class Principal:
    """Who is calling: a member (user token) or a service account (service-account key)."""

    id: str
    role: str

    @property
    def is_service_account(self) -> bool:
        """A service account rather than a member."""
        return self.role == "service_account"

    @property
    def is_org_admin(self) -> bool:
        """Sees and manages everything in the organization."""
        return self.role == "org_admin"

    @property
    def is_team_admin(self) -> bool:
        """Sees and manages everything in the team (org admins too)."""
        return self.role in ("team_admin", "org_admin")


# -- time ------------------------------------------------------------------------------------


def _iso(wall: float) -> str:
    """``2025-07-23T10:11:12.345Z``."""
    stamp = datetime.fromtimestamp(wall, tz=timezone.utc).isoformat(timespec="milliseconds")
    return stamp.replace("+00:00", "Z")


# -- records ---------------------------------------------------------------------------------


@attrs.define(eq=False)
class WorkloadConfigRecord:
    """A workload config: named (listed) or anonymous (made inline for a session)."""

    id: str
    seq: int
    name: str | None
    workload_type: str
    cluster_id: str | None
    team_id: str
    config: dict[str, Any]
    endpoint_limits: dict[str, int]
    created: float
    created_by: str
    anonymous: bool = False


@attrs.define(eq=False)
class LakeSailSessionRecord:
    """One emulated session; its status is a schedule of phases evaluated at read time.

    ``transitions`` (states entered so far, with exact times) is the accessor for tests and
    benchmarks; ``state`` is the current ``status``. ``workload_id`` names its compute
    instance; ``relaunched_from`` the session it was relaunched from, if any.
    """

    id: str
    seq: int
    name: str
    endpoint_type: str
    team_id: str
    member_id: str | None
    service_account_id: str | None
    notebook_id: str | None
    workload_id: str
    workload_config_id: str
    config: dict[str, Any]
    metadata: dict[str, str]
    allow_shared: bool
    created: float
    _runtime: Runtime = attrs.field(repr=False)
    phases: list[Transition] = attrs.field(factory=list, repr=False)
    reasons: dict[str, tuple[str, str]] = attrs.field(factory=dict, repr=False)
    relaunched_from: str | None = None
    tokens_issued: int = 0

    @property
    def owner(self) -> str:
        """The member or service account that owns the session."""
        return self.member_id or self.service_account_id or ""

    @property
    def state(self) -> str:
        """The ``status`` now."""
        return self.state_at(self._runtime.now())

    def state_at(self, now: float) -> str:
        """The ``status`` at an instant of the emulator clock."""
        return phase_at(self.phases, now).state

    @property
    def transitions(self) -> list[Transition]:
        """States entered so far, oldest first, each with its wall and monotonic time."""
        return entered_by(self.phases, self._runtime.now())

    def entered(self, state: str, now: float) -> float | None:
        """When ``state`` was last entered, if it has been by ``now``."""
        found = None
        for phase in self.phases:
            if phase.state == state and phase.monotonic <= now:
                found = phase.monotonic
        return found

    def schedule(self, now: float, steps: Iterable[tuple[str, float]]) -> None:
        """Replace the future with ``steps``: each ``(state, at)`` entered at its instant."""
        self.phases = entered_by(self.phases, now)
        for state, at in steps:
            self.phases.append(Transition(state, self._runtime.wall(at), at))

    def reason(self, state: str) -> tuple[str, str] | None:
        """``(terminationReason, statusMessage)`` recorded for a final state."""
        return self.reasons.get(state)


_DEFAULT_SETTINGS: Mapping[str, Any] = {
    "sail": {
        "executionMode": "standalone",
        "compute": {
            "driver": {"instanceType": "c8g.2xlarge"},
            "worker": {"instanceType": "c8g.4xlarge", "maxNodes": 4, "capacityType": "on-demand"},
        },
        "libraries": [],
        "extraEnv": {},
    }
}


class LakeSailStore:
    """The tables of the simulated LakeSail platform and the schedules of its sessions.

    The base of :class:`~aiocompute.emulator.LakeSailState`, which adds the API operations.
    """

    def __init__(self, config: LakeSailEmulatorConfig, runtime: Runtime) -> None:
        self.config = config
        self._rt = runtime
        seed = runtime.seed
        self._ids = random.Random(f"lakesail-ids:{seed}")
        self._timing = random.Random(f"lakesail-timing:{seed}")
        self._key = hashlib.sha256(f"lakesail-proxy-key:{seed}".encode()).digest()
        self._seq = 0
        self._born = runtime.now()
        self.sessions: dict[str, LakeSailSessionRecord] = {}
        self.workload_configs: dict[str, WorkloadConfigRecord] = {}
        self._taken: set[str] = set()
        self.principals: dict[str, Principal] = {
            principal: Principal(principal, role) for principal, role in config.tokens.values()
        }
        admin = next((p.id for p in self.principals.values() if p.is_org_admin), "SYSTEM")
        self._new_config(
            name="Default Spark",
            workload_type="sail",
            cluster_id=None,
            team_id=config.team_id,
            settings=_DEFAULT_SETTINGS,
            endpoint_limits={"spark_connect": 10},
            created_by=admin,
        )

    # -- helpers -------------------------------------------------------------------------
    def _next_seq(self) -> int:
        self._seq += 1
        return self._seq

    def _new_id(self, prefix: str) -> str:
        while True:
            candidate = prefix + "".join(self._ids.choice(_ID_CHARS) for _ in range(9))
            if candidate not in self._taken:
                self._taken.add(candidate)
                return candidate

    def _draw(self, bounds: tuple[float, float]) -> float:
        low, high = bounds
        return low if low == high else self._timing.uniform(low, high)

    def _can_see(self, who: Principal, record: LakeSailSessionRecord) -> bool:
        if who.is_org_admin:
            return True
        if who.is_team_admin and record.team_id == self.config.team_id:
            return True
        return record.owner == who.id

    def _session(self, who: Principal, session_id: str) -> LakeSailSessionRecord:
        if _ID.fullmatch(session_id) is None:
            raise _bad(f"session id must match ^[A-Z0-9]{{1,20}}$: {session_id[:40]!r}")
        record = self.sessions.get(session_id)
        if record is None or not self._can_see(who, record):
            raise _not_found("session", session_id)
        return record

    # -- sessions ------------------------------------------------------------------------
    def _steps(self, record: LakeSailSessionRecord) -> list[tuple[str, float]]:
        created = record.created
        steps: list[tuple[str, float]] = [("pending", created)]
        if "emu-stuck" in record.name:
            return steps
        ready = created + self._draw(self.config.provision_delay)
        if "emu-fail" in record.name:
            record.reasons["failed"] = (
                "provisioning_failed",
                "compute instance provisioning failed (emulated: the name asks for emu-fail)",
            )
            return [*steps, ("failed", ready)]
        idle_timeout = record.config.get("idleTimeoutSeconds")
        idle_after = (
            float(idle_timeout)
            if isinstance(idle_timeout, int) and idle_timeout > 0
            else self._draw(self.config.idle_delay)
        )
        steps += [("active", ready), ("idle", ready + idle_after)]
        close_delay = record.config.get("idleCloseDelaySeconds")
        close_at: float | None = None
        if isinstance(close_delay, int) and close_delay > 0:
            close_at = ready + idle_after + close_delay
            record.reasons["closed"] = ("idle_timeout", "closed after being idle too long")
        max_duration = record.config.get("maxDurationSeconds")
        if isinstance(max_duration, int) and max_duration > 0:
            deadline = created + max_duration
            if close_at is None or deadline < close_at:
                close_at = deadline
                record.reasons["closed"] = ("max_duration", "closed at its maximum duration")
        if close_at is not None:
            steps = [step for step in steps if step[1] < close_at] + [("closed", close_at)]
        return steps

    def _spawn(
        self,
        *,
        name: str,
        endpoint_type: str,
        team_id: str,
        owner: Principal,
        notebook_id: str | None,
        workload_config_id: str,
        config: dict[str, Any],
        metadata: dict[str, str],
        allow_shared: bool,
        relaunched_from: str | None = None,
    ) -> LakeSailSessionRecord:
        now = self._rt.now()
        record = LakeSailSessionRecord(
            id=self._new_id("S"),
            seq=self._next_seq(),
            name=name,
            endpoint_type=endpoint_type,
            team_id=team_id,
            member_id=None if owner.is_service_account else owner.id,
            service_account_id=owner.id if owner.is_service_account else None,
            notebook_id=notebook_id,
            workload_id=self._new_id("W"),
            workload_config_id=workload_config_id,
            config=config,
            metadata=metadata,
            allow_shared=allow_shared,
            created=now,
            runtime=self._rt,
            relaunched_from=relaunched_from,
        )
        record.schedule(now, ((s, at) for s, at in self._steps(record)))
        self.sessions[record.id] = record
        return record

    def _new_config(
        self,
        *,
        name: str | None,
        workload_type: str,
        cluster_id: str | None,
        team_id: str,
        settings: Mapping[str, Any],
        endpoint_limits: Mapping[str, int],
        created_by: str,
        anonymous: bool = False,
    ) -> WorkloadConfigRecord:
        record = WorkloadConfigRecord(
            id=self._new_id("C"),
            seq=self._next_seq(),
            name=name,
            workload_type=workload_type,
            cluster_id=cluster_id,
            team_id=team_id,
            config=json.loads(json.dumps(dict(settings))),
            endpoint_limits=dict(endpoint_limits),
            created=self._rt.now(),
            created_by=created_by,
            anonymous=anonymous,
        )
        self.workload_configs[record.id] = record
        return record
