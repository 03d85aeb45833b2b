"""What the Workbench resources need of their client: one RPC call, and the shared reads.

:class:`WorkbenchBase` is the part of :class:`~aiocompute.workbench.WorkbenchClient` that
``sessions`` and ``jobs`` call into (``_send``, ``_listing``, ``_history``): they import
this class rather than the client, which imports them.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta, timezone
from typing import Any

import attrs

from .._core.protocol_kit import Request
from .._core.resources import BaseClient
from .._core.retries import RetryPolicy
from .._core.wait_types import PollCadence
from .._exceptions import NotFoundError, naming_the_missing
from . import _protocol as P
from .models import SessionListing

__all__ = ["WorkbenchBase"]

# How far back a vanished session or job is looked for in the history.
_HISTORY_WINDOW = timedelta(days=1)


class WorkbenchBase(BaseClient):
    """The RPC call and the reads shared by the resources (see the module's docstring)."""

    _strict: bool
    _cadence: PollCadence | None
    _act_as: str | None

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
