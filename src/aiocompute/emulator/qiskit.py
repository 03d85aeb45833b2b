"""The emulated Qiskit Runtime sessions API and its IBM Cloud IAM token endpoint, under ``/qiskit``
(jobs, ``/v1/jobs``, are served by :mod:`._qiskit_jobs` through the same app).

Layout::

    POST   /qiskit/iam/identity/token        IAM: API key -> bearer token      qiskit.iam_token
    POST   /qiskit/api/v1/sessions           create a session                  qiskit.create_session
    GET    /qiskit/api/v1/sessions/{id}      read a session                    qiskit.get_session
    PATCH  /qiskit/api/v1/sessions/{id}      {"accepting_jobs": bool} -> 204   qiskit.update_session
    DELETE /qiskit/api/v1/sessions/{id}/close                          -> 204  qiskit.close_session

It follows ``reference/qiskit-runtime-sessions-api.txt`` and ``API-NOTES.md``, quirks included:
``Authorization: Bearer <IAM token>``, ``Service-CRN`` and ``IBM-API-Version`` headers; IAM
access tokens shaped like IBM's: JWTs (``iat``, ``exp``, ``sub``; IBM's own client decodes
them to know when to refresh), signed with HMAC-SHA256 under a key of this emulator, which
checks the signature of every token it is shown; they expire after ``token_lifetime``
seconds (401 afterwards); create bodies may carry fields beyond the known four (IBM's client
sends more): they are ignored (and kept in ``record.create_body``); ``backend_name`` null
while the session is ``open``; ``elapsed_time`` null until it is closed; the extra states
``pending_inactive`` and ``pending_closed``; 204 with an empty body for PATCH and close; and
errors in both shapes: ``{"error": {"code", "message"}}`` for 401/403 (from the gateway) and
``{"errors": [{"code", "message", "more_info"}], "trace"}`` for the rest (see
:attr:`~aiocompute.emulator.QiskitEmulatorConfig.error_shape`). IAM errors use IAM's own
``{"errorCode", "errorMessage", "context"}``. What IBM's client reads besides sessions
(backends, IBM Cloud's instance look-up) is in :mod:`aiocompute.emulator._qiskit_platform`.

Session life (each delay drawn from its seeded range): ``open`` -> ``active`` after
``activate_delay``; ``active`` -> (``pending_inactive`` for ``pending_inactive_delay``, if
non-zero) -> ``inactive`` after ``interactive_ttl``; ``closed`` when ``max_ttl`` (scaled by
``ttl_scale``) has passed since the start. ``PATCH {"accepting_jobs": false}`` drains it:
an active session shows ``pending_closed``, others keep their state with
``accepting_jobs: false``; it closes after ``drain_delay``. ``DELETE .../close`` closes it at
once. Backend names steer the emulation: ``emu_stuck`` stays ``open`` forever,
``emu_offline`` goes from ``open`` to ``closed`` (state_reason says why).

``emu.qiskit.sessions[sid].transitions`` lists the states entered, with their times.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import math
import random
import re
import secrets
from collections.abc import Awaitable, Callable
from datetime import datetime, timezone
from typing import Any

import attrs
from aiohttp import web

from . import _qiskit_platform
from ._config import QiskitEmulatorConfig
from ._qiskit_jobs import ROUTES as JOB_ROUTES
from ._qiskit_jobs import QiskitJobs
from ._runtime import Runtime, Transition, entered_by, first_entered, phase_at

__all__ = [
    "API",
    "API_ROOT",
    "IAM_PATH",
    "PREFIX",
    "IssuedToken",
    "QiskitSessionRecord",
    "QiskitState",
    "create_app",
]

#: API name, the first part of every stats / fault key (``"qiskit.get_session"``).
API = "qiskit"
#: Where the API is mounted on the emulator.
PREFIX = "/qiskit"
#: The API's base URL under the prefix (the service's ``https://quantum.cloud.ibm.com/api``).
API_ROOT = "/api"
#: The IAM token endpoint, under the prefix.
IAM_PATH = "/iam/identity/token"

_GRANT = "urn:ibm:params:oauth:grant-type:apikey"
_API_VERSION = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_MORE_INFO = "https://cloud.ibm.com/apidocs/quantum-computing#error-handling"
_STEERING = ("emu_stuck", "emu_offline")


def _iso(wall: float) -> str:
    """``2025-05-01T12:00:00.123Z``."""
    stamp = datetime.fromtimestamp(wall, tz=timezone.utc)
    return stamp.strftime("%Y-%m-%dT%H:%M:%S.") + f"{stamp.microsecond // 1000:03d}Z"


class ApiError(Exception):
    """An error answer: HTTP status, the service's code and message."""

    def __init__(self, status: int, code: Any, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


@attrs.define(eq=False)
class IssuedToken:
    """An IAM access token handed out by the emulator."""

    user_id: str
    expires_at: float  # emulator clock (monotonic)
    revoked: bool = False


@attrs.define(eq=False)
class QiskitSessionRecord:
    """One emulated session; its state is a schedule of phases evaluated at read time."""

    id: str
    user_id: str
    instance: str
    backend: str
    mode: str
    max_ttl: int
    interactive_ttl: int
    created: float
    _runtime: Runtime = attrs.field(repr=False)
    phases: list[Transition] = attrs.field(factory=list, repr=False)
    reasons: dict[str, str] = attrs.field(factory=dict, repr=False)
    accepting_jobs: bool = True
    #: The create request's JSON body as received (unknown fields included).
    create_body: dict[str, Any] = attrs.field(factory=dict, repr=False)

    @property
    def state(self) -> str:
        """The ``state`` now."""
        return self.state_at(self._runtime.now())

    def state_at(self, now: float) -> str:
        """The ``state`` at an instant of the emulator clock."""
        return phase_at(self.phases, now).state

    @property
    def transitions(self) -> list[Transition]:
        """States entered so far, oldest first."""
        return entered_by(self.phases, self._runtime.now())

    def first_time(self, state: str, now: float) -> float | None:
        """When ``state`` was first entered, if it has been by ``now``."""
        found = first_entered(self.phases, state, now)
        return found.monotonic if found else None

    def schedule(self, now: float, steps: list[tuple[str, float]]) -> None:
        """Replace the future with ``steps``: each state is entered, then lasts its delay
        (``math.inf``: forever)."""
        self.phases = entered_by(self.phases, now)
        at = now
        for state, delay in steps:
            if self.phases and self.phases[-1].state == state:
                at += delay
                continue
            self.phases.append(Transition(state, self._runtime.wall(at), at))
            at += delay
            if math.isinf(at):
                break


class QiskitState:
    """The simulated Qiskit Runtime service and IAM: tokens and sessions.

    Attributes:
        config: the :class:`~aiocompute.emulator.QiskitEmulatorConfig` in force.
        sessions: every session ever created, by id.
        tokens: every IAM token issued, by token.
        api_versions: every ``IBM-API-Version`` value received (for tests).
        iam_header_names: the header names of each IAM token request, lower-cased (names
            only, never values: for tests that check what a client sends to IAM).
    """

    def __init__(self, config: QiskitEmulatorConfig, runtime: Runtime) -> None:
        self.config = config
        self._rt = runtime
        seed = runtime.seed
        self._ids = random.Random(f"qiskit-ids:{seed}")
        self._timing = random.Random(f"qiskit-timing:{seed}")
        self.sessions: dict[str, QiskitSessionRecord] = {}
        self.tokens: dict[str, IssuedToken] = {}
        self.api_versions: set[str] = set()
        self.iam_header_names: list[frozenset[str]] = []
        # The same tokens by their ``jti`` claim: what a presented token is checked against.
        self._by_jti: dict[str, IssuedToken] = {}
        # Signs the IAM tokens (HS256); new for every emulator, never shown.
        self._signing_key = secrets.token_bytes(32)
        self._key_id = f"emu-{secrets.token_hex(4)}"
        #: Jobs (``/v1/jobs``): see :mod:`aiocompute.emulator._qiskit_jobs`.
        self.jobs = QiskitJobs(self, runtime)

    # -- helpers -------------------------------------------------------------------------
    def _draw(self, bounds: tuple[float, float]) -> float:
        low, high = bounds
        return low if low == high else self._timing.uniform(low, high)

    def _hex(self, chars: int) -> str:
        return f"{self._ids.getrandbits(chars * 4):0{chars}x}"

    def revoke_tokens(self) -> int:
        """Revoke every token issued so far (their next use gets 401); returns how many."""
        count = 0
        for token in self.tokens.values():
            if not token.revoked:
                token.revoked = True
                count += 1
        return count

    def error_response(self, status: int, code: Any, message: str) -> web.Response:
        """An error answer in the configured shape (for handlers that do not raise)."""
        return self._error(ApiError(status, code, message))

    def _error(self, exc: ApiError) -> web.Response:
        shape = self.config.error_shape
        if shape == "mixed":
            shape = "error" if exc.status in (401, 403) else "errors"
        if shape == "error":
            body: dict[str, Any] = {"error": {"code": exc.code, "message": exc.message}}
        else:
            body = {
                "errors": [{"code": exc.code, "message": exc.message, "more_info": _MORE_INFO}],
                "trace": self._hex(32),
            }
        return web.json_response(body, status=exc.status)

    # -- IAM -----------------------------------------------------------------------------
    async def iam_token(self, request: web.Request) -> web.StreamResponse:
        """``POST /iam/identity/token`` (form ``grant_type`` + ``apikey``; IBM's client adds
        ``response_type=cloud_iam``) -> a JWT access token."""
        self.iam_header_names.append(frozenset(name.lower() for name in request.headers))
        form = await request.post()
        grant = form.get("grant_type")
        key = form.get("apikey")
        if grant != _GRANT:
            return self._iam_error(400, "BXNIM0109E", "Property 'grant_type' is invalid.")
        if not isinstance(key, str) or not key:
            return self._iam_error(400, "BXNIM0103E", "Property 'apikey' is missing.")
        user = self.config.api_keys.get(key)
        if user is None:
            return self._iam_error(400, "BXNIM0415E", "Provided API key could not be found.")
        now = self._rt.now()
        lifetime = self.config.token_lifetime
        expires_in: float | int = int(lifetime) if float(lifetime).is_integer() else lifetime
        # IBM's claims are whole seconds; ``exp`` = ``iat`` + ``expires_in`` = ``expiration``.
        # The token is checked against the exact instant (now + lifetime), which is never
        # earlier than ``exp``: a client that trusts ``exp`` refreshes in time.
        issued_at = int(self._rt.wall(now))
        expiration = issued_at + expires_in
        jti = f"ID-{self._hex(40)}"  # the seeded id stream moves as it used to
        token = self._sign(
            {
                "iam_id": f"IBMid-{user}",
                "id": f"IBMid-{user}",
                "sub": f"{user}@example.com",
                "sub_type": "ServiceId" if "service" in user else "User",
                "realmid": "IBMid",
                "jti": jti,
                "iss": "https://iam.cloud.ibm.com/identity",
                "grant_type": _GRANT,
                "scope": "ibm openid",
                "client_id": "default",
                "acr": 1,
                "amr": ["pwd"],
                "iat": issued_at,
                "exp": expiration,
            }
        )
        issued = IssuedToken(user, now + lifetime)
        self.tokens[token] = self._by_jti[jti] = issued
        return web.json_response(
            {
                "access_token": token,
                "refresh_token": "not_supported",
                "ims_user_id": 1000 + sorted(set(self.config.api_keys.values())).index(user),
                "token_type": "Bearer",
                "expires_in": expires_in,
                "expiration": expiration,
                "scope": "ibm openid",
            }
        )

    def _sign(self, claims: dict[str, Any]) -> str:
        """A compact JWS (``header.payload.signature``, HS256 under this emulator's key)."""
        header = {"kid": self._key_id, "alg": "HS256", "typ": "JWT"}
        signing_input = f"{_b64(_compact(header))}.{_b64(_compact(claims))}"
        mac = hmac.new(self._signing_key, signing_input.encode("ascii"), hashlib.sha256)
        return f"{signing_input}.{_b64(mac.digest())}"

    def _verified_claims(self, token: str) -> dict[str, Any] | None:
        """The claims of a token this emulator signed, or None (malformed, forged, altered)."""
        parts = token.split(".")
        if len(parts) != 3:
            return None
        signing_input = f"{parts[0]}.{parts[1]}".encode("ascii", "replace")
        expected = hmac.new(self._signing_key, signing_input, hashlib.sha256).digest()
        try:
            if not hmac.compare_digest(_unb64(parts[2]), expected):
                return None
            claims = json.loads(_unb64(parts[1]))
        except ValueError:  # bad base64 or JSON (binascii.Error is a ValueError)
            return None
        return claims if isinstance(claims, dict) else None

    def _iam_error(self, status: int, code: str, message: str) -> web.Response:
        body = {
            "errorCode": code,
            "errorMessage": message,
            "context": {"requestId": self._hex(32), "requestType": "incoming.Identity_Token"},
        }
        return web.json_response(body, status=status)

    # -- auth ----------------------------------------------------------------------------
    def authenticate_user(self, request: web.Request) -> str:
        """The user id of a request's bearer token, or ApiError (401).

        The token must carry this emulator's signature (so its claims are the ones issued),
        name by its ``jti`` a token issued here and not revoked (:meth:`revoke_tokens`), and
        not have expired (checked on the emulator clock, exactly ``expires_in`` after issue).
        """
        header = request.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise ApiError(401, "unauthorized", "Missing or malformed bearer token")
        claims = self._verified_claims(token)
        issued = None if claims is None else self._by_jti.get(str(claims.get("jti")))
        if issued is None or issued.revoked:
            raise ApiError(401, "unauthorized", "Invalid bearer token")
        if self._rt.now() >= issued.expires_at:
            raise ApiError(401, "unauthorized", "The bearer token has expired")
        return issued.user_id

    def _authenticate(self, request: web.Request) -> tuple[str, str]:
        """``(user_id, instance)`` of a request, or ApiError."""
        user = self.authenticate_user(request)
        crn = request.headers.get("Service-CRN", "").strip()
        if not crn:
            raise ApiError(400, 1200, "The Service-CRN header is required")
        if crn not in self.config.instances:
            raise ApiError(403, "forbidden", "Instance not found or not accessible")
        version = request.headers.get("IBM-API-Version")
        if version is not None:
            if not _API_VERSION.match(version.strip()):
                raise ApiError(400, 1201, f"Invalid IBM-API-Version {version!r}")
            self.api_versions.add(version.strip())
        return user, crn

    def _find(self, user: str, instance: str, session_id: str) -> QiskitSessionRecord:
        record = self.sessions.get(session_id)
        if record is None or record.user_id != user or record.instance != instance:
            raise ApiError(404, 1217, "Session not found.")
        return record

    # -- sessions ------------------------------------------------------------------------
    def _session_json(self, s: QiskitSessionRecord, now: float) -> dict[str, Any]:
        state = s.state_at(now)
        wall = self._rt.wall
        activated = s.first_time("active", now)
        closed = s.first_time("closed", now) if state == "closed" else None
        active_ttl: int | None = None
        if state == "active":
            ends = [p.monotonic for p in s.phases if p.monotonic > now]
            active_ttl = max(0, math.ceil(ends[0] - now)) if ends else None
        elapsed: float | None = None
        if closed is not None:
            elapsed = round(closed - (activated if activated is not None else s.created), 3)
        backend: str | None = s.backend
        if state == "open" and self.config.null_backend_while_open:
            backend = None
        return {
            "id": s.id,
            "backend_name": backend,
            "started_at": _iso(wall(s.created)),
            "activated_at": None if activated is None else _iso(wall(activated)),
            "closed_at": None if closed is None else _iso(wall(closed)),
            "last_job_started": None,
            "last_job_completed": None,
            "interactive_ttl": s.interactive_ttl,
            "max_ttl": s.max_ttl,
            "active_ttl": active_ttl,
            "state": state,
            "state_reason": s.reasons.get(state),
            "accepting_jobs": s.accepting_jobs,
            "mode": s.mode,
            "timestamps": [
                {"status": p.state, "timestamp": _iso(p.wall_time)} for p in s.transitions
            ],
            "user_id": s.user_id,
            "elapsed_time": elapsed,
        }

    def _life(self, backend: str, max_ttl: int) -> list[tuple[str, float]]:
        """The schedule of a new session, from ``open``."""
        cfg = self.config
        end = max_ttl * cfg.ttl_scale
        if backend == "emu_stuck":
            return [("open", math.inf)]
        opening = self._draw(cfg.activate_delay)
        if backend == "emu_offline":
            return [("open", opening), ("closed", math.inf)]
        steps: list[tuple[str, float]] = [("open", min(opening, end))]
        left = end - opening
        if left > 0:
            active = min(self._draw(cfg.interactive_ttl), left)
            steps.append(("active", active))
            left -= active
            pending = min(self._draw(cfg.pending_inactive_delay), max(left, 0.0))
            if pending > 0:
                steps.append(("pending_inactive", pending))
                left -= pending
            if left > 0:
                steps.append(("inactive", left))
        steps.append(("closed", math.inf))
        return steps

    async def _body(self, request: web.Request) -> dict[str, Any]:
        raw = await request.read()
        try:
            body = json.loads(raw) if raw.strip() else None
        except (UnicodeDecodeError, ValueError):
            raise ApiError(400, 1311, "The request body is not valid JSON") from None
        if not isinstance(body, dict):
            raise ApiError(400, 1311, "The request body must be a JSON object")
        return body

    async def create_session(self, request: web.Request) -> web.StreamResponse:
        """``POST /v1/sessions``."""
        user, crn = self._authenticate(request)
        body = await self._body(request)
        # Fields beyond these four are ignored, as the reference forbids none (IBM's client
        # sends more through its advanced sessions); the record keeps the whole body.
        mode = body.get("mode", "batch")
        if mode not in ("batch", "dedicated"):
            raise ApiError(400, 1311, "mode must be one of: batch, dedicated")
        backend = body.get("backend")
        if not isinstance(backend, str) or not backend:
            raise ApiError(400, 1311, "backend is required")
        if backend not in self.config.backends and backend not in _STEERING:
            raise ApiError(404, 1216, f"Backend {backend} not found.")
        max_ttl = body.get("max_ttl", 28800)
        if isinstance(max_ttl, bool) or not isinstance(max_ttl, int) or max_ttl <= 0:
            raise ApiError(400, 1311, "max_ttl must be a positive integer")
        instance = body.get("instance")
        if instance is not None and instance != crn:
            raise ApiError(400, 1311, "instance does not match the Service-CRN header")
        now = self._rt.now()
        sid = self._hex(20)
        while sid in self.sessions:
            sid = self._hex(20)
        record = QiskitSessionRecord(
            id=sid,
            user_id=user,
            instance=crn,
            backend=backend,
            mode=mode,
            max_ttl=max_ttl,
            interactive_ttl=max(1, round(self.config.interactive_ttl[1])),
            created=now,
            runtime=self._rt,
            create_body=body,
        )
        record.schedule(now, self._life(backend, max_ttl))
        if backend == "emu_offline":
            record.reasons["closed"] = "The backend went offline"
        else:
            record.reasons["closed"] = "max_ttl reached"
        self.sessions[sid] = record
        return web.json_response(self._session_json(record, now))

    async def get_session(self, request: web.Request) -> web.StreamResponse:
        """``GET /v1/sessions/{id}``."""
        user, crn = self._authenticate(request)
        record = self._find(user, crn, request.match_info["id"])
        return web.json_response(self._session_json(record, self._rt.now()))

    async def update_session(self, request: web.Request) -> web.StreamResponse:
        """``PATCH /v1/sessions/{id}`` with ``{"accepting_jobs": bool}`` -> 204."""
        user, crn = self._authenticate(request)
        record = self._find(user, crn, request.match_info["id"])
        body = await self._body(request)
        accepting = body.get("accepting_jobs")
        if not isinstance(accepting, bool) or set(body) != {"accepting_jobs"}:
            raise ApiError(400, 1311, 'The body must be {"accepting_jobs": true|false}')
        now = self._rt.now()
        state = record.state_at(now)
        if state == "closed":
            if accepting:
                raise ApiError(409, 1219, "The session is closed.")
            return web.Response(status=204)
        if accepting == record.accepting_jobs:
            return web.Response(status=204)
        record.accepting_jobs = accepting
        if not accepting:
            drain = self._draw(self.config.drain_delay)
            steps: list[tuple[str, float]] = [(state, drain)]
            if state in ("active", "pending_inactive"):
                steps = [("pending_closed", drain)]
            record.reasons["closed"] = "Closed after its queued jobs ran (accepting_jobs false)"
            record.schedule(now, [*steps, ("closed", math.inf)])
        else:
            # Accepting again before it closed: it lives on until max_ttl.
            created_left = record.created + record.max_ttl * self.config.ttl_scale - now
            back = "active" if state == "pending_closed" else state
            record.reasons["closed"] = "max_ttl reached"
            record.schedule(now, [(back, max(created_left, 0.0)), ("closed", math.inf)])
        return web.Response(status=204)

    async def close_session(self, request: web.Request) -> web.StreamResponse:
        """``DELETE /v1/sessions/{id}/close`` -> 204; closed at once (idempotent)."""
        user, crn = self._authenticate(request)
        record = self._find(user, crn, request.match_info["id"])
        now = self._rt.now()
        if record.state_at(now) != "closed":
            record.accepting_jobs = False
            record.reasons["closed"] = "Closed by the user"
            record.schedule(now, [("closed", math.inf)])
        return web.Response(status=204)

    async def handle(self, method: str, request: web.Request) -> web.StreamResponse:
        """Answer one API request, mapping :class:`ApiError` to the configured shape."""
        own = getattr(self, method, None)
        if own is None:  # a job route
            return await self.answer(lambda _state, r: self.jobs.handle(method, r), request)
        return await self.answer(lambda _state, r: own(r), request)

    async def answer(
        self,
        handler: Callable[[QiskitState, web.Request], Awaitable[web.StreamResponse]],
        request: web.Request,
    ) -> web.StreamResponse:
        """``handler(self, request)``, with :class:`ApiError` mapped to the configured shape."""
        try:
            return await handler(self, request)
        except ApiError as exc:
            return self._error(exc)


def _compact(value: dict[str, Any]) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode("utf-8")


def _b64(data: bytes) -> str:
    """Base64url without padding, as JWTs are written."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def create_app(state: QiskitState) -> web.Application:
    """The Qiskit sub-application: routes named ``"qiskit.<method>"``."""
    app = web.Application()
    routes: tuple[tuple[str, str, str], ...] = (
        ("POST", IAM_PATH, "iam_token"),
        ("POST", f"{API_ROOT}/v1/sessions", "create_session"),
        ("GET", f"{API_ROOT}/v1/sessions/{{id}}", "get_session"),
        ("PATCH", f"{API_ROOT}/v1/sessions/{{id}}", "update_session"),
        ("DELETE", f"{API_ROOT}/v1/sessions/{{id}}/close", "close_session"),
        *((verb, API_ROOT + path, method) for verb, path, method in JOB_ROUTES),
    )
    for verb, path, method in routes:

        async def handler(request: web.Request, _method: str = method) -> web.StreamResponse:
            return await state.handle(_method, request)

        app.router.add_route(verb, path, handler, name=f"{API}.{method}")
    # What IBM's own client reads besides sessions (backends, the instance look-up).
    _qiskit_platform.add_routes(app, state, API)
    return app
