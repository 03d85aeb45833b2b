"""What the ``aiocompute workbench`` commands share: the connection options and the client,
command lines to suggest, states, waits over many ids, and the jobs table."""

from __future__ import annotations

import argparse
import enum
import os
from collections.abc import Callable, Sequence
from typing import Any

from rich.text import Text

from .._core.resources import WaitableResource
from .._core.states import StateTable
from ..workbench.client import WorkbenchClient
from ..workbench.models import (
    Job,
    Session,
)
from ._app import UsageError
from ._common import command_line as common_command_line
from ._common import (
    connection_option,
    dedupe,
    exit_for,
    given,
    missing_secret,
    new_client,
    secret_option,
    target_state,
    wait_and_show,
)
from ._output import Output, state_style

__all__ = [
    "JOB_TIMEOUT",
    "LAUNCH_CONCURRENCY",
    "OUTPUT_QUIET",
    "OUTPUT_READ_FOR",
    "SESSION_TIMEOUT",
    "command_line",
    "connect",
    "connection_options",
    "job_state",
    "jobs_table",
    "name_of",
    "server_of",
    "session_state",
    "session_url",
    "wait_ids",
    "wait_many",
]

SESSION_TIMEOUT = 600.0
JOB_TIMEOUT = 3600.0
LAUNCH_CONCURRENCY = 16
#: ``jobs output`` of a running job: how long to read its stream at most (--read-for), and
#: the quiet moment after which the replay of what it wrote so far is taken as over.
OUTPUT_READ_FOR = 2.0
OUTPUT_QUIET = 0.5
_SERVER_ENV = "WORKBENCH_SERVER"
#: Read by the SDK's client (which also falls back to a session's RPC cookie), not here.
_TOKEN_ENV = "WORKBENCH_API_KEY"


# --------------------------------------------------------------------------- configuration


def connection_options(parser: argparse.ArgumentParser) -> None:
    connection_option(
        parser,
        "--server",
        metavar="URL",
        help=f"Workbench address, e.g. https://workbench.example.com (default: ${_SERVER_ENV})",
    )
    secret_option(parser, "--token", metavar="TOKEN", what="API token", env=_TOKEN_ENV)
    connection_option(
        parser,
        "--act-as",
        metavar="USER",
        help="work for this user: read, wait for and tail their sessions and jobs (admin "
        "token), launch for them (super-admin token)",
    )


def connect(args: argparse.Namespace) -> WorkbenchClient:
    """A client from ``--server`` / ``--token``, else ``$WORKBENCH_SERVER`` /
    ``$WORKBENCH_API_KEY``, acting for ``--act-as`` if given; :class:`UsageError` (exit 2)
    naming what is missing."""
    server = server_of(args)
    if not server:
        raise UsageError(f"no Workbench server address: set {_SERVER_ENV} (or pass --server URL)")
    token = given(args, "token", "--token", instead=_TOKEN_ENV)
    # The client reads $WORKBENCH_API_KEY itself; its ConfigError means no token at all.
    # Worded so that redact() finds nothing that looks like "token: <value>" in it.
    missing = missing_secret("Workbench API token", _TOKEN_ENV, "--token")
    act_as = getattr(args, "act_as", None)
    if act_as is not None and not act_as.strip():
        raise UsageError("--act-as needs a user name")
    with new_client("invalid Workbench server address", missing=missing):
        return WorkbenchClient(server, token=token, act_as=act_as)


def server_of(args: argparse.Namespace) -> str:
    """``--server``, else ``$WORKBENCH_SERVER``, without a trailing slash ("" if neither)."""
    server = getattr(args, "server", None) or os.environ.get(_SERVER_ENV, "")
    return str(server).strip().rstrip("/")


def command_line(args: argparse.Namespace, *words: str) -> str:
    """The command line that does ``words`` with the same server and user as this one."""
    return common_command_line(
        args, "workbench", *words, options=(("--server", "server"), ("--act-as", "act_as"))
    )


def session_url(args: argparse.Namespace, path: str | None) -> str:
    """A session's address in a browser: the server's address and the session's path."""
    if not path:
        return "-"
    return path if "://" in path else server_of(args) + path


# --------------------------------------------------------------------------- shared helpers


def session_state(session: Session | None) -> str | None:
    """A session's ``activity_state`` as a plain string (None if unknown)."""
    if session is None or session.activity_state is None:
        return None
    state = session.activity_state
    return str(state.value) if isinstance(state, enum.Enum) else str(state)


def job_state(job: Job | None) -> str | None:
    return None if job is None else job.state


async def wait_many(
    out: Output,
    resource: WaitableResource[Any],
    items: Sequence[tuple[str, str]],
    *,
    table: StateTable,
    target: str,
    wait_timeout: float,
    state_of: Callable[[Any], str | None],
    key: str,
    title: str,
) -> tuple[list[dict[str, Any]], list[BaseException]]:
    """Wait for every id with live progress; print the summary; return JSON entries, errors."""
    waited = await wait_and_show(
        out,
        resource,
        items,
        table=table,
        until=target,
        timeout=wait_timeout,
        state_of=state_of,
        title=title,
    )
    entries = [
        {
            "id": w.id,
            "name": w.label or name_of(w.resource),
            "state": w.state,
            key: w.resource,
            "error": w.error,
        }
        for w in waited
    ]
    return entries, [w.error for w in waited if w.error is not None]


def name_of(resource: Session | Job | None) -> str:
    return (resource.name or "") if resource is not None else ""


async def wait_ids(
    args: argparse.Namespace,
    out: Output,
    resource: Callable[[WorkbenchClient], WaitableResource[Any]],
    *,
    table: StateTable,
    state_of: Callable[[Any], str | None],
    key: str,
    what: str,
    stop_note: str,
) -> int:
    """``sessions wait`` / ``jobs wait``: every ``args.ids`` until ``args.until``; the
    document is ``{<key>s: [entry per id]}``. ``stop_note`` is said if Ctrl-C stops it."""
    target = target_state(table, args.until, key)
    ids = dedupe(args.ids)
    async with connect(args) as wb:
        with out.keeps_running(stop_note):
            entries, errors = await wait_many(
                out,
                resource(wb),
                [(one, "") for one in ids],
                table=table,
                target=target,
                wait_timeout=args.timeout,
                state_of=state_of,
                key=key,
                title=f"waiting for {len(ids)} {what}(s) to be {target}",
            )
    out.emit({f"{key}s": entries})
    return exit_for(errors)


def jobs_table(out: Output, jobs: Sequence[Job], *, title: str | None = None) -> Any:
    table = out.table("ID", "NAME", "STATUS", "EXIT", "CLUSTER", "SUBMITTED", title=title)
    for job in jobs:
        table.add_row(
            job.id,
            job.name or "-",
            Text(job.state, style="red" if job.failed else state_style(job.state)),
            "-" if job.exit_code is None else str(job.exit_code),
            job.cluster or "-",
            job.submission_time.isoformat(timespec="seconds") if job.submission_time else "-",
        )
    return table
