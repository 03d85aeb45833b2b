"""The async Posit Workbench client: ``WorkbenchClient`` and its resources.

Every call goes through :meth:`WorkbenchClient._send`: build the request in ``_protocol``
(validated, no I/O), send it through the shared transport (retries for reads only), decode
the answer's envelope in ``_protocol`` (status, then ``error``, then ``result``). Waiting
goes through one :class:`~aiocompute._core.polling.Poller` per resource kind, which polls
all waited ids with one ``get_session`` per tick; job output goes through the shared
resumable stream (``_core.streaming``).
"""

from __future__ import annotations

import os
from collections.abc import (
    Mapping,
)
from datetime import timedelta
from pathlib import Path

from .._core.auth import StaticAuth
from .._core.config import ConfigError, check_str, renamed_argument, resolve_setting
from .._core.governor import Governor
from .._core.http_config import DEFAULT_LIMITS, DEFAULT_TIMEOUTS, PoolLimits, Timeouts
from .._core.network import ConnectionOptions, Unpack
from .._core.observability import api_call
from .._core.resources import client_transport
from .._core.retries import DEFAULT_RETRY, RetryPolicy
from .._core.wait_types import PollCadence
from . import _protocol as P
from ._base import WorkbenchBase
from .jobs import AuditedJobsResource, JobsResource
from .models import (
    ComputeEnvironments,
    ServerVersion,
    User,
)
from .sessions import SessionsResource

__all__ = ["AuditedJobsResource", "JobsResource", "SessionsResource", "WorkbenchClient"]

# The resources live in .sessions and .jobs; importable from here as before.

#: The header a client inside a Workbench session sends instead of a token.
RPC_COOKIE_HEADER = "X-RS-Session-Server-RPC-Cookie"
# How far back a vanished session or job is looked for in the history.
_HISTORY_WINDOW = timedelta(days=1)


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


class WorkbenchClient(WorkbenchBase):
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


def _server_root(url: str) -> str:
    """The Workbench address without a trailing ``/api``: the client adds ``/api/<method>``
    itself, and ``https://host/api`` (what the API's own docs call its base) must not
    become ``https://host/api/api/...``."""
    root = url.rstrip("/")
    if root.endswith("/api"):
        root = root[: -len("/api")]
    return root
