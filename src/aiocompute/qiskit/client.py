"""The async Qiskit Runtime client: ``QiskitRuntimeClient`` and its ``sessions`` resource
(its ``jobs`` resource lives in :mod:`.jobs`).

Every call goes through :meth:`QiskitRuntimeClient._send`: build the request in
``_protocol`` (validated, no I/O), make sure an IAM token is at hand, send it through the
shared transport, read the answer in ``_protocol``. Waiting goes through one
:class:`~aiocompute._core.polling.Poller` that reads one session per request (the API has no
bulk read), at most ``poll_concurrency`` at a time.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from contextlib import AbstractAsyncContextManager

from .._core.config import check_str, resolve_setting
from .._core.governor import Governor
from .._core.handles import DEFAULT_CLEANUP_TIMEOUT, Handle, InFlight, scoped
from .._core.http_config import DEFAULT_LIMITS, DEFAULT_TIMEOUTS, PoolLimits, Timeouts
from .._core.network import ConnectionOptions, Unpack
from .._core.observability import api_call
from .._core.polling import Poller, per_id_fetcher
from .._core.protocol_kit import Request
from .._core.resources import BaseClient, WaitableResource, client_transport
from .._core.responses import Response
from .._core.retries import RetryPolicy
from .._core.wait_types import PollCadence, Until
from .._exceptions import AuthenticationError, NotFoundError, naming_the_missing
from . import _protocol as P
from ._auth import DEFAULT_IAM_URL, IAMAuth
from ._states import SESSION_STATES
from .jobs import JobsResource
from .models import Session, SessionMode

__all__ = [
    "DEFAULT_API_VERSION",
    "DEFAULT_URL",
    "QISKIT_RETRY",
    "QiskitRuntimeClient",
    "SessionsResource",
]

#: The global endpoint; regions use ``https://<region>.quantum.cloud.ibm.com/api``.
DEFAULT_URL = "https://quantum.cloud.ibm.com/api"
#: The ``IBM-API-Version`` sent unless told otherwise.
DEFAULT_API_VERSION = "2025-05-01"

#: The statuses IBM's own client retries (503 is maintenance), plus 429.
QISKIT_RETRY_STATUSES = frozenset({429, 500, 502, 503, 504, 520, 521, 522, 524})
#: The default retry policy of :class:`QiskitRuntimeClient` (see its docstring).
QISKIT_RETRY = RetryPolicy(retry_statuses=QISKIT_RETRY_STATUSES)


def _region_url(region: str) -> str:
    if not check_str(region, "region").replace("-", "").isalnum():
        raise ValueError(f"region must look like 'eu-de', got {region!r}")
    return f"https://{region}.quantum.cloud.ibm.com/api"


def _check_api_version(value: str) -> str:
    parts = check_str(value, "api_version").split("-")
    if len(parts) != 3 or not all(p.isdigit() for p in parts) or len(parts[0]) != 4:
        raise ValueError(f"api_version must be a date such as '2025-05-01', got {value!r}")
    return value


# A session's own path: /v1/sessions/<id> (and /close under it).
_SESSION_PATH = re.compile(r"/v1/sessions/([^/?]+)")


class QiskitRuntimeClient(BaseClient):
    """Async client for Qiskit Runtime sessions on IBM Quantum Platform.

    ``token`` is the IBM Cloud API key (default ``$QISKIT_IBM_TOKEN``); it is exchanged at
    ``iam_url`` (default ``$QISKIT_IBM_IAM_URL``, else IBM Cloud IAM's token endpoint) for
    bearer tokens that are refreshed before they expire (see
    :class:`~aiocompute.qiskit.IAMAuth`). ``instance`` is the instance CRN sent as
    ``Service-CRN`` (default ``$QISKIT_IBM_INSTANCE``). ``url`` is the API base (default
    ``$QISKIT_IBM_URL``, else ``https://quantum.cloud.ibm.com/api``); ``region`` picks a
    regional endpoint instead. ``api_version`` is sent as ``IBM-API-Version``.

    Retries: reads (and ``update``, which is idempotent) are retried on 429, 500, 502,
    503, 504, 520, 521, 522 and 524 (:data:`QISKIT_RETRY`), the statuses IBM's own client
    retries. IBM's client retries session creation (a POST) on those too; this one does
    not: a create that may have reached the server is never repeated, because a 5xx after
    the request arrived can mean the session exists, and a second one would hold (and bill)
    backend time. A create, like a close, is retried only when the request surely never
    left (connection refused, DNS). A request rejected with 401 is sent once more with a
    freshly fetched token (the old one was revoked or expired early); that is safe for a
    create too, since a rejected request did nothing.

    ``cadence`` sets how often waits poll, ``poll_concurrency`` how many sessions are read
    at once while waiting; ``strict=True`` rejects answers with unknown fields.

    Use it as ``async with QiskitRuntimeClient(...) as q:`` or call :meth:`aclose`.
    """

    sessions: SessionsResource
    jobs: JobsResource

    # The first part of the name of every span of this API (see _core.observability).
    _api_name = "qiskit"

    def __init__(
        self,
        *,
        token: str | None = None,
        instance: str | None = None,
        url: str | None = None,
        region: str | None = None,
        iam_url: str | None = None,
        api_version: str = DEFAULT_API_VERSION,
        timeouts: Timeouts = DEFAULT_TIMEOUTS,
        retry: RetryPolicy = QISKIT_RETRY,
        limits: PoolLimits = DEFAULT_LIMITS,
        governor: Governor | None = None,
        cadence: PollCadence | None = None,
        poll_concurrency: int = 8,
        strict: bool = False,
        **connection: Unpack[ConnectionOptions],
    ) -> None:
        api_key = resolve_setting(
            token, ["QISKIT_IBM_TOKEN"], what="IBM Cloud API key", argument="token"
        )
        crn = resolve_setting(
            instance,
            ["QISKIT_IBM_INSTANCE"],
            what="Qiskit Runtime instance CRN",
            argument="instance",
        )
        # Both are required: resolve_setting raised ConfigError if either was missing.
        assert api_key is not None
        assert crn is not None
        if url is not None and region is not None:
            raise ValueError("pass url= or region=, not both")
        base = resolve_setting(
            url, ["QISKIT_IBM_URL"], what="Qiskit API URL", argument="url", required=False
        )
        if base is None:
            base = _region_url(region) if region is not None else DEFAULT_URL
        token_url = resolve_setting(
            iam_url,
            ["QISKIT_IBM_IAM_URL"],
            what="IBM Cloud IAM token endpoint",
            argument="iam_url",
            required=False,
        )
        self._auth = IAMAuth(api_key, iam_url=token_url or DEFAULT_IAM_URL)
        transport = client_transport(
            base.rstrip("/"),
            auth=self._auth,
            timeouts=timeouts,
            retry=retry,
            limits=limits,
            error_parser=P.error_parser,
            connection=connection,
            client="QiskitRuntimeClient",
            credential_hint="the token argument or $QISKIT_IBM_TOKEN (an IBM Cloud API key)",
            governor=governor,
            headers={"Service-CRN": crn, "IBM-API-Version": _check_api_version(api_version)},
        )
        self._auth.bind(transport)
        super().__init__(transport)
        self.instance = crn
        self.api_version = api_version
        self._strict = strict
        self._cadence = cadence
        self._poll_concurrency = poll_concurrency
        self._make_resources()

    def _make_resources(self) -> None:
        self.sessions = SessionsResource(self)
        # Job runs in progress per session; with_options() copies share it (copy.copy).
        if "_submissions" not in vars(self):
            self._submissions = InFlight()
        self.jobs = JobsResource(self)

    @property
    def retry_policy(self) -> RetryPolicy:
        """The retry policy in force for reads."""
        return self._transport.retry

    async def _send(self, request: Request) -> Response:
        """Send one request with a valid IAM token; after a 401, once more with a fresh one."""
        token = await self._auth.ensure()  # IAM errors surface here, outside the retries
        try:
            return await self._send_naming_the_session(request)
        except AuthenticationError as exc:
            if exc.status != 401:
                raise
            # Revoked or expired early: one fresh token, one more try.
            self._auth.invalidate(token)
            await self._auth.ensure()
            return await self._send_naming_the_session(request)

    async def _send_naming_the_session(self, request: Request) -> Response:
        """One request through the transport; a 404 says which session is missing."""
        missing: NotFoundError | None = None
        try:
            return await self._transport.send(request)
        except NotFoundError as exc:
            missing = exc
        # "Session not found." names no id: say which.
        match = _SESSION_PATH.match(request.path)
        raise missing if match is None else naming_the_missing(missing, "session", match[1])


class SessionsResource(WaitableResource[Session]):
    """``q.sessions``: create, read, drain, close and wait for Qiskit Runtime sessions.

    :meth:`wait` waits for ``"active"`` by default (the session has priority on its
    backend) and decides on :attr:`Session.effective_state`: a session that no longer
    accepts jobs counts as ``pending_closed``, from which only ``closed`` can come.
    ``on_cancel="cancel"`` closes the session when a wait times out or is cancelled.
    """

    _default_until = "active"
    _default_timeout = 1800.0
    _resource_name = "sessions"

    def __init__(self, client: QiskitRuntimeClient) -> None:
        self._client = client
        self._waiter = client._poller(
            Poller(
                SESSION_STATES,
                per_id_fetcher(self.get, client._poll_concurrency),
                state_of=P.session_state,
                detail_of=lambda s: s.state_reason or None,
                cancel_remote=self.close,
                cadence=client._cadence,
            )
        )

    @api_call("create")
    async def create(
        self,
        backend: str,
        *,
        mode: SessionMode | str = SessionMode.BATCH,
        max_ttl: int = P.DEFAULT_MAX_TTL,
        instance: str | None = None,
    ) -> Session:
        """Open a session on ``backend``; returns it as the server recorded it (``open``).

        ``mode`` is ``"batch"`` (default) or ``"dedicated"``; ``max_ttl`` the most seconds
        it may live (default 8 h); ``instance`` (a CRN) is sent in the body when given.
        Not retried once the request may have reached the server (see the client's
        docstring). Use :meth:`wait` to know when it is active.
        """
        request = P.create_session(backend, mode=mode, max_ttl=max_ttl, instance=instance)
        response = await self._client._send(request)
        return P.parse_session(response.json(), strict=self._client._strict)

    def opened(
        self,
        backend: str,
        *,
        mode: SessionMode | str = SessionMode.BATCH,
        max_ttl: int = P.DEFAULT_MAX_TTL,
        instance: str | None = None,
        until: Until[Session] | None = None,
        timeout: float | None = None,
        on_exit: str = "close",
        cleanup_timeout: float = DEFAULT_CLEANUP_TIMEOUT,
    ) -> AbstractAsyncContextManager[Handle[Session]]:
        """Open a session for the length of an ``async with`` block.

        ``async with q.sessions.opened("ibm_torino") as s:`` creates it (as :meth:`create`),
        waits until ``until`` if given (None by default: an open session takes jobs at
        once) and yields a :class:`~aiocompute.Handle`. On any exit, errors and
        cancellation included, ``on_exit`` runs, shielded and bounded by
        ``cleanup_timeout``: ``"close"`` (default: stop accepting jobs, then close),
        ``"drain"`` (stop accepting jobs; those queued still run) or ``"leave"``. Before
        the session stops accepting jobs, runs for it (``q.jobs.run(..., session_id=s.id)``)
        still being submitted, e.g. from other tasks, finish submitting.
        """
        first: list[Session] = []

        async def launch() -> str:
            session = await self.create(backend, mode=mode, max_ttl=max_ttl, instance=instance)
            first.append(session)
            return session.id

        async def drain(session_id: str) -> None:
            # Runs started in the block that are still submitting get in first.
            await self._client._submissions.settled(session_id)
            await self.update(session_id, accepting_jobs=False)

        async def close(session_id: str) -> None:
            await drain(session_id)
            await self.close(session_id)

        return scoped(
            launch,
            waits=self,
            get=self.get,
            until=until,
            timeout=timeout,
            on_exit=on_exit,
            actions={"close": close, "drain": drain},
            cleanup_timeout=cleanup_timeout,
        )

    @api_call("get")
    async def get(self, session_id: str) -> Session:
        """One session; :class:`~aiocompute.NotFoundError` if there is none."""
        response = await self._client._send(P.get_session(session_id))
        return P.parse_session(response.json(), strict=self._client._strict)

    @api_call("update")
    async def update(self, session_id: str, *, accepting_jobs: bool = False) -> None:
        """Set whether the session accepts new jobs.

        ``accepting_jobs=False`` (the default) drains it: queued jobs still run, then it
        closes (wait for ``"closed"``). The server answers 204 with no body.
        """
        await self._client._send(P.update_session(session_id, accepting_jobs=accepting_jobs))

    @api_call("close")
    async def close(self, session_id: str) -> None:
        """Close the session now: jobs not yet running are not run. Answers 204."""
        await self._client._send(P.close_session(session_id))

    @api_call("get_many")
    async def get_many(self, session_ids: Sequence[str]) -> dict[str, Session]:
        """Read several sessions at once (one request each, ``poll_concurrency`` at a time);
        ids that do not exist are left out."""
        fetch = per_id_fetcher(self.get, self._client._poll_concurrency)
        return await fetch(list(session_ids))
