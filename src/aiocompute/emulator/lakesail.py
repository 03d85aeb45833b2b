"""The emulated LakeSail platform workloads API, served under ``/lakesail/api/v1``.

It follows ``reference/lakesail-workloads-api.txt`` and ``API-NOTES.md``, quirks included:
``Authorization: Bearer <token>`` for user tokens and service-account keys alike; list
responses carry references in ``items`` and the objects in ``included.sessions`` (with the
sessions' ``members``, ``serviceAccounts``, ``workloads`` and ``workloadConfigs``), joined by
``id``; ``marker`` is opaque and absent on the last page; ``limit`` is 0..100 (default 100);
ids match ``^[A-Z0-9]{1,20}$``; the list filters are spelled ``teamId`` and ``endpoint_type``;
workload configs live under ``/workloads/compute-configs`` and anonymous (inline) ones are
left out of their list; ``relaunch`` answers a brand-new session for a closed or failed one
and refuses any other (409); ``DELETE`` answers 204 with no body.

Where the reference is silent the emulator picks something plausible: errors are JSON in the
shape :attr:`LakeSailEmulatorConfig.error_style` names (default ``{"code", "message"}``);
creates answer 201; markers are base64url JSON naming the last session seen and the filters,
so a page never repeats or skips a session when new ones are created meanwhile (sessions are
listed newest first, workload configs oldest first), and a marker used with other filters
is refused (400).

State is computed lazily from timestamps: a session is a schedule of phases
(``pending`` -> ``active`` after ``provision_delay`` -> ``idle`` after ``idle_delay``), so
thousands cost no tasks. ``emu.lakesail.sessions[sid].transitions`` lists the states entered
so far as :class:`~aiocompute.emulator.Transition` ``(state, wall_time, monotonic)``.

Steering from the client side, through the session ``name``:

- containing ``emu-fail``: provisioning fails; the session goes ``pending`` -> ``failed``
  with a ``statusMessage`` and ``terminationReason`` ``"provisioning_failed"``.
- containing ``emu-stuck``: the session stays ``pending`` (for wait timeouts).

A session's ``config`` is honoured: ``idleTimeoutSeconds`` (> 0) replaces ``idle_delay``,
``idleCloseDelaySeconds`` (> 0) closes it that long after it went idle
(``terminationReason`` ``"idle_timeout"``), ``maxDurationSeconds`` (> 0) closes it that long
after creation (``"max_duration"``, announced in ``timeoutAt``).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
from collections.abc import Callable, Mapping
from typing import Any

from aiohttp import web

from ._lakesail_state import (
    _DEFAULT_SETTINGS,
    _ENDPOINT_TYPES,
    _ID,
    _STATUSES,
    _TERMINAL,
    ApiError,
    LakeSailSessionRecord,
    LakeSailStore,
    Principal,
    WorkloadConfigRecord,
    _bad,
    _iso,
    _not_found,
)
from ._runtime import phase_at

__all__ = [
    "API",
    "API_ROOT",
    "OPERATIONS",
    "PREFIX",
    "LakeSailSessionRecord",
    "LakeSailState",
    "Principal",
    "WorkloadConfigRecord",
    "create_app",
]

#: API name, the first part of every stats / fault key (``"lakesail.list_sessions"``).
API = "lakesail"
#: Where the API is mounted on the emulator.
PREFIX = "/lakesail"
#: The API's base URL under the prefix (the platform's ``https://platform.lakesail.com/api/v1``).
API_ROOT = "/api/v1"

_SESSIONS = "/workloads/sessions"
_CONFIGS = "/workloads/compute-configs"

#: Every operation of the reference: name -> (HTTP method, path under the API root).
OPERATIONS: Mapping[str, tuple[str, str]] = {
    "list_sessions": ("GET", _SESSIONS),
    "create_session": ("POST", _SESSIONS),
    "get_session": ("GET", _SESSIONS + "/{session}"),
    "close_session": ("DELETE", _SESSIONS + "/{session}"),
    "issue_session_token": ("POST", _SESSIONS + "/{session}/token"),
    "relaunch_session": ("POST", _SESSIONS + "/{session}/relaunch"),
    "list_workload_configs": ("GET", _CONFIGS),
    "create_workload_config": ("POST", _CONFIGS),
    "get_workload_config": ("GET", _CONFIGS + "/{workloadConfig}"),
}

_MAX_LIMIT = 100


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class LakeSailState(LakeSailStore):
    """The simulated LakeSail platform: principals, sessions, workloads, workload configs.

    Attributes:
        config: the :class:`~aiocompute.emulator.LakeSailEmulatorConfig` in force.
        sessions: every session ever created, by id (closed ones included).
        workload_configs: every workload config, named and anonymous, by id.
    """

    def authenticate(self, request: web.Request) -> Principal | None:
        """The caller from its bearer token (user token or service-account key), or None."""
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return None
        found = self.config.tokens.get(token.strip())
        return None if found is None else self.principals[found[0]]

    # -- JSON ----------------------------------------------------------------------------
    def _session_json(
        self, s: LakeSailSessionRecord, now: float, who: Principal | None
    ) -> dict[str, Any]:
        wall = self._rt.wall
        current = phase_at(s.phases, now)
        state = current.state
        body: dict[str, Any] = {
            "id": s.id,
            "endpointType": s.endpoint_type,
            "name": s.name,
            "status": state,
            "workloadId": s.workload_id,
            "teamId": s.team_id,
        }
        if s.member_id:
            body["memberId"] = s.member_id
        if s.service_account_id:
            body["serviceAccountId"] = s.service_account_id
        if s.notebook_id:
            body["notebookId"] = s.notebook_id
        reason = s.reason(state)
        if reason is not None:
            body["terminationReason"], body["statusMessage"] = reason
        else:
            body["statusMessage"] = _STATUS_MESSAGES.get(state, "")
        if who is not None and who.id == s.owner and state in ("active", "idle"):
            body["connectionInfo"] = {
                "proxyAuthUrl": f"https://proxy.lakesail.example/auth/{s.id}",
                "grpcEndpoint": f"sc://{s.workload_id.lower()}.sessions.lakesail.example:443",
            }
        last_active = s.entered("active", now)
        body["lastActivityAt"] = _iso(wall(last_active if last_active is not None else s.created))
        idle = s.entered("idle", now)
        if state == "idle" and idle is not None:
            body["idleSince"] = _iso(wall(idle))
        closed = s.entered("closed", now)
        if state == "closed" and closed is not None:
            body["closedAt"] = _iso(wall(closed))
        max_duration = s.config.get("maxDurationSeconds")
        if isinstance(max_duration, int) and max_duration > 0:
            body["timeoutAt"] = _iso(wall(s.created + max_duration))
        body["config"] = dict(s.config)
        body["metadata"] = dict(s.metadata)
        body["createdAt"] = _iso(wall(s.created))
        body["updatedAt"] = _iso(current.wall_time)
        return body

    def _ref_json(self, s: LakeSailSessionRecord) -> dict[str, Any]:
        ref: dict[str, Any] = {"id": s.id, "computeInstanceId": s.workload_id}
        if s.member_id:
            ref["memberId"] = s.member_id
        if s.service_account_id:
            ref["serviceAccountId"] = s.service_account_id
        return ref

    def _member_json(self, member: Principal) -> dict[str, Any]:
        born = _iso(self._rt.wall(self._born))
        name = member.id[1:].lower() if member.id.startswith("M") else member.id.lower()
        return {
            "id": member.id,
            "organizationId": self.config.organization_id,
            "userId": "U" + member.id[:19],
            "name": name.capitalize(),
            "email": f"{name}@example.com",
            "preferences": {},
            "lastLoginAt": born,
            "lastActiveAt": born,
            "isEnabled": True,
            "accountType": "managed",
            "createdAt": born,
            "createdBy": member.id,
            "updatedAt": born,
            "updatedBy": member.id,
        }

    def _service_account_json(self, account: Principal) -> dict[str, Any]:
        born = _iso(self._rt.wall(self._born))
        return {
            "id": account.id,
            "username": f"{account.id.lower()}-bot",
            "description": "emulated service account",
            "createdAt": born,
            "createdBy": account.id,
            "updatedAt": born,
            "updatedBy": account.id,
        }

    def _workload_json(self, s: LakeSailSessionRecord, now: float) -> dict[str, Any]:
        wall = self._rt.wall
        state = s.state_at(now)
        infra = {
            "pending": "provisioning",
            "active": "running",
            "idle": "running",
            "closed": "terminated",
            "failed": "failed",
        }.get(state, "unknown")
        body: dict[str, Any] = {
            "id": s.workload_id,
            "workloadConfigId": s.workload_config_id,
            "infraStatus": infra,
            "shutdownPolicy": "on_session_close",
            "endpoints": {},
            "statusMessage": infra,
            "createdAt": _iso(wall(s.created)),
            "createdBy": s.owner,
            "updatedAt": _iso(phase_at(s.phases, now).wall_time),
            "updatedBy": s.owner,
        }
        provisioned = s.entered("active", now)
        if provisioned is not None:
            body["provisionedAt"] = _iso(wall(provisioned))
            body["endpoints"] = {
                "spark_connect": f"sc://{s.workload_id.lower()}.sessions.lakesail.example:443"
            }
        last_active = s.entered("active", now)
        body["lastActivityAt"] = _iso(wall(last_active if last_active is not None else s.created))
        closed = s.entered("closed", now)
        if state == "closed" and closed is not None:
            body["cleanedAt"] = _iso(wall(closed))
        return body

    def _config_json(self, c: WorkloadConfigRecord) -> dict[str, Any]:
        stamp = _iso(self._rt.wall(c.created))
        body: dict[str, Any] = {"id": c.id}
        if c.name is not None:
            body["name"] = c.name
        body["workloadType"] = c.workload_type
        if c.cluster_id is not None:
            body["clusterId"] = c.cluster_id
        body.update(
            {
                "teamId": c.team_id,
                "config": json.loads(json.dumps(c.config)),
                "endpointLimits": dict(c.endpoint_limits),
                "createdAt": stamp,
                "createdBy": c.created_by,
                "updatedAt": stamp,
                "updatedBy": c.created_by,
            }
        )
        return body

    # -- pagination ----------------------------------------------------------------------
    def _marker(self, after: int, scope: str) -> str:
        return _b64(json.dumps({"after": after, "scope": scope}, separators=(",", ":")).encode())

    def _read_marker(self, marker: str | None, scope: str) -> int | None:
        if marker is None:
            return None
        try:
            data = json.loads(_unb64(marker))
            after = data["after"]
            marker_scope = data["scope"]
        except (ValueError, binascii.Error, KeyError, TypeError):
            raise _bad("invalid marker") from None
        if not isinstance(after, int) or isinstance(after, bool):
            raise _bad("invalid marker")
        if marker_scope != scope:
            raise _bad("the marker belongs to a list with other filters")
        return after

    def _page(
        self,
        query: Mapping[str, str],
        rows: list[Any],
        scope: str,
        *,
        newest_first: bool,
    ) -> tuple[list[Any], str | None, int]:
        """Cut one page out of ``rows`` (records with ``seq``) from the query's marker."""
        limit = _limit(query.get("limit"))
        after = self._read_marker(query.get("marker") or None, scope)
        rows = sorted(rows, key=lambda r: r.seq, reverse=newest_first)
        total = len(rows)
        if after is not None:
            rows = [r for r in rows if (r.seq < after if newest_first else r.seq > after)]
        page = rows[:limit]
        more = len(rows) > limit and limit > 0
        return page, (self._marker(page[-1].seq, scope) if more else None), total

    # -- sessions ------------------------------------------------------------------------
    async def list_sessions(self, who: Principal, request: web.Request) -> web.Response:
        """``GET /workloads/sessions``: one page, items joined to ``included`` by id."""
        query = request.query
        team = _opt_id_param(query, "teamId")
        endpoint_type = _choice_param(query, "endpoint_type", _ENDPOINT_TYPES)
        status = _choice_param(query, "status", _STATUSES)
        now = self._rt.now()
        rows = [
            s
            for s in self.sessions.values()
            if self._can_see(who, s)
            and (team is None or s.team_id == team)
            and (endpoint_type is None or s.endpoint_type == endpoint_type)
            and (status is None or s.state_at(now) == status)
        ]
        scope = _scope("sessions", who.id, team, endpoint_type, status)
        page, marker, total = self._page(query, rows, scope, newest_first=True)
        members = {s.member_id for s in page if s.member_id}
        accounts = {s.service_account_id for s in page if s.service_account_id}
        configs = dict.fromkeys(s.workload_config_id for s in page)
        body: dict[str, Any] = {
            "total": total,
            "items": [self._ref_json(s) for s in page],
            "included": {
                "sessions": [self._session_json(s, now, who) for s in page],
                "members": [
                    self._member_json(self.principals[m])
                    for m in sorted(members)
                    if m in self.principals
                ],
                "serviceAccounts": [
                    self._service_account_json(self.principals[a])
                    for a in sorted(accounts)
                    if a in self.principals
                ],
                "workloads": [self._workload_json(s, now) for s in page],
                "workloadConfigs": [
                    self._config_json(self.workload_configs[c])
                    for c in configs
                    if c in self.workload_configs
                ],
            },
        }
        if marker is not None:
            body["marker"] = marker
        return web.json_response(body)

    async def create_session(self, who: Principal, request: web.Request) -> web.Response:
        """``POST /workloads/sessions``: a new ``pending`` session (201)."""
        body = await _json_body(request)
        endpoint_type = _body_choice(body, "endpointType", _ENDPOINT_TYPES) or "spark_connect"
        name = _body_str(body, "name")
        team_id = _body_id(body, "teamId") or self.config.team_id
        if team_id != self.config.team_id:
            raise _bad(f"unknown team {team_id}")
        owner = self._acting_for(who, body)
        notebook_id = _body_id(body, "notebookId")
        config = _session_config(body.get("config"))
        metadata = _metadata(body.get("metadata"))
        allow_shared = body.get("allowShared", False)
        if not isinstance(allow_shared, bool):
            raise _bad("allowShared must be a boolean")
        config_id = _body_id(body, "workloadConfigId")
        if config_id is not None:
            if config_id not in self.workload_configs:
                raise _bad(f"workload config {config_id} does not exist")
        else:
            # "Resolves or creates a compute config": an anonymous one, left out of lists.
            config_id = self._new_config(
                name=None,
                workload_type="sail",
                cluster_id=None,
                team_id=team_id,
                settings=_DEFAULT_SETTINGS,
                endpoint_limits={},
                created_by=owner.id,
                anonymous=True,
            ).id
        record = self._spawn(
            name=name or "session",
            endpoint_type=endpoint_type,
            team_id=team_id,
            owner=owner,
            notebook_id=notebook_id,
            workload_config_id=config_id,
            config=config,
            metadata=metadata,
            allow_shared=allow_shared,
        )
        return web.json_response(self._session_json(record, self._rt.now(), who), status=201)

    def _acting_for(self, who: Principal, body: Mapping[str, Any]) -> Principal:
        """The session's owner: the caller, or whom an org admin names."""
        member = _body_id(body, "memberId")
        account = _body_id(body, "serviceAccountId")
        if member and account:
            raise _bad("give memberId or serviceAccountId, not both")
        named = member or account
        if named is None or named == who.id:
            return who
        if not who.is_org_admin:
            raise ApiError(403, "forbidden", "only an org admin may create sessions for others")
        target = self.principals.get(named)
        if target is None or target.is_service_account != (account is not None):
            raise _bad(f"unknown {'service account' if account else 'member'} {named}")
        return target

    async def get_session(self, who: Principal, request: web.Request) -> web.Response:
        """``GET /workloads/sessions/{session}``: the session (``connectionInfo`` for its owner)."""
        record = self._session(who, request.match_info["session"])
        return web.json_response(self._session_json(record, self._rt.now(), who))

    async def close_session(self, who: Principal, request: web.Request) -> web.Response:
        """``DELETE /workloads/sessions/{session}``: closed now (204, also when already final)."""
        record = self._session(who, request.match_info["session"])
        if record.owner != who.id and not who.is_team_admin:
            raise ApiError(403, "forbidden", "only the owner or an admin may close this session")
        now = self._rt.now()
        if record.state_at(now) not in _TERMINAL:
            record.reasons["closed"] = ("user_requested", "closed by request")
            record.schedule(now, [("closed", now)])
        return web.Response(status=204)

    async def issue_session_token(self, who: Principal, request: web.Request) -> web.Response:
        """``POST /workloads/sessions/{session}/token``: a signed proxy JWT."""
        record = self._session(who, request.match_info["session"])
        if record.owner != who.id and not who.is_org_admin:
            raise ApiError(403, "forbidden", "only the session owner may issue a proxy token")
        body = await _json_body(request, optional=True)
        duration = body.get("durationSeconds", self.config.token_duration_seconds)
        limit = self.config.max_token_duration_seconds
        if isinstance(duration, bool) or not isinstance(duration, int) or duration <= 0:
            raise _bad("durationSeconds must be a positive integer")
        if duration > limit:
            raise _bad(f"durationSeconds must be at most {limit}")
        now = self._rt.now()
        state = record.state_at(now)
        if state in _TERMINAL:
            raise ApiError(409, "conflict", f"session {record.id} is {state}")
        expires = self._rt.wall(now) + duration
        record.tokens_issued += 1
        token = self._jwt(
            {
                "sub": who.id,
                "sid": record.id,
                "target": record.workload_id,
                "aud": "lakesail-session-proxy",
                "exp": int(expires),
                "n": record.tokens_issued,
            }
        )
        return web.json_response({"token": token, "expiresAt": _iso(expires)})

    def _jwt(self, claims: Mapping[str, Any]) -> str:
        head = _b64(json.dumps({"alg": "HS256", "typ": "JWT"}, separators=(",", ":")).encode())
        body = _b64(json.dumps(dict(claims), separators=(",", ":")).encode())
        signature = hmac.new(self._key, f"{head}.{body}".encode(), hashlib.sha256).digest()
        return f"{head}.{body}.{_b64(signature)}"

    async def relaunch_session(self, who: Principal, request: web.Request) -> web.Response:
        """``POST /workloads/sessions/{session}/relaunch``: a new session, or 409."""
        old = self._session(who, request.match_info["session"])
        if old.owner != who.id:
            raise ApiError(403, "forbidden", "only the session owner may relaunch it")
        state = old.state
        if state not in _TERMINAL:
            raise ApiError(
                409,
                "conflict",
                f"session {old.id} is {state}: only closed or failed sessions can be relaunched",
            )
        owner = self.principals.get(old.owner, who)
        record = self._spawn(
            name=old.name,
            endpoint_type=old.endpoint_type,
            team_id=old.team_id,
            owner=owner,
            notebook_id=old.notebook_id,
            workload_config_id=old.workload_config_id,
            config=dict(old.config),
            metadata=dict(old.metadata),
            allow_shared=old.allow_shared,
            relaunched_from=old.id,
        )
        return web.json_response(self._session_json(record, self._rt.now(), who), status=201)

    # -- workload configs ----------------------------------------------------------------
    def _config_visible(self, who: Principal, c: WorkloadConfigRecord) -> bool:
        return who.is_org_admin or c.team_id == self.config.team_id

    async def list_workload_configs(self, who: Principal, request: web.Request) -> web.Response:
        """``GET /workloads/compute-configs``: named configs, oldest first."""
        query = request.query
        team = _opt_id_param(query, "teamId")
        rows = [
            c
            for c in self.workload_configs.values()
            if not c.anonymous
            and self._config_visible(who, c)
            and (team is None or c.team_id == team)
        ]
        scope = _scope("configs", who.id, team)
        page, marker, _total = self._page(query, rows, scope, newest_first=False)
        body: dict[str, Any] = {"items": [self._config_json(c) for c in page]}
        if marker is not None:
            body["marker"] = marker
        return web.json_response(body)

    async def create_workload_config(self, who: Principal, request: web.Request) -> web.Response:
        """``POST /workloads/compute-configs``: a named config (201, 409 if taken)."""
        body = await _json_body(request)
        name = _body_str(body, "name")
        if name is None:
            raise _bad("name is required")
        if any(c.name == name and not c.anonymous for c in self.workload_configs.values()):
            raise ApiError(409, "conflict", f"a workload config named {name!r} already exists")
        team_id = _body_id(body, "teamId") or self.config.team_id
        if team_id != self.config.team_id:
            raise _bad(f"unknown team {team_id}")
        workload_type = _body_str(body, "workloadType") or "sail"
        settings = body.get("config", {})
        if not isinstance(settings, dict):
            raise _bad("config must be an object")
        limits = body.get("endpointLimits", {})
        if not isinstance(limits, dict) or not all(
            isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in limits.values()
        ):
            raise _bad("endpointLimits must map endpoint types to integers >= 0")
        record = self._new_config(
            name=name,
            workload_type=workload_type,
            cluster_id=_body_id(body, "clusterId"),
            team_id=team_id,
            settings=settings,
            endpoint_limits=limits,
            created_by=who.id,
        )
        return web.json_response(self._config_json(record), status=201)

    async def get_workload_config(self, who: Principal, request: web.Request) -> web.Response:
        """``GET /workloads/compute-configs/{workloadConfig}``: one config."""
        config_id = request.match_info["workloadConfig"]
        if _ID.fullmatch(config_id) is None:
            raise _bad(f"workload config id must match ^[A-Z0-9]{{1,20}}$: {config_id[:40]!r}")
        record = self.workload_configs.get(config_id)
        if record is None or not self._config_visible(who, record):
            raise _not_found("workload config", config_id)
        return web.json_response(self._config_json(record))

    # -- dispatch ------------------------------------------------------------------------
    def error_response(self, error: ApiError) -> web.Response:
        """An error in the configured :attr:`~LakeSailEmulatorConfig.error_style`."""
        style = self.config.error_style
        if style == "text":
            return web.Response(status=error.status, text=error.message)
        body: dict[str, Any]
        if style == "error":
            body = {"error": {"code": error.code, "message": error.message}}
        elif style == "detail":
            body = {"detail": error.message}
        else:
            body = {"code": error.code, "message": error.message}
        return web.json_response(body, status=error.status)

    async def handle(self, operation: str, request: web.Request) -> web.StreamResponse:
        """Answer one API request: authenticate, then run the operation."""
        try:
            who = self.authenticate(request)
            if who is None:
                raise ApiError(401, "unauthenticated", "missing or invalid bearer token")
            handler: Callable[[Principal, web.Request], Any] = getattr(self, operation)
            response: web.StreamResponse = await handler(who, request)
            return response
        except ApiError as exc:
            return self.error_response(exc)


# -- request parsing ---------------------------------------------------------------------------

_STATUS_MESSAGES = {
    "pending": "provisioning compute",
    "active": "running",
    "idle": "no recent activity",
    "closed": "closed",
    "failed": "failed",
}


def _scope(*parts: str | None) -> str:
    return hashlib.sha256(repr(parts).encode()).hexdigest()[:12]


def _limit(raw: str | None) -> int:
    if raw is None:
        return _MAX_LIMIT
    try:
        value = int(raw)
    except ValueError:
        raise _bad(f"limit must be an integer within 0..{_MAX_LIMIT}") from None
    if not 0 <= value <= _MAX_LIMIT:
        raise _bad(f"limit must be within 0..{_MAX_LIMIT}, got {value}")
    return value


def _opt_id_param(query: Mapping[str, str], name: str) -> str | None:
    value = query.get(name)
    if value is None:
        return None
    if _ID.fullmatch(value) is None:
        raise _bad(f"{name} must match ^[A-Z0-9]{{1,20}}$")
    return value


def _choice_param(query: Mapping[str, str], name: str, allowed: tuple[str, ...]) -> str | None:
    value = query.get(name)
    if value is None:
        return None
    if value not in allowed:
        raise _bad(f"{name} must be one of {', '.join(allowed)}")
    return value


async def _json_body(request: web.Request, *, optional: bool = False) -> dict[str, Any]:
    raw = await request.read()
    if not raw.strip():
        if optional:
            return {}
        raise _bad("a JSON body is required")
    try:
        body = json.loads(raw)
    except (UnicodeDecodeError, ValueError):
        raise _bad("the body is not valid JSON") from None
    if not isinstance(body, dict):
        raise _bad("the body must be a JSON object")
    return body


def _body_str(body: Mapping[str, Any], name: str) -> str | None:
    value = body.get(name)
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip():
        raise _bad(f"{name} must be a non-empty string")
    return value


def _body_id(body: Mapping[str, Any], name: str) -> str | None:
    value = body.get(name)
    if value is None:
        return None
    if not isinstance(value, str) or _ID.fullmatch(value) is None:
        raise _bad(f"{name} must match ^[A-Z0-9]{{1,20}}$")
    return value


def _body_choice(body: Mapping[str, Any], name: str, allowed: tuple[str, ...]) -> str | None:
    value = body.get(name)
    if value is None:
        return None
    if value not in allowed:
        raise _bad(f"{name} must be one of {', '.join(allowed)}")
    return str(value)


def _session_config(value: Any) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise _bad("config must be an object")
    for key, item in value.items():
        if isinstance(item, bool) or not isinstance(item, int) or item < 0:
            raise _bad(f"config.{key} must be an integer >= 0")
    return dict(value)


def _metadata(value: Any) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        raise _bad("metadata must map strings to strings")
    return dict(value)


def create_app(state: LakeSailState) -> web.Application:
    """The LakeSail sub-application: ``/api/v1/workloads/...`` routes named
    ``"lakesail.<operation>"``."""
    app = web.Application()
    for operation, (method, path) in OPERATIONS.items():

        async def handler(request: web.Request, _op: str = operation) -> web.StreamResponse:
            return await state.handle(_op, request)

        app.router.add_route(method, API_ROOT + path, handler, name=f"{API}.{operation}")
    return app
