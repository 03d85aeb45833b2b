"""The async LakeSail platform client: ``LakeSailClient`` and its resources.

Every call goes through :meth:`LakeSailClient._send`: build the request in ``_protocol``
(validated, no I/O), send it through the shared transport (reads retried; creates, closes,
relaunches and token issues only if the request never left), read the answer in
``_protocol``. Lists are :class:`~aiocompute.Paginator` objects following the opaque
``marker``. Waits go through one :class:`~aiocompute._core.polling.Poller` whose reads are
session *list* pages (one request covers up to 100 sessions), with a per-id read only for a
session the listing did not show.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Any

from .._core.auth import StaticAuth
from .._core.config import resolve_setting
from .._core.governor import Governor
from .._core.handles import DEFAULT_CLEANUP_TIMEOUT, Handle, scoped
from .._core.http_config import DEFAULT_LIMITS, DEFAULT_TIMEOUTS, PoolLimits, Timeouts
from .._core.network import ConnectionOptions, Unpack
from .._core.observability import api_call
from .._core.pagination import Page, Paginator
from .._core.polling import Poller, per_id_fetcher
from .._core.protocol_kit import Request
from .._core.reconcile import TOKEN_LABEL, Plan, create_once, labelled_map, new_token
from .._core.resources import BaseClient, WaitableResource, client_transport, each_id
from .._core.retries import DEFAULT_RETRY, RetryPolicy
from .._core.wait_types import PollCadence, Until
from . import _protocol as P
from ._states import READY_STATES, SESSION_STATES
from .models import (
    EndpointType,
    Session,
    SessionConfig,
    SessionList,
    SessionStatus,
    SessionToken,
    WorkloadConfig,
    WorkloadConfigList,
    WorkloadSettings,
)

__all__ = ["LakeSailClient", "SessionsResource", "WorkloadConfigsResource"]

#: The environment variable holding the API token (a user token or a service-account key).
TOKEN_ENV = "LAKESAIL_API_TOKEN"
#: The environment variable that overrides the API base URL (e.g. to reach an emulator).
BASE_URL_ENV = "LAKESAIL_BASE_URL"


class LakeSailClient(BaseClient):
    """Async client for the LakeSail platform workloads API.

    ``token`` is a user API token or a service-account key, both sent as
    ``Authorization: Bearer <token>`` (default ``$LAKESAIL_API_TOKEN``). ``base_url`` is the
    API root (default ``$LAKESAIL_BASE_URL``, else ``https://platform.lakesail.com/api/v1``).

    ``timeouts``, ``retry`` (used for reads; creates, closes, relaunches and token issues
    are retried only when the request never left) and ``limits`` configure the transport;
    ``governor`` paces every request of this client (default: a :class:`~aiocompute.RateGovernor`
    of its own, unlimited until the first 429); ``cadence`` sets how often waits poll;
    ``strict=True`` rejects answers with unknown fields (for tests against fixtures).

    ``owner`` (default ``user@host``) labels what the client creates, where the API has a
    field for it; ``reconcile=False`` turns off the reconciliation of creates that fail
    ambiguously (see "Launching safely" in the docs; each create also takes ``reconcile=``).

    Use it as ``async with LakeSailClient(...) as ls:`` or call :meth:`aclose`.
    """

    sessions: SessionsResource
    workload_configs: WorkloadConfigsResource

    # The first part of the name of every span of this API (see _core.observability).
    _api_name = "lakesail"

    def __init__(
        self,
        token: str | None = None,
        *,
        base_url: str | None = None,
        timeouts: Timeouts = DEFAULT_TIMEOUTS,
        retry: RetryPolicy = DEFAULT_RETRY,
        limits: PoolLimits = DEFAULT_LIMITS,
        governor: Governor | None = None,
        cadence: PollCadence | None = None,
        strict: bool = False,
        owner: str | None = None,
        reconcile: bool = True,
        **connection: Unpack[ConnectionOptions],
    ) -> None:
        secret = resolve_setting(token, [TOKEN_ENV], what="LakeSail API token", argument="token")
        assert secret is not None  # required=True raised otherwise
        url = resolve_setting(
            base_url,
            [BASE_URL_ENV],
            what="LakeSail API base URL",
            argument="base_url",
            required=False,
        )
        super().__init__(
            client_transport(
                (url or P.DEFAULT_BASE_URL).rstrip("/"),
                auth=StaticAuth.bearer(secret),
                timeouts=timeouts,
                retry=retry,
                limits=limits,
                error_parser=P.error_parser,
                connection=connection,
                client="LakeSailClient",
                credential_hint="the token argument or $LAKESAIL_API_TOKEN",
                governor=governor,
            ),
            owner=owner,
            reconcile=reconcile,
        )
        self._strict = strict
        self._cadence = cadence
        self._make_resources()

    def _make_resources(self) -> None:
        self.sessions = SessionsResource(self)
        self.workload_configs = WorkloadConfigsResource(self)

    async def _send(self, request: Request, *, expect_body: bool = True) -> Any:
        """Send one request; return its decoded JSON body (None when not ``expect_body``)."""
        response = await self._transport.send(request)
        if not expect_body:
            return None
        return response.json()

    async def _session_page(self, request: Request) -> SessionList:
        return P.parse_session_list(await self._send(request), strict=self._strict)


def _page_options(limit: int | None, max_items: int | None) -> dict[str, Any]:
    # limit=0 asks for a count only (``total``) with no items: one page, never a loop.
    return {"max_items": max_items, "max_pages": 1 if limit == 0 else None}


class SessionsResource(WaitableResource[Session]):
    """``ls.sessions``: list, create, read, close, relaunch, issue proxy tokens and wait.

    :meth:`wait` waits for ``active`` or ``idle`` by default (compute ready); ``closed`` and
    ``failed`` end it with :class:`~aiocompute.UnreachableState`. On the real platform a
    session leaves ``pending`` on the first proxy request after its compute is ready.
    """

    _default_until = READY_STATES
    _default_timeout = 900.0
    _resource_name = "sessions"

    def __init__(self, client: LakeSailClient) -> None:
        self._client = client
        self._waiter = client._poller(
            Poller(
                SESSION_STATES,
                self._fetch_many,
                state_of=P.session_state,
                detail_of=_detail,
                on_missing=per_id_fetcher(self.get),
                cancel_remote=self.close,
                cadence=client._cadence,
            )
        )

    def list(
        self,
        *,
        team_id: str | None = None,
        endpoint_type: EndpointType | str | None = None,
        status: SessionStatus | str | None = None,
        limit: int | None = None,
        max_items: int | None = None,
    ) -> Paginator[Session]:
        """Sessions visible to the caller, across pages.

        ``await ls.sessions.list()`` gives them all as a list; ``async for s in
        ls.sessions.list()`` fetches a page at a time and stops fetching when the loop stops.
        ``limit`` is the page size (0..100, the server's default 100; 0 returns no sessions);
        ``max_items`` stops after that many. Arguments are checked here, before any request.
        """
        first = P.list_sessions(
            team_id=team_id, endpoint_type=endpoint_type, status=status, limit=limit
        )

        async def fetch(marker: str | None) -> Page[Session]:
            request = (
                first
                if marker is None
                else P.list_sessions(
                    team_id=team_id,
                    endpoint_type=endpoint_type,
                    status=status,
                    limit=limit,
                    marker=marker,
                )
            )
            page = await self._list_fetch(request)
            return Page(page.sessions, page.marker)

        return Paginator(fetch, what="LakeSail sessions", **_page_options(limit, max_items))

    @api_call("list")
    async def _list_fetch(self, request: Request) -> SessionList:
        # One page for list(): each is a request, traced under the name users call.
        return await self._client._session_page(request)

    @api_call("list_page")
    async def list_page(
        self,
        *,
        team_id: str | None = None,
        endpoint_type: EndpointType | str | None = None,
        status: SessionStatus | str | None = None,
        limit: int | None = None,
        marker: str | None = None,
    ) -> SessionList:
        """One page of sessions with everything side-loaded on it (members, service accounts,
        workloads, workload configs), its ``total`` and the next page's ``marker``."""
        request = P.list_sessions(
            team_id=team_id, endpoint_type=endpoint_type, status=status, limit=limit, marker=marker
        )
        return await self._client._session_page(request)

    @api_call("create")
    async def create(
        self,
        *,
        endpoint_type: EndpointType | str | None = EndpointType.SPARK_CONNECT,
        name: str | None = None,
        team_id: str | None = None,
        member_id: str | None = None,
        service_account_id: str | None = None,
        notebook_id: str | None = None,
        config: SessionConfig | Mapping[str, Any] | None = None,
        metadata: Mapping[str, str] | None = None,
        workload_config_id: str | None = None,
        allow_shared: bool | None = None,
        extra: Mapping[str, Any] | None = None,
        reconcile: bool | None = None,
    ) -> Session:
        """Create a session; it comes back ``pending`` (use :meth:`wait` for it to be ready).

        The platform resolves or creates a compute config (``workload_config_id`` picks a
        named one) and reuses a compute instance (``allow_shared``) or provisions one.

        ``metadata`` also carries the client's owner label (``aiocompute-owner``) and a
        client token (``aiocompute-token``; give your own to make the create idempotent
        across processes). If the create fails after it may have reached the server, the
        session is looked up by that token: found, it is returned; surely absent, the
        create is sent again; else :class:`~aiocompute.OutcomeUnknown` (``reconcile``:
        default the client's setting; False raises it at once).
        """
        reconciling = self._client._reconciles(reconcile)
        token, labelled = labelled_map(
            metadata, token=new_token() if reconciling else None, owner=self._client.owner
        )
        request = P.create_session(
            endpoint_type=endpoint_type,
            name=name,
            team_id=team_id,
            member_id=member_id,
            service_account_id=service_account_id,
            notebook_id=notebook_id,
            config=config,
            metadata=labelled,
            workload_config_id=workload_config_id,
            allow_shared=allow_shared,
            extra=extra,
        )

        async def send() -> Session:
            return P.parse_session(await self._client._send(request), strict=self._client._strict)

        async def plan() -> Plan[Session]:
            async def find() -> list[Session]:
                return [
                    s
                    async for s in self.list(team_id=team_id)
                    if s.metadata.get(TOKEN_LABEL) == token
                ]

            return Plan(
                find,
                id_of=lambda s: s.id,
                lookup=(
                    f'ls.sessions.list(), the session with metadata["{TOKEN_LABEL}"] == "{token}"'
                ),
                token=token,
            )

        return await create_once(
            send, plan if reconciling else None, what="LakeSail session create"
        )

    @api_call("get")
    async def get(self, session_id: str) -> Session:
        """One session; :class:`~aiocompute.NotFoundError` if there is none. The owner also
        gets its ``connection_info``."""
        data = await self._client._send(P.get_session(session_id))
        return P.parse_session(data, strict=self._client._strict)

    def created(
        self,
        *,
        endpoint_type: EndpointType | str | None = EndpointType.SPARK_CONNECT,
        name: str | None = None,
        team_id: str | None = None,
        member_id: str | None = None,
        service_account_id: str | None = None,
        notebook_id: str | None = None,
        config: SessionConfig | Mapping[str, Any] | None = None,
        metadata: Mapping[str, str] | None = None,
        workload_config_id: str | None = None,
        allow_shared: bool | None = None,
        extra: Mapping[str, Any] | None = None,
        until: Until[Session] | None = READY_STATES,
        timeout: float | None = None,
        on_exit: str = "close",
        cleanup_timeout: float = DEFAULT_CLEANUP_TIMEOUT,
    ) -> AbstractAsyncContextManager[Handle[Session]]:
        """Create a session for the length of an ``async with`` block.

        ``async with ls.sessions.created(name="etl") as s:`` creates it (as :meth:`create`),
        waits until it is ready (``until``, default active or idle; None: no wait) within
        ``timeout``, and yields a :class:`~aiocompute.Handle`. On any exit, errors and
        cancellation included, ``on_exit`` runs, shielded and bounded by
        ``cleanup_timeout``: ``"close"`` (default) or ``"leave"``.
        """

        async def launch() -> str:
            session = await self.create(
                endpoint_type=endpoint_type,
                name=name,
                team_id=team_id,
                member_id=member_id,
                service_account_id=service_account_id,
                notebook_id=notebook_id,
                config=config,
                metadata=metadata,
                workload_config_id=workload_config_id,
                allow_shared=allow_shared,
                extra=extra,
            )
            return session.id

        return scoped(
            launch,
            waits=self,
            get=self.get,
            until=until,
            timeout=timeout,
            on_exit=on_exit,
            actions={"close": self.close},
            cleanup_timeout=cleanup_timeout,
        )

    @api_call("close")
    async def close(self, session_id: str | Sequence[str]) -> None:
        """Close the session now, or each of several (it becomes ``closed``; cleanup happens
        in the background). Several ids: each is tried; failures raise one
        ``ExceptionGroup``."""

        async def close_one(one: str) -> None:
            await self._client._send(P.close_session(one), expect_body=False)

        await each_id(session_id, close_one, argument="session_id")

    @api_call("token")
    async def token(self, session_id: str, *, duration_seconds: int | None = None) -> SessionToken:
        """Issue a short-lived bearer token for the session's gRPC proxy (owner or org admin).

        Dial ``session.connection_info.grpc_endpoint`` and send ``Authorization: Bearer
        <token.token>`` in the gRPC metadata. ``duration_seconds``: its lifetime (the
        platform's default if None). Not retried once sent.
        """
        request = P.issue_session_token(session_id, duration_seconds=duration_seconds)
        return P.parse_session_token(await self._client._send(request), strict=self._client._strict)

    @api_call("relaunch")
    async def relaunch(self, session_id: str) -> Session:
        """A brand-new session (new id) with the same workload configuration as a closed or
        failed one; the original is left as it is. The server refuses other states.

        Not reconciled: the request has no body to carry a client token, so a relaunch whose
        answer is lost raises :class:`~aiocompute.OutcomeUnknown` (list the sessions to find
        a new one like the original before relaunching again)."""
        data = await self._client._send(P.relaunch_session(session_id))
        return P.parse_session(data, strict=self._client._strict, what="relaunched session")

    # Poller plumbing.

    async def _fetch_many(self, ids: Sequence[str]) -> dict[str, Session]:
        """Read waited sessions from list pages: one request covers up to 100 sessions (and
        no status filter, so a session is found whatever its state). Pages are followed
        until every id was seen, within a budget; the poller reads the rest one by one."""
        wanted = set(ids)
        found: dict[str, Session] = {}
        budget = math.ceil(len(wanted) / P.MAX_LIMIT) + 1
        marker: str | None = None
        for _ in range(budget):
            request = P.list_sessions(limit=P.MAX_LIMIT, marker=marker)
            page = await self._client._session_page(request)
            for session in page.sessions:
                if session.id in wanted:
                    found[session.id] = session
            if len(found) == len(wanted) or page.marker is None:
                break
            marker = page.marker
        return found


def _detail(session: Session) -> str | None:
    parts = [p for p in (session.status_message, session.termination_reason) if p]
    return "; ".join(parts) or None


class WorkloadConfigsResource:
    """``ls.workload_configs``: named, reusable compute configurations of teams."""

    _resource_name = "workload_configs"

    def __init__(self, client: LakeSailClient) -> None:
        self._client = client

    def list(
        self,
        *,
        team_id: str | None = None,
        limit: int | None = None,
        max_items: int | None = None,
    ) -> Paginator[WorkloadConfig]:
        """Workload configs visible to the caller (anonymous inline ones excluded), across
        pages: awaitable (a list) and async-iterable (a page at a time)."""
        first = P.list_workload_configs(team_id=team_id, limit=limit)

        async def fetch(marker: str | None) -> Page[WorkloadConfig]:
            request = (
                first
                if marker is None
                else P.list_workload_configs(team_id=team_id, limit=limit, marker=marker)
            )
            page = await self._list_fetch(request)
            return Page(page.items, page.marker)

        return Paginator(fetch, what="LakeSail workload configs", **_page_options(limit, max_items))

    @api_call("list_page")
    async def list_page(
        self, *, team_id: str | None = None, limit: int | None = None, marker: str | None = None
    ) -> WorkloadConfigList:
        """One page of workload configs and the next page's ``marker``."""
        return await self._page(
            P.list_workload_configs(team_id=team_id, limit=limit, marker=marker)
        )

    @api_call("list")
    async def _list_fetch(self, request: Request) -> WorkloadConfigList:
        # One page for list(): each is a request, traced under the name users call.
        return await self._page(request)

    async def _page(self, request: Request) -> WorkloadConfigList:
        data = await self._client._send(request)
        return P.parse_workload_config_list(data, strict=self._client._strict)

    @api_call("create")
    async def create(
        self,
        name: str,
        *,
        team_id: str | None = None,
        workload_type: str | None = None,
        cluster_id: str | None = None,
        config: WorkloadSettings | Mapping[str, Any] | None = None,
        endpoint_limits: Mapping[str, int] | None = None,
        extra: Mapping[str, Any] | None = None,
    ) -> WorkloadConfig:
        """Create a named workload config for a team (``workload_type``, ``cluster_id`` and
        ``team_id`` cannot change afterwards). Not retried once sent."""
        request = P.create_workload_config(
            name,
            team_id=team_id,
            workload_type=workload_type,
            cluster_id=cluster_id,
            config=config,
            endpoint_limits=endpoint_limits,
            extra=extra,
        )
        data = await self._client._send(request)
        return P.parse_workload_config(data, strict=self._client._strict)

    @api_call("get")
    async def get(self, workload_config_id: str) -> WorkloadConfig:
        """One workload config in full; :class:`~aiocompute.NotFoundError` if there is none."""
        data = await self._client._send(P.get_workload_config(workload_config_id))
        return P.parse_workload_config(data, strict=self._client._strict)
