"""The async Posit Workbench client: ``WorkbenchClient`` and its resources.

Every call goes through :meth:`WorkbenchClient._send`: build the request in ``_protocol``
(validated, no I/O), send it through the shared transport (retries for reads only), decode
the answer's envelope in ``_protocol`` (status, then ``error``, then ``result``). Waiting
goes through one :class:`~aiocompute._core.polling.Poller` per resource kind, which polls
all waited ids with one ``get_session`` per tick; job output goes through the shared
resumable stream (``_core.streaming``).
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import (
    AsyncGenerator,
    Awaitable,
    Callable,
    Collection,
    Generator,
    Mapping,
    Sequence,
)
from contextlib import AbstractAsyncContextManager
from datetime import datetime, timedelta, timezone
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import attrs

from .._core.auth import StaticAuth
from .._core.config import ConfigError, check_str, renamed_argument, resolve_setting
from .._core.governor import Governor
from .._core.handles import DEFAULT_CLEANUP_TIMEOUT, Handle, scoped
from .._core.http_config import DEFAULT_LIMITS, DEFAULT_TIMEOUTS, PoolLimits, Timeouts
from .._core.network import ConnectionOptions, Unpack
from .._core.observability import api_call
from .._core.pagination import Page, Paginator
from .._core.polling import Poller
from .._core.protocol_kit import Request
from .._core.reconcile import (
    TOKEN_LABEL,
    Plan,
    create_once,
    labelled_tags,
    new_token,
    tag,
    tag_value,
)
from .._core.resources import BaseClient, WaitableResource, client_transport, each_id
from .._core.retries import DEFAULT_RETRY, RetryPolicy
from .._core.streaming import ResumePolicy, resumable_items
from .._core.wait_types import PollCadence, Until
from .._exceptions import NotFoundError, naming_the_missing
from . import _protocol as P
from ._states import JOB_STATES, SESSION_STATES
from .models import (
    AuditedJob,
    AuditedJobDetails,
    ComputeEnvironments,
    EnvironmentVariable,
    Job,
    JobOutput,
    JobSpec,
    LaunchedSession,
    LaunchParameters,
    ListedSessions,
    OutputChunk,
    OutputLine,
    ServerVersion,
    Session,
    SessionHook,
    SessionListing,
    User,
)

__all__ = ["AuditedJobsResource", "JobsResource", "SessionsResource", "WorkbenchClient"]

#: A job or an audited job.
J = TypeVar("J", bound=Job)

#: The header a client inside a Workbench session sends instead of a token.
RPC_COOKIE_HEADER = "X-RS-Session-Server-RPC-Cookie"
# How far back a vanished session or job is looked for in the history.
_HISTORY_WINDOW = timedelta(days=1)
# For how long after resume() a wait polls through a session's old "suspended" state.
_RESUME_GRACE = 120.0
_RESUMABLE = frozenset(SESSION_STATES.resumable)


def _read_rpc_cookie(environ: Mapping[str, str]) -> str | None:
    """The session RPC cookie, when this process runs inside a Workbench session."""
    cookie = environ.get("RS_SESSION_RPC_COOKIE")
    if cookie and cookie.strip():
        return cookie.strip()
    runtime = environ.get("PWB_SESSION_RUNTIME_DIR")
    if runtime:
        path = Path(runtime) / "rpc_cookie"
        try:
            text = path.read_text(encoding="utf-8").strip()
        except OSError:
            return None
        return text or None
    return None


class WorkbenchClient(BaseClient):
    """Async client for the Posit Workbench API.

    ``base_url`` is the Workbench address (default ``$WORKBENCH_SERVER``; ``server=`` is
    its deprecated old name), with or without the ``/api`` suffix. Authentication is
    a bearer API ``token`` (default ``$WORKBENCH_API_KEY``), or, inside a running Workbench
    session, the session RPC cookie (``rpc_cookie=``, ``$RS_SESSION_RPC_COOKIE`` or
    ``$PWB_SESSION_RUNTIME_DIR/rpc_cookie``).

    ``timeouts``, ``retry`` (used for reads; launches and stops are retried only when the
    request never left) and ``limits`` configure the transport; ``governor`` paces every
    request of this client (polls, queries, launches) and backs off on 429 (default: a
    :class:`~aiocompute.RateGovernor` of its own, unlimited until the first 429); ``cadence``
    sets how often waits poll; ``strict=True`` rejects answers with unknown fields (for
    tests against fixtures).

    ``act_as`` makes the client work for another user (an admin token reads, a super-admin
    token also launches and resumes): every call that can name a user names this one unless
    given its own (``user=``, ``username=``, ``JobSpec.user``), so reads, output streams,
    launches and waits all see that user's sessions and jobs; ``sessions.history()`` lists
    that user's ended sessions. Stops need no user: an admin token stops any session or job.

    ``owner`` (default ``user@host``) labels what the client creates, where the API has a
    field for it; ``reconcile=False`` turns off the reconciliation of creates that fail
    ambiguously (see "Launching safely" in the docs; each create also takes ``reconcile=``).

    Use it as ``async with WorkbenchClient(...) as wb:`` or call :meth:`aclose`.
    """

    sessions: SessionsResource
    jobs: JobsResource
    audited_jobs: AuditedJobsResource

    # The first part of the name of every span of this API (see _core.observability).
    _api_name = "workbench"

    def __init__(
        self,
        base_url: str | None = None,
        *,
        token: str | None = None,
        rpc_cookie: str | None = None,
        timeouts: Timeouts = DEFAULT_TIMEOUTS,
        retry: RetryPolicy = DEFAULT_RETRY,
        limits: PoolLimits = DEFAULT_LIMITS,
        governor: Governor | None = None,
        cadence: PollCadence | None = None,
        strict: bool = False,
        act_as: str | None = None,
        owner: str | None = None,
        reconcile: bool = True,
        server: str | None = None,
        **connection: Unpack[ConnectionOptions],
    ) -> None:
        if act_as is not None and not check_str(act_as, "act_as").strip():
            raise ValueError(f"act_as must be a user name, got {act_as!r}")
        environ = os.environ
        # base_url is the name in every client; server= still works, with a DeprecationWarning.
        base_url = renamed_argument(
            base_url, server, new_name="base_url", old_name="server", where="WorkbenchClient"
        )
        url = resolve_setting(
            base_url, ["WORKBENCH_SERVER"], what="Workbench server address", argument="base_url"
        )
        assert url is not None
        secret = resolve_setting(
            token,
            ["WORKBENCH_API_KEY"],
            what="Workbench API token",
            argument="token",
            required=False,
        )
        if secret is not None:
            auth = StaticAuth.bearer(secret)
        else:
            cookie = (
                check_str(rpc_cookie, "rpc_cookie")
                if rpc_cookie is not None
                else _read_rpc_cookie(environ)
            )
            if not cookie:
                raise ConfigError(
                    "Workbench credentials are required: pass token=... or set "
                    "$WORKBENCH_API_KEY (inside a Workbench session the RPC cookie from "
                    "$RS_SESSION_RPC_COOKIE or $PWB_SESSION_RUNTIME_DIR/rpc_cookie also works)"
                )
            auth = StaticAuth({RPC_COOKIE_HEADER: cookie})
        super().__init__(
            client_transport(
                _server_root(url),
                auth=auth,
                timeouts=timeouts,
                retry=retry,
                limits=limits,
                error_parser=P.error_parser,
                body_error_parser=P.transient_error_in_body,
                connection=connection,
                client="WorkbenchClient",
                credential_hint="the token argument or $WORKBENCH_API_KEY",
                governor=governor,
            ),
            owner=owner,
            reconcile=reconcile,
        )
        self._strict = strict
        self._cadence = cadence
        self._act_as = act_as.strip() if act_as is not None else None
        self._make_resources()

    def _make_resources(self) -> None:
        self.sessions = SessionsResource(self)
        self.jobs = JobsResource(self)
        self.audited_jobs = AuditedJobsResource(self)

    def __repr__(self) -> str:
        acting = "" if self._act_as is None else f", act_as={self._act_as!r}"
        return f"{type(self).__name__}({self._transport.base_url!r}{acting})"

    async def _send(
        self,
        request: Request,
        *,
        retry: RetryPolicy | None = None,
        timeout: float | None = None,
    ) -> Any:
        """Send one RPC and return its ``result``, the answer's envelope decoded by
        :func:`~aiocompute.workbench._protocol.decode_envelope` (an error in the body is
        raised as APIError; a "not found" names the id).

        A call that can name the user it acts for names ``act_as``'s (unless it names one).
        """
        request = P.acting_for(request, self._act_as)
        missing: NotFoundError | None = None
        try:
            response = await self._transport.send(request, retry=retry, timeout=timeout)
            return P.decode_envelope(P.rpc_method(request), response.status, response.body)
        except NotFoundError as exc:
            missing = exc
        if missing.status == 404 and missing.code is None:
            # An HTTP 404 with no RPC error: the address, not the id, is wrong.
            raise _wrong_address(missing, self._transport.base_url)
        raise _naming_the_id(missing, request)

    @api_call("version")
    async def version(self) -> ServerVersion:
        """The server's version and enabled features."""
        return P.parse_version(await self._send(P.version()), strict=self._strict)

    @api_call("users")
    async def users(self) -> list[User]:
        """Every user registered on the server (admin or super-admin token needed)."""
        return P.parse_users(await self._send(P.get_users()), strict=self._strict)

    @api_call("compute_envs")
    async def compute_envs(self, user: str | None = None) -> ComputeEnvironments:
        """Clusters and IDEs the server offers (for ``user``: admin token needed)."""
        result = await self._send(P.get_compute_envs(user))
        return P.parse_compute_envs(result, strict=self._strict)

    # Shared reads behind sessions and jobs.

    async def _listing(
        self,
        ids: Sequence[str] | None = None,
        *,
        user: str | None = None,
        fields: Sequence[str] | None = None,
        include_jobs: bool = False,
        include_all_jobs: bool = False,
    ) -> SessionListing:
        request = P.get_session(
            ids,
            user=user,
            fields=fields,
            include_jobs=include_jobs,
            include_all_jobs=include_all_jobs,
        )
        return P.parse_session_listing(await self._send(request), strict=self._strict)

    async def _history(
        self,
        begin: datetime | str | None = None,
        end: datetime | str | None = None,
        *,
        include_jobs: bool = False,
        include_all_users: bool = False,
    ) -> SessionListing:
        # The history has no user parameter: acting for someone, ask for every user's and
        # keep theirs (unless every user's was asked for).
        only = self._act_as if not include_all_users else None
        request = P.get_historical_session(
            begin, end, include_jobs=include_jobs, include_all_users=include_all_users or bool(only)
        )
        listing = P.parse_session_listing(await self._send(request), strict=self._strict)
        if only is None:
            return listing
        return attrs.evolve(
            listing,
            sessions=tuple(s for s in listing.sessions if s.username == only),
            jobs=tuple(j for j in listing.jobs if j.user == only),
        )

    async def _recent_history(self, *, include_jobs: bool) -> SessionListing:
        begin = datetime.now(timezone.utc) - _HISTORY_WINDOW
        return await self._history(begin, include_jobs=include_jobs)


class SessionsResource(WaitableResource[Session]):
    """``wb.sessions``: launch, list, read, resume, stop and wait for sessions."""

    _default_until = "running"
    _default_timeout = 600.0
    _resource_name = "sessions"
    # The session fields a poll reads: all that state_of and detail_of look at.
    _poll_fields = ("activity_state", "status_detail")

    def __init__(self, client: WorkbenchClient) -> None:
        self._client = client
        self._resumed: dict[str, float] = {}
        self._waiter = client._poller(
            Poller(
                SESSION_STATES,
                self._fetch_many,
                state_of=P.session_state,
                detail_of=lambda s: s.status_detail or None,
                on_missing=self._ended,
                cancel_remote=self._cancel,
                cadence=client._cadence,
                settle=self._fetch_full,
            )
        )

    @api_call("launch")
    async def launch(
        self,
        workbench: str,
        *,
        name: str | None = None,
        launch_parameters: LaunchParameters | Mapping[str, Any] | None = None,
        username: str | None = None,
        open_file: str | None = None,
        working_directory: str | None = None,
        start_hooks: SessionHook | str | Sequence[SessionHook | str] | None = None,
        stop_hooks: SessionHook | str | Sequence[SessionHook | str] | None = None,
        environment: Mapping[str, str] | Sequence[EnvironmentVariable] | None = None,
        reconcile: bool | None = None,
    ) -> LaunchedSession:
        """Launch a session of IDE ``workbench`` (``"RStudio"``, ``"VS Code"``, ...).

        The name is given once: ``launch("VS Code", name="etl")`` names the session and its
        ``launch_parameters``, whose ``name`` defaults to the session's (else the IDE's)
        and ``cluster`` to ``"Local"`` (they are checked before sending). Returns at once;
        use :meth:`wait` to know when it is running.

        A launched session carries nothing of the caller's back (the environment is not
        shown), so a launch that fails after it may have reached the server is reconciled
        by fingerprint: the user's sessions listed before it are compared with those
        after, and a single new session of this IDE and name (and none of this client's
        other launches) is taken as this one; none, after a cut or a gateway's 5xx, sends
        it again; else :class:`~aiocompute.OutcomeUnknown` names the candidates.
        Reconciling costs one listing per launch (``reconcile=False``, or the client's,
        turns it off).
        """
        request = P.launch_session(
            workbench,
            name=name,
            username=username,
            open_file=open_file,
            working_directory=working_directory,
            launch_parameters=launch_parameters,
            start_hooks=start_hooks,
            stop_hooks=stop_hooks,
            environment=environment,
        )

        async def send() -> LaunchedSession:
            result = await self._client._send(request)
            return P.parse_launched_session(result, strict=self._client._strict)

        async def plan() -> Plan[LaunchedSession]:
            kw = P.kwparams_of(request)
            launch_name = (kw.get("launch_parameters") or {}).get("name")
            user = username or self._client._act_as
            claims, kind = self._client._claims, ("workbench.session", user, workbench, name)
            before = {s.id for s in (await self._client._listing(user=user)).sessions}

            def alike(s: Session) -> bool:
                launched_as = s.launch_parameters.name if s.launch_parameters else None
                return (
                    s.workbench in (None, workbench)
                    and (name is None or name in (s.name, s.label, s.display_name))
                    and (launch_name is None or launched_as in (None, launch_name))
                )

            async def find() -> list[LaunchedSession]:
                mine = claims.claimed(kind)
                listing = await self._client._listing(user=user)
                return [
                    LaunchedSession(s.id, s.url, s.project_id)
                    for s in listing.sessions
                    if s.id not in before and s.id not in mine and alike(s)
                ]

            return Plan(
                find,
                id_of=lambda s: s.id,
                lookup=f"wb.sessions.list(), a {workbench} session named {name or launch_name} "
                "that was not there before",
                claims=claims,
                kind=kind,
            )

        return await create_once(
            send,
            plan if self._client._reconciles(reconcile) else None,
            what="Workbench session launch",
        )

    def launched(
        self,
        workbench: str,
        *,
        name: str | None = None,
        launch_parameters: LaunchParameters | Mapping[str, Any] | None = None,
        username: str | None = None,
        open_file: str | None = None,
        working_directory: str | None = None,
        start_hooks: SessionHook | str | Sequence[SessionHook | str] | None = None,
        stop_hooks: SessionHook | str | Sequence[SessionHook | str] | None = None,
        environment: Mapping[str, str] | Sequence[EnvironmentVariable] | None = None,
        until: Until[Session] | None = "running",
        timeout: float | None = None,
        on_exit: str = "stop",
        cleanup_timeout: float = DEFAULT_CLEANUP_TIMEOUT,
    ) -> AbstractAsyncContextManager[Handle[Session]]:
        """Launch a session for the length of an ``async with`` block.

        ``async with wb.sessions.launched("VS Code", launch_parameters=lp) as s:`` launches
        (as :meth:`launch`), waits until ``until`` (default ``"running"``; None: no wait)
        within ``timeout``, and yields a :class:`~aiocompute.Handle` (``s.id``,
        ``s.resource``, ``s.refresh()``, ``s.wait()``, ``s.stop()``). On any exit, errors
        and cancellation included, it runs ``on_exit``: ``"stop"`` (default), ``"suspend"``
        (save the session's state), ``"kill"`` or ``"leave"``, shielded and bounded by
        ``cleanup_timeout`` seconds.
        """

        async def launch() -> str:
            launched = await self.launch(
                workbench,
                name=name,
                launch_parameters=launch_parameters,
                username=username,
                open_file=open_file,
                working_directory=working_directory,
                start_hooks=start_hooks,
                stop_hooks=stop_hooks,
                environment=environment,
            )
            return launched.id

        async def stop(session_id: str) -> None:
            await self.stop(session_id)

        async def suspend(session_id: str) -> None:
            await self.stop(session_id, suspend=True)

        async def kill(session_id: str) -> None:
            await self.stop(session_id, force=True)

        return scoped(
            launch,
            waits=self,
            get=self.get,
            until=until,
            timeout=timeout,
            on_exit=on_exit,
            actions={"stop": stop, "suspend": suspend, "kill": kill},
            cleanup_timeout=cleanup_timeout,
        )

    def list(
        self,
        ids: Sequence[str] | None = None,
        *,
        user: str | None = None,
        fields: Sequence[str] | None = None,
        include_jobs: bool = False,
    ) -> Paginator[Session]:
        """Live sessions (all of ``user``'s, or the given ``ids``), and their jobs if asked.

        Like every ``list``, a :class:`~aiocompute.Paginator`: ``async for s in
        wb.sessions.list()``, or ``await`` it for a :class:`ListedSessions`, a list of the
        sessions that also has the listing's ``.jobs`` (and ``.sessions``, ``.session(id)``,
        ``.job(id)``, as :class:`SessionListing` had). One request (Workbench does not page).
        ``fields`` limits what the server sends for each session.
        """
        # Checked now, not at the first await: bad arguments fail where they were given.
        P.get_session(ids, user=user, fields=fields, include_jobs=include_jobs)

        async def fetch() -> SessionListing:
            return await self._list_fetch(ids, user, fields, include_jobs)

        return _SessionsPaginator(fetch)

    @api_call("list")
    async def _list_fetch(
        self,
        ids: Sequence[str] | None,
        user: str | None,
        fields: Sequence[str] | None,
        include_jobs: bool,
    ) -> SessionListing:
        # The request of list(), traced under the name users call.
        return await self._client._listing(ids, user=user, fields=fields, include_jobs=include_jobs)

    @api_call("get")
    async def get(self, session_id: str, *, user: str | None = None) -> Session:
        """One live session; :class:`~aiocompute.NotFoundError` if there is none."""
        listing = await self._client._listing([session_id], user=user)
        found = listing.session(session_id)
        if found is None:
            raise NotFoundError(f"session not found: {session_id}", status=200)
        return found

    @api_call("history")
    async def history(
        self,
        begin: datetime | str | None = None,
        end: datetime | str | None = None,
        *,
        include_jobs: bool = False,
        include_all_users: bool = False,
    ) -> SessionListing:
        """Sessions that ended between ``begin`` and ``end`` (either may be None)."""
        return await self._client._history(
            begin, end, include_jobs=include_jobs, include_all_users=include_all_users
        )

    @api_call("resume")
    async def resume(
        self,
        session_id: str,
        *,
        username: str | None = None,
        launch_parameters: LaunchParameters | Mapping[str, Any] | None = None,
    ) -> LaunchedSession:
        """Resume a suspended session; then :meth:`wait` for it to be running again."""
        request = P.resume_session(
            session_id, username=username, launch_parameters=launch_parameters
        )
        result = await self._client._send(request)
        self._resumed[session_id] = time.monotonic()
        return P.parse_launched_session(result, strict=self._client._strict)

    def _leaving(self, ids: Sequence[str]) -> Collection[str]:
        # Right after resume() the server may still report "suspended" for a moment: a
        # wait must poll through it rather than call it unreachable.
        now = time.monotonic()
        if any(now - self._resumed.get(i, -math.inf) < _RESUME_GRACE for i in ids):
            return _RESUMABLE
        return ()

    @api_call("stop")
    async def stop(
        self, session_ids: str | Sequence[str], *, force: bool = False, suspend: bool = False
    ) -> None:
        """Stop one session or several (one request); ``force`` kills them, ``suspend``
        saves their state (RStudio)."""
        await self._client._send(P.stop_session(session_ids, force_quit=force, suspend=suspend))

    # Poller plumbing.

    async def _fetch_many(self, ids: Sequence[str]) -> dict[str, Session]:
        # Polls ask only for what decides a wait ("id" is always sent): with 1,000 waits,
        # full polls spent most of each tick on JSON and models nobody looked at. Sessions
        # reaching a wait's target get a full read through ``_fetch_full`` (the poller's
        # ``settle``); watch() events, hooks, and ``last`` of a failed or timed-out wait
        # may carry these light sessions.
        listing = await self._client._listing(ids, fields=self._poll_fields)
        return {s.id: s for s in listing.sessions}

    async def _fetch_full(self, ids: Sequence[str]) -> dict[str, Session]:
        listing = await self._client._listing(ids)
        return {s.id: s for s in listing.sessions}

    async def _ended(self, ids: Sequence[str]) -> dict[str, Session]:
        # Ended sessions leave get_session for the history, where they carry no state.
        wanted = set(ids)
        listing = await self._client._recent_history(include_jobs=False)
        return {
            s.id: attrs.evolve(s, activity_state=s.activity_state or "ended")
            for s in listing.sessions
            if s.id in wanted
        }

    async def _cancel(self, session_id: str) -> None:
        await self.stop([session_id])


class _SessionsPaginator(Paginator[Session]):
    """``wb.sessions.list()``: one page; awaited, a :class:`ListedSessions` (a list that
    keeps the listing's jobs)."""

    def __init__(self, fetch_listing: Callable[[], Awaitable[SessionListing]]) -> None:
        self._fetch_listing = fetch_listing

        async def fetch(marker: str | None) -> Page[Session]:
            return Page((await fetch_listing()).sessions)

        super().__init__(fetch, what="Workbench sessions")

    async def _collect(self) -> ListedSessions:
        return ListedSessions(await self._fetch_listing())

    def __await__(self) -> Generator[Any, None, ListedSessions]:
        return self._collect().__await__()


def _filter_names(value: str | Collection[str] | None, argument: str) -> frozenset[str] | None:
    """A filter argument (one name or several) as a set; statuses compare ignoring case."""
    if value is None:
        return None
    names = [value] if isinstance(value, str) else list(value)
    if not names or not all(isinstance(n, str) and n.strip() for n in names):
        raise ValueError(f"{argument} must be a name or a non-empty collection of names")
    if argument == "statuses":
        return frozenset(n.strip().casefold() for n in names)
    return frozenset(names)


def _server_root(url: str) -> str:
    """The Workbench address without a trailing ``/api``: the client adds ``/api/<method>``
    itself, and ``https://host/api`` (what the API's own docs call its base) must not
    become ``https://host/api/api/...``."""
    root = url.rstrip("/")
    if root.endswith("/api"):
        root = root[: -len("/api")]
    return root


def _wrong_address(error: NotFoundError, base_url: str) -> NotFoundError:
    """A 404 from no RPC: name the address to check, and what it should look like."""
    return type(error)(
        f"{error.message} (no Workbench API at {base_url}: base_url is the Workbench server "
        "address, as in the browser, e.g. https://host or https://host/workbench; the "
        "client adds /api/<method>)",
        status=error.status,
        code=error.code,
        body=error.body,
        method=error.method,
        url=error.url,
        retry_after=error.retry_after,
        request_id=error.request_id,
        headers=error.headers,
    )


# The RPC parameters that name one resource, and what to call it in a "not found" error.
_ID_PARAMS = (("session_id", "session"), ("job_id", "job"), ("audited_job_id", "audited job"))


def _naming_the_id(error: NotFoundError, request: Request) -> NotFoundError:
    """A "not found" error that says which id (Workbench's own messages often do not)."""
    kwparams = P.kwparams_of(request)
    for param, what in _ID_PARAMS:
        value = kwparams.get(param)
        if isinstance(value, str):
            return naming_the_missing(error, what, value)
    return error


def _job_failure(job: Job) -> str | None:
    """A finished job with a non-zero exit code failed, though its status says Finished."""
    if job.state == "Finished" and job.exit_code not in (None, 0):
        detail = f": {job.status_message}" if job.status_message else ""
        return f"job {job.id} finished with exit code {job.exit_code}{detail}"
    return None


# Where a finished audited job's output comes from: all of it, both streams, in one chunk.
_WHOLE_OUTPUT_SOURCE = "audit_details_store"


def _replay_channel(chunk: OutputChunk) -> str | None:
    """The channel a resumed stream counts a chunk's characters in (None: every channel,
    for an audited job's whole output, which may follow live chunks after a reconnect)."""
    if chunk.output_source == _WHOLE_OUTPUT_SOURCE:
        return None
    return chunk.output_type


class _JobsBase(WaitableResource[Job]):
    """What jobs and audited jobs share: reading state, waiting, and streaming output."""

    _default_until = "Finished"
    _default_timeout = 3600.0
    _audited = False
    _what = "job"

    # The RPCs that differ between jobs and audited jobs.
    def _stop_request(self, job_id: str) -> Request:
        return P.stop_job(job_id)

    def _output_request(self, job_id: str, user: str | None) -> Request:
        return P.get_job_output(job_id, user=user)

    def __init__(self, client: WorkbenchClient) -> None:
        self._client = client
        self._waiter = client._poller(
            Poller(
                JOB_STATES,
                self._fetch_many,
                state_of=P.job_state,
                detail_of=lambda j: j.status_message or None,
                failed=_job_failure,
                on_missing=self._ended,
                cancel_remote=self._cancel,
                cadence=client._cadence,
                kind=f"workbench.{self._what.replace(' ', '_')}",
            )
        )

    async def _cancel(self, job_id: str) -> None:
        await self._client._send(self._stop_request(job_id))

    @api_call("get")
    async def get(self, job_id: str) -> Job:
        """A job's current record (live first, then the recent history).

        Workbench has no ``get_job``: jobs are read through ``get_session`` with
        ``include_jobs``. :class:`~aiocompute.NotFoundError` if it is in neither.
        """
        found = await self._fetch_many([job_id])
        if job_id not in found:
            found = await self._ended([job_id])
        if job_id not in found:
            raise NotFoundError(f"{self._what} not found: {job_id}", status=200)
        return found[job_id]

    def list(
        self,
        *,
        statuses: str | Collection[str] | None = None,
        tags: str | Collection[str] | None = None,
    ) -> Paginator[Job]:
        """The user's jobs and audited jobs the server still reports (live and recent).

        A :class:`~aiocompute.Paginator` like every ``list``: ``await`` it for a list,
        or ``async for`` over it. ``statuses`` keeps jobs in one of these states (any
        case: ``"running"`` is ``Running``); ``tags`` keeps jobs that carry every one of
        these tags. Workbench has no server-side filter: both are applied to the answer.
        """
        wanted = _filter_names(statuses, "statuses")
        needed = _filter_names(tags, "tags")

        async def fetch() -> Sequence[Job]:
            jobs = await self._list_fetch()
            if wanted is not None:
                jobs = [j for j in jobs if j.state.casefold() in wanted]
            if needed is not None:
                jobs = [j for j in jobs if needed <= set(j.tags)]
            return jobs

        return Paginator.single(fetch, what=f"Workbench {self._what}s")

    @api_call("list")
    async def _list_fetch(self) -> Sequence[Job]:
        # The request of list(), traced under the name users call.
        listing = await self._client._listing(
            fields=["id"], include_jobs=True, include_all_jobs=True
        )
        return listing.jobs

    @api_call("output")
    async def output(
        self,
        job_id: str,
        *,
        user: str | None = None,
        stall_timeout: float | None = None,
        resume: ResumePolicy | None = None,
        follow: bool = True,
    ) -> AsyncGenerator[OutputChunk, None]:
        """Yield the job's output chunks live, each as soon as its last byte arrives.

        The stream is not cut by the client's total timeout; ``stall_timeout`` (default
        ``Timeouts.stall``) ends it if no byte comes for that long. If the connection
        drops, or ends while the job still runs (``follow``), it is reopened within
        ``resume`` and the replayed output is skipped, so no chunk is lost or repeated.
        An error object in the stream raises the matching :class:`~aiocompute.APIError`
        after the chunks before it. Leaving the loop closes the connection at once.
        """
        request = P.acting_for(self._output_request(job_id, user), self._client._act_as)
        transport = self._client._transport

        def open_stream() -> Any:
            return transport.stream(
                request.method,
                request.path,
                json=request.body,
                idempotent=request.idempotent,
                stall_timeout=stall_timeout,
            )

        async def still_running() -> bool:
            # Read as the stream's owner (``user``), or an admin's follow would never find
            # the job. A job gone from the live listing has ended.
            listing = await self._client._listing(
                user=user, fields=["id"], include_jobs=True, include_all_jobs=True
            )
            job = listing.job(job_id)
            return job is not None and not job.is_terminal

        items = resumable_items(
            open_stream,
            parse=partial(
                P.parse_stream_object,
                audited=self._audited,
                strict=self._client._strict,
                method=P.rpc_method(request),
            ),
            channel=_replay_channel,
            text=lambda c: c.output,
            with_text=lambda c, t: attrs.evolve(c, output=t),
            still_running=still_running if follow else None,
            resume=resume if resume is not None else ResumePolicy(),
            what=f"{self._what} {job_id} output",
        )
        try:
            async for chunk in items:
                yield chunk
        finally:
            await items.aclose()

    @api_call("lines")
    async def lines(
        self,
        job_id: str,
        *,
        user: str | None = None,
        stall_timeout: float | None = None,
        resume: ResumePolicy | None = None,
    ) -> AsyncGenerator[OutputLine, None]:
        """Yield the job's output line by line, stdout and stderr kept apart.

        A line split across chunks is held until its end arrives; what is left when the
        stream ends comes last, without a newline.
        """
        pending: dict[str, str] = {}
        chunks = self.output(job_id, user=user, stall_timeout=stall_timeout, resume=resume)
        try:
            async for chunk in chunks:
                text = pending.pop(chunk.output_type, "") + chunk.output
                *complete, rest = text.split("\n")
                for line in complete:
                    yield OutputLine(chunk.job_id, chunk.output_type, line)
                if rest:
                    pending[chunk.output_type] = rest
        finally:
            await chunks.aclose()
        for output_type, rest in pending.items():
            yield OutputLine(job_id, output_type, rest)

    @api_call("collect")
    async def collect(
        self,
        job_id: str,
        *,
        user: str | None = None,
        stall_timeout: float | None = None,
        resume: ResumePolicy | None = None,
    ) -> JobOutput:
        """Read the whole output (until the stream ends) into a :class:`JobOutput`."""
        chunks = [
            chunk
            async for chunk in self.output(
                job_id, user=user, stall_timeout=stall_timeout, resume=resume
            )
        ]
        return JobOutput.from_chunks(job_id, chunks)

    async def _launch_once(
        self,
        spec: JobSpec,
        launch: Callable[[JobSpec], Awaitable[J]],
        convert: Callable[[Job], J],
        reconcile: bool | None,
    ) -> J:
        """Launch ``spec`` tagged with the owner label and, when reconciling, a client token
        (``aiocompute-token:<hex>``), by which an ambiguous failure is looked up."""
        reconciling = self._client._reconciles(reconcile)
        token, tags = labelled_tags(
            spec.tags, token=new_token() if reconciling else None, owner=self._client.owner
        )
        labelled = attrs.evolve(spec, tags=tags)

        async def plan() -> Plan[J]:
            async def find() -> list[J]:
                # Live jobs first; one that already ended is in the recent history.
                listing = await self._client._listing(
                    user=spec.user, fields=["id"], include_jobs=True, include_all_jobs=True
                )
                jobs = [j for j in listing.jobs if tag_value(j.tags, TOKEN_LABEL) == token]
                if not jobs:
                    ended = await self._client._recent_history(include_jobs=True)
                    jobs = [j for j in ended.jobs if tag_value(j.tags, TOKEN_LABEL) == token]
                return [convert(j) for j in {j.id: j for j in jobs}.values()]

            return Plan(
                find,
                id_of=lambda j: j.id,
                lookup=f"wb.{self._resource_name}.list(), the {self._what} tagged "
                f"{tag(TOKEN_LABEL, token or '')}",
                token=token,
            )

        return await create_once(
            lambda: launch(labelled),
            plan if reconciling else None,
            what=f"Workbench {self._what} launch",
        )

    # Poller plumbing.

    async def _fetch_many(self, ids: Sequence[str]) -> dict[str, Job]:
        listing = await self._client._listing(
            fields=["id"], include_jobs=True, include_all_jobs=True
        )
        wanted = set(ids)
        return {j.id: j for j in listing.jobs if j.id in wanted}

    async def _ended(self, ids: Sequence[str]) -> dict[str, Job]:
        # Jobs that left the live listing: look in the recent history.
        wanted = set(ids)
        listing = await self._client._recent_history(include_jobs=True)
        found: dict[str, Job] = {j.id: j for j in listing.jobs if j.id in wanted}
        for s in listing.sessions:
            if s.job is not None and s.job.id in wanted:
                found.setdefault(s.job.id, s.job)
        return found


class JobsResource(_JobsBase):
    """``wb.jobs``: launch, read, stream output from, stop and wait for Workbench jobs.

    :meth:`wait` waits for ``Finished`` by default, and treats a ``Finished`` job with a
    non-zero exit code (like ``Failed``, ``Killed``, ``Canceled``) as
    :class:`~aiocompute.UnreachableState`.
    """

    _resource_name = "jobs"

    @api_call("launch")
    async def launch(
        self,
        spec: JobSpec,
        *,
        apply_config_settings: bool | None = None,
        reconcile: bool | None = None,
    ) -> Job:
        """Launch a job; returns it as the server recorded it (status ``Pending``).

        The job is tagged ``aiocompute-owner:<owner>`` and ``aiocompute-token:<hex>`` (a
        tag of your own with that prefix is used instead). If the launch fails after it may
        have reached the server, the job is looked up by that tag: found, it is returned;
        surely absent, the launch is sent again; else :class:`~aiocompute.OutcomeUnknown`
        (``reconcile``: default the client's setting; False raises it at once).
        """

        async def send(labelled: JobSpec) -> Job:
            request = P.launch_job(labelled, apply_config_settings=apply_config_settings)
            result = await self._client._send(request)
            return P.parse_job_launch(result, strict=self._client._strict)

        return await self._launch_once(spec, send, lambda job: job, reconcile)

    @api_call("stop")
    async def stop(self, job_id: str | Sequence[str], *, force: bool = False) -> None:
        """Stop a job, or each of several (``force``: kill -9 instead of a terminate
        signal). Several ids: each is tried; failures raise one ``ExceptionGroup``."""

        async def stop_one(one: str) -> None:
            await self._client._send(P.stop_job(one, force=force))

        await each_id(job_id, stop_one, argument="job_id")


class AuditedJobsResource(_JobsBase):
    """``wb.audited_jobs``: like :class:`JobsResource`, plus audit :meth:`details`.

    Output of a finished audited job comes as one chunk from the audit store; a live one
    streams like a job's.
    """

    _resource_name = "audited_jobs"
    _audited = True
    _what = "audited job"

    def _stop_request(self, job_id: str) -> Request:
        return P.stop_audited_job(job_id)

    def _output_request(self, job_id: str, user: str | None) -> Request:
        return P.get_audited_job_output(job_id, user=user)

    @api_call("launch")
    async def launch(
        self,
        spec: JobSpec,
        *,
        apply_config_settings: bool | None = None,
        reconcile: bool | None = None,
    ) -> AuditedJob:
        """Launch an audited job; returns it as the server recorded it.

        Tagged and reconciled as :meth:`JobsResource.launch`.
        """

        async def send(labelled: JobSpec) -> AuditedJob:
            request = P.launch_audited_job(labelled, apply_config_settings=apply_config_settings)
            result = await self._client._send(request)
            return P.parse_audited_job_launch(result, strict=self._client._strict)

        def audited(job: Job) -> AuditedJob:
            return (
                job
                if isinstance(job, AuditedJob)
                else AuditedJob(**attrs.asdict(job, recurse=False))
            )

        return await self._launch_once(spec, send, audited, reconcile)

    @api_call("details")
    async def details(self, audited_job_id: str, *, user: str | None = None) -> AuditedJobDetails:
        """The audit details of a completed audited job."""
        result = await self._client._send(P.get_audited_job_details(audited_job_id, user=user))
        return P.parse_audited_job_details(result, strict=self._client._strict)

    @api_call("stop")
    async def stop(self, audited_job_id: str | Sequence[str], *, force: bool = False) -> None:
        """Stop an audited job, or each of several (``force``: kill instead of terminate).
        Several ids: each is tried; failures raise one ``ExceptionGroup``."""

        async def stop_one(one: str) -> None:
            await self._client._send(P.stop_audited_job(one, force=force))

        await each_id(audited_job_id, stop_one, argument="audited_job_id")
