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
from collections.abc import Awaitable, Sequence
from contextlib import AbstractAsyncContextManager
from urllib.parse import urlsplit

from .._core.checks import count
from .._core.config import ConfigError, check_str, renamed_argument, resolve_setting
from .._core.governor import Governor
from .._core.handles import DEFAULT_CLEANUP_TIMEOUT, Handle, InFlight, scoped
from .._core.http_config import DEFAULT_LIMITS, DEFAULT_TIMEOUTS, PoolLimits, Timeouts
from .._core.http_errors import safe_url
from .._core.network import ConnectionOptions, Unpack
from .._core.observability import api_call
from .._core.polling import Poller, per_id_fetcher
from .._core.protocol_kit import Request
from .._core.resources import BaseClient, WaitableResource, client_transport, each_id
from .._core.responses import Response
from .._core.retries import RetryPolicy
from .._core.wait_types import PollCadence, Until
from .._exceptions import AuthenticationError, NotFoundError, OutcomeUnknown, naming_the_missing
from . import _protocol as P
from ._auth import DEFAULT_IAM_URL, IAMAuth, ServiceAuth
from ._states import SESSION_STATES
from .jobs import JobsResource
from .models import Session, SessionMode

__all__ = [
    "DEFAULT_API_VERSION",
    "DEFAULT_PLATFORM_URL",
    "DEFAULT_URL",
    "QISKIT_RETRY",
    "QiskitRuntimeClient",
    "SessionsResource",
]

#: The global endpoint; regions use ``https://<region>.quantum.cloud.ibm.com/api``.
DEFAULT_URL = "https://quantum.cloud.ibm.com/api"
#: The IBM Cloud platform URL (``$QISKIT_IBM_URL``'s default), as IBM's own client names it.
DEFAULT_PLATFORM_URL = "https://cloud.ibm.com"
#: The ``IBM-API-Version`` sent unless told otherwise (the one qiskit-ibm-runtime 0.51 sends).
DEFAULT_API_VERSION = "2026-04-15"

#: The statuses IBM's own client retries (503 is maintenance), plus 429.
QISKIT_RETRY_STATUSES = frozenset({429, 500, 502, 503, 504, 520, 521, 522, 524})
#: The default retry policy of :class:`QiskitRuntimeClient` (see its docstring).
QISKIT_RETRY = RetryPolicy(retry_statuses=QISKIT_RETRY_STATUSES)


def _region_url(region: str, platform_url: str = DEFAULT_PLATFORM_URL) -> str:
    """The API base of ``region`` on a platform, as IBM's client derives it: ``us-east`` is
    the global ``https://quantum.<platform host>/api``, others ``https://<region>.quantum...``."""
    if not check_str(region, "region").replace("-", "").isalnum():
        raise ValueError(f"region must look like 'eu-de', got {region!r}")
    parts = urlsplit(platform_url)
    prefix = "" if region == "us-east" else f"{region}."
    return f"{parts.scheme}://{prefix}quantum.{parts.netloc}/api"


def _crn_location(crn: str, source: str) -> str:
    """The location (region) field of an instance CRN, or ConfigError saying what is wrong.

    A CRN reads ``crn:v1:bluemix:public:quantum-computing:<location>:a/<account>:<id>::``.
    The value is not repeated in the error: a misplaced API key must not be shown.
    """
    fields = crn.strip().split(":")
    if fields[0] != "crn" or len(fields) < 7 or not fields[5]:
        raise ConfigError(
            f"{source} must be a Qiskit Runtime instance CRN, such as "
            "'crn:v1:bluemix:public:quantum-computing:us-east:a/<account>:<instance>::' "
            f"(got a value of {len(crn)} characters that is not one); instance names are not "
            "looked up: copy the CRN from the instance's page on quantum.cloud.ibm.com"
        )
    return fields[5]


def _platform_url(value: str) -> str:
    """``$QISKIT_IBM_URL``, checked: the IBM Cloud platform URL, not an API base."""
    shown = safe_url(value.strip())  # no user info in an error
    parts = urlsplit(value.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(
            "$QISKIT_IBM_URL must be the IBM Cloud platform URL, such as "
            f"'{DEFAULT_PLATFORM_URL}'; got {shown!r}"
        )
    if parts.path.strip("/") or parts.hostname.startswith("quantum."):
        # It meant the API base here once; IBM's client reads it as the platform.
        raise ConfigError(
            "$QISKIT_IBM_URL is the IBM Cloud platform URL, as qiskit-ibm-runtime reads it "
            f"(such as '{DEFAULT_PLATFORM_URL}'), not an API base; got {shown!r}. "
            "To give the API base itself, pass base_url= or set $AIOCOMPUTE_QISKIT_BASE_URL"
        )
    port = f":{parts.port}" if parts.port is not None else ""
    return f"{parts.scheme}://{parts.hostname}{port}"


def _check_api_version(value: str) -> str:
    parts = check_str(value, "api_version").split("-")
    if len(parts) != 3 or not all(p.isdigit() for p in parts) or len(parts[0]) != 4:
        raise ValueError(f"api_version must be a date such as '2025-05-01', got {value!r}")
    return value


# A session's own path: /v1/sessions/<id> (and /close under it).
_SESSION_PATH = re.compile(r"/v1/sessions/([^/?]+)")


class QiskitRuntimeClient(BaseClient):
    """Async client for Qiskit Runtime sessions on IBM Quantum Platform.

    Settings are read as IBM's own client (qiskit-ibm-runtime) reads them. ``token`` is the
    IBM Cloud API key (default ``$QISKIT_IBM_TOKEN``); it is exchanged at ``iam_url``
    (default ``$QISKIT_IBM_IAM_URL``, else ``$IAM_URL`` + ``/identity/token`` as IBM's client
    reads it, else IBM Cloud IAM's token endpoint) for bearer tokens that are refreshed
    before they expire (see :class:`~aiocompute.qiskit.IAMAuth`); only the form goes to
    IAM. ``instance`` is the instance CRN (default ``$QISKIT_IBM_INSTANCE``), sent as
    ``Service-CRN`` and checked to look like one (names are not looked up).

    The API base follows the CRN's region: an ``eu-de`` CRN goes to
    ``https://eu-de.quantum.cloud.ibm.com/api``, a ``us-east`` one to the global
    ``https://quantum.cloud.ibm.com/api``, on the platform of ``$QISKIT_IBM_URL`` (the IBM
    Cloud platform URL, default ``https://cloud.ibm.com``). ``region`` picks the region
    instead; ``base_url`` (or ``$AIOCOMPUTE_QISKIT_BASE_URL``) gives the API base itself
    (an emulator's, for one). ``api_version`` is sent as ``IBM-API-Version``.

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

    ``owner`` (default ``user@host``) labels what the client creates, where the API has a
    field for it; ``reconcile=False`` turns off the reconciliation of creates that fail
    ambiguously (see "Launching safely" in the docs; each create also takes ``reconcile=``).

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
        base_url: str | None = None,
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
        owner: str | None = None,
        reconcile: bool = True,
        **connection: Unpack[ConnectionOptions],
    ) -> None:
        count(poll_concurrency, "poll_concurrency", minimum=1)
        # base_url is the name in every client; url= still works, with a DeprecationWarning.
        url = renamed_argument(
            base_url, url, new_name="base_url", old_name="url", where="QiskitRuntimeClient"
        )
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
        location = _crn_location(
            crn, "the instance argument" if instance is not None else "$QISKIT_IBM_INSTANCE"
        )
        base = self._api_base(url, region, location)
        self._auth = IAMAuth(api_key, iam_url=self._iam_url(iam_url))
        transport = client_transport(
            base.rstrip("/"),
            # Service-CRN and IBM-API-Version ride with the token: to the API, never to IAM.
            auth=ServiceAuth(
                self._auth,
                {"Service-CRN": crn, "IBM-API-Version": _check_api_version(api_version)},
            ),
            timeouts=timeouts,
            retry=retry,
            limits=limits,
            error_parser=P.error_parser,
            connection=connection,
            client="QiskitRuntimeClient",
            credential_hint="the token argument or $QISKIT_IBM_TOKEN (an IBM Cloud API key)",
            governor=governor,
        )
        self._auth.bind(transport)
        super().__init__(transport, owner=owner, reconcile=reconcile)
        self.instance = crn
        self.api_version = api_version
        self._strict = strict
        self._cadence = cadence
        self._poll_concurrency = poll_concurrency
        self._make_resources()

    @staticmethod
    def _api_base(url: str | None, region: str | None, location: str) -> str:
        """The API base: ``url``, else ``region``'s, else ``$AIOCOMPUTE_QISKIT_BASE_URL``,
        else the CRN's ``location`` on the platform of ``$QISKIT_IBM_URL``."""
        if url is not None and region is not None:
            raise ValueError("pass base_url= or region=, not both")
        if region is None:
            explicit = resolve_setting(
                url,
                ["AIOCOMPUTE_QISKIT_BASE_URL"],
                what="Qiskit API base URL",
                argument="base_url",
                required=False,
            )
            if explicit is not None:
                return explicit
        platform = resolve_setting(
            None, ["QISKIT_IBM_URL"], what="IBM Cloud URL", argument="url", required=False
        )
        return _region_url(
            region if region is not None else location,
            _platform_url(platform) if platform is not None else DEFAULT_PLATFORM_URL,
        )

    @staticmethod
    def _iam_url(iam_url: str | None) -> str:
        """``iam_url``, else ``$QISKIT_IBM_IAM_URL``, else IBM's client's ``$IAM_URL`` (a
        base; ``/identity/token`` is added), else IBM Cloud IAM's token endpoint."""
        found = resolve_setting(
            iam_url,
            ["QISKIT_IBM_IAM_URL"],
            what="IBM Cloud IAM token endpoint",
            argument="iam_url",
            required=False,
        )
        if found is not None:
            return found
        base = resolve_setting(None, ["IAM_URL"], what="IAM", argument="iam_url", required=False)
        if base is None:
            return DEFAULT_IAM_URL
        base = base.rstrip("/")
        return base if base.endswith("/identity/token") else base + "/identity/token"

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
        max_ttl: int | None = None,
        instance: str | None = None,
    ) -> Session:
        """Open a session on ``backend``; returns it as the server recorded it (``open``).

        ``mode`` is ``"batch"`` (default) or ``"dedicated"``; ``max_ttl`` the most seconds
        it may live, sent only when given (the service's default is 8 h); ``instance`` (a
        CRN, default the client's) is sent in the body, as IBM's own client sends it.
        Not retried once the request may have reached the server (see the client's
        docstring). Use :meth:`wait` to know when it is active.
        """
        request = P.create_session(
            backend,
            mode=mode,
            max_ttl=max_ttl,
            instance=self._client.instance if instance is None else instance,
        )
        response = await _not_reconcilable(self._client._send(request))
        return P.parse_session(response.json(), strict=self._client._strict)

    def opened(
        self,
        backend: str,
        *,
        mode: SessionMode | str = SessionMode.BATCH,
        max_ttl: int | None = None,
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
    async def close(self, session_id: str | Sequence[str]) -> None:
        """Close the session now, or each of several: jobs not yet running are not run.
        Several ids: each is tried; failures raise one ``ExceptionGroup``."""

        async def close_one(one: str) -> None:
            await self._client._send(P.close_session(one))

        await each_id(session_id, close_one, argument="session_id")

    @api_call("get_many")
    async def get_many(self, session_ids: Sequence[str]) -> dict[str, Session]:
        """Read several sessions at once (one request each, ``poll_concurrency`` at a time);
        ids that do not exist are left out."""
        fetch = per_id_fetcher(self.get, self._client._poll_concurrency)
        return await fetch(list(session_ids))


async def _not_reconcilable(sending: Awaitable[Response]) -> Response:
    """A session create's answer; an ambiguous failure says why it cannot be looked up.

    The sessions API has no listing and no field a client token could ride in, so a
    session created by a request whose answer was lost cannot be found by anyone.
    """
    unknown: OutcomeUnknown | None = None
    try:
        return await sending
    except OutcomeUnknown as exc:
        unknown = exc
    raise OutcomeUnknown(
        f"Qiskit session create: {unknown.reason}; the server may have opened the session, "
        "and the API can neither list sessions nor carry a client token, so it cannot be "
        "looked up: an unused session closes itself after its max_ttl",
        method=unknown.method,
        url=unknown.url,
        lookup=None,
        status=unknown.status,
        timed_out=unknown.timed_out,
        reason=unknown.reason,
    )
