"""``aiocompute lakesail ...``: LakeSail sessions and compute configs from the command line.

The API token (a user token or a service-account key) comes from ``--token`` or (preferably)
``$LAKESAIL_API_TOKEN``; the API root from ``--url`` or ``$LAKESAIL_BASE_URL`` (default: the
platform's).
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from rich.text import Text

from .._core.reconcile import OWNER_LABEL
from ..lakesail._protocol import DEFAULT_BASE_URL, MAX_LIMIT
from ..lakesail._states import READY_STATES, SESSION_STATES
from ..lakesail.client import BASE_URL_ENV, TOKEN_ENV, LakeSailClient
from ..lakesail.models import Session, WorkloadConfig
from ._app import EXIT_OK, CommandTree, UsageError
from ._common import (
    at_least_one,
    command_line,
    connection_option,
    dedupe,
    exit_for,
    for_each,
    keeps_running,
    new_client,
    report_each,
    secret,
    secret_option,
    setting,
    shown,
    target_state,
    timeout_option,
    user_input,
    wait_and_show,
    waited_data,
)
from ._output import Output, state_style
from ._owned import Owned, owner_of, owner_option, reap, reap_options

__all__ = ["connect", "register"]

_SESSION_TIMEOUT = 900.0
#: What ``--until`` calls "compute up" (active or idle), the default target.
_READY = "ready"


# --------------------------------------------------------------------------- configuration


def _connection_options(parser: argparse.ArgumentParser) -> None:
    connection_option(
        parser,
        "--url",
        metavar="URL",
        help=f"API root (default: ${BASE_URL_ENV}, else {DEFAULT_BASE_URL})",
    )
    secret_option(
        parser, "--token", metavar="TOKEN", what="API token or service-account key", env=TOKEN_ENV
    )


def connect(args: argparse.Namespace) -> LakeSailClient:
    """A client from ``--url`` / ``--token``, else ``$LAKESAIL_BASE_URL`` /
    ``$LAKESAIL_API_TOKEN``; :class:`UsageError` (exit 2) naming what is missing."""
    token = secret(args, "token", TOKEN_ENV, "--token", what="LakeSail API token")
    url = setting(args, "url", BASE_URL_ENV, "--url")
    # A ConfigError is not expected (the token was checked above).
    with new_client("invalid LakeSail API address"):
        return LakeSailClient(token, base_url=url)


# --------------------------------------------------------------------------- helpers


def _close_note(args: argparse.Namespace, ids: Sequence[str]) -> str:
    return keeps_running(
        "session", ids, command_line(args, "lakesail", "sessions", "close", *ids), verb="close"
    )


def _state(session: Session | None) -> str | None:
    return None if session is None else session.state


def _until(value: str) -> str | frozenset[str]:
    if value.strip().lower() == _READY:
        return READY_STATES
    try:
        return target_state(SESSION_STATES, value, "session")
    except UsageError:
        known = ", ".join(sorted(SESSION_STATES.states))
        raise UsageError(
            f"unknown session state {value!r}; expected {_READY} (active or idle) or one of: "
            f"{known}"
        ) from None


def _until_text(until: str | frozenset[str]) -> str:
    return until if isinstance(until, str) else " or ".join(sorted(until))


def _session_table(out: Output, session: Session, title: str) -> None:
    table = out.table("FIELD", "VALUE", title=title)
    table.add_row("status", Text(session.state, style=state_style(session.state)))
    table.add_row("name", shown(session.name))
    table.add_row("endpoint", shown(session.endpoint_type))
    table.add_row("message", shown(session.status_message))
    table.add_row("termination", shown(session.termination_reason))
    table.add_row("team", shown(session.team_id))
    table.add_row("workload", shown(session.workload_id))
    if session.connection_info is not None:
        info = session.connection_info
        table.add_row("grpc endpoint", shown(info.grpc_endpoint))
        table.add_row("proxy auth url", shown(info.proxy_auth_url))
    table.add_row("created", shown(session.created_at))
    table.add_row("closed", shown(session.closed_at))
    out.print(table)


async def _wait(
    args: argparse.Namespace,
    out: Output,
    ls: LakeSailClient,
    items: list[tuple[str, str]],
    until: str | frozenset[str],
    timeout: float,
) -> list[dict[str, Any]]:
    with out.keeps_running(_close_note(args, [one for one, _ in items])):
        waited = await wait_and_show(
            out,
            ls.sessions,
            items,
            table=SESSION_STATES,
            until=until,
            timeout=timeout,
            state_of=_state,
            title=f"waiting for {len(items)} session(s) to be {_until_text(until)}",
        )
    return [waited_data(w, "session") for w in waited]


# --------------------------------------------------------------------------- sessions


def _owned_by(session: Session, owner: str) -> bool:
    return session.metadata.get(OWNER_LABEL) == owner


async def _sessions_list(args: argparse.Namespace, out: Output) -> int:
    limit: int | None = args.limit
    async with connect(args) as ls:
        with user_input():
            if args.mine:
                # The owner label is in the metadata: filtered here, over every page.
                owner = owner_of(args)
                sessions = [
                    s async for s in ls.sessions.list(status=args.status) if _owned_by(s, owner)
                ][:limit]
            else:
                sessions = await ls.sessions.list(
                    status=args.status,
                    limit=None if limit is None else min(limit, MAX_LIMIT),
                    max_items=limit,
                )
    out.emit({"sessions": sessions})
    if not sessions:
        out.info("no sessions")
        return EXIT_OK
    table = out.table("ID", "NAME", "STATUS", "ENDPOINT", "CREATED")
    for s in sessions:
        table.add_row(
            s.id,
            shown(s.name),
            Text(s.state, style=state_style(s.state)),
            shown(s.endpoint_type),
            shown(s.created_at),
        )
    out.print(table)
    return EXIT_OK


async def _after_create(
    args: argparse.Namespace, out: Output, ls: LakeSailClient, session: Session, verb: str
) -> int:
    """Report a new session (created or relaunched); with ``--wait``, wait until it is ready."""
    if not args.wait:
        out.emit({"session": session, "state": session.state, "error": None})
        out.info(
            Text.assemble(
                f"session {session.id} {verb}: ", (session.state, state_style(session.state))
            )
        )
        return EXIT_OK
    out.info(f"session {session.id} {verb}")
    items = [(session.id, session.name or "")]
    entries = await _wait(args, out, ls, items, READY_STATES, args.timeout)
    entry = entries[0]
    out.emit(
        {"session": entry["session"] or session, "state": entry["state"], "error": entry["error"]}
    )
    return exit_for([entry["error"]])


async def _sessions_reap(args: argparse.Namespace, out: Output) -> int:
    owner = owner_of(args)
    async with connect(args) as ls:
        found = [
            Owned(s.id, s.name or "", s.created_at if isinstance(s.created_at, datetime) else None)
            async for s in ls.sessions.list()
            if _owned_by(s, owner) and s.state not in ("closed", "failed")
        ]
        return await reap(args, out, found, ls.sessions.close, what="session", verb="close")


async def _sessions_create(args: argparse.Namespace, out: Output) -> int:
    async with connect(args) as ls:
        with user_input():
            session = await ls.sessions.create(
                name=args.name, workload_config_id=args.workload_config
            )
        return await _after_create(args, out, ls, session, "created")


async def _sessions_get(args: argparse.Namespace, out: Output) -> int:
    async with connect(args) as ls:
        with user_input():
            session = await ls.sessions.get(args.id)
    out.emit({"session": session})
    _session_table(out, session, f"session {session.id}")
    return EXIT_OK


async def _sessions_close(args: argparse.Namespace, out: Output) -> int:
    ids = dedupe(args.ids)
    async with connect(args) as ls:
        done, failed = await for_each(out, ids, ls.sessions.close, what="close")
    return report_each(out, "closed", done, failed, "closed {n} session(s): {ids}")


async def _sessions_relaunch(args: argparse.Namespace, out: Output) -> int:
    async with connect(args) as ls:
        with user_input():
            session = await ls.sessions.relaunch(args.id)
        out.info(f"{args.id} relaunched as a new session, {session.id}")
        return await _after_create(args, out, ls, session, "created")


async def _sessions_wait(args: argparse.Namespace, out: Output) -> int:
    until = _until(args.until)
    ids = dedupe(args.ids)
    async with connect(args) as ls:
        entries = await _wait(args, out, ls, [(one, "") for one in ids], until, args.timeout)
    out.emit({"sessions": entries})
    return exit_for(e["error"] for e in entries)


async def _sessions_token(args: argparse.Namespace, out: Output) -> int:
    async with connect(args) as ls:
        with user_input():
            issued = await ls.sessions.token(args.id, duration_seconds=args.duration)
    out.emit({"session_id": args.id, "token": issued.token, "expires_at": issued.expires_at})
    if not out.json_mode:
        # The token alone on stdout, for $(...); what to do with it on stderr.
        out.raw(issued.token + "\n")
        expires = f" (expires {shown(issued.expires_at)})" if issued.expires_at else ""
        out.warn(
            f"a bearer token for session {args.id}'s gRPC endpoint{expires}; keep it secret",
            style="dim",
        )
    return EXIT_OK


# --------------------------------------------------------------------------- configs


async def _configs_list(args: argparse.Namespace, out: Output) -> int:
    limit: int | None = args.limit
    async with connect(args) as ls:
        with user_input():
            configs = await ls.workload_configs.list(
                limit=None if limit is None else min(limit, MAX_LIMIT), max_items=limit
            )
    out.emit({"workload_configs": configs})
    if not configs:
        out.info("no workload configs")
        return EXIT_OK
    table = out.table("ID", "NAME", "TYPE", "TEAM", "ENDPOINT LIMITS", "CREATED")
    for c in configs:
        limits = ", ".join(f"{k} {v}" for k, v in c.endpoint_limits.items())
        table.add_row(
            c.id,
            shown(c.name),
            shown(c.workload_type),
            shown(c.team_id),
            limits or "-",
            shown(c.created_at),
        )
    out.print(table)
    return EXIT_OK


def _config_table(out: Output, config: WorkloadConfig) -> None:
    table = out.table("FIELD", "VALUE", title=f"workload config {config.id}")
    table.add_row("name", shown(config.name))
    table.add_row("type", shown(config.workload_type))
    table.add_row("team", shown(config.team_id))
    table.add_row("cluster", shown(config.cluster_id))
    limits = ", ".join(f"{k} {v}" for k, v in config.endpoint_limits.items())
    table.add_row("endpoint limits", limits or "-")
    sail = config.config.sail if config.config is not None else None
    table.add_row("execution mode", shown(sail.execution_mode if sail else None))
    table.add_row("image", shown(sail.lakesail_image_uri if sail else None))
    table.add_row("created", shown(config.created_at))
    table.add_row("created by", shown(config.created_by))
    table.add_row("updated", shown(config.updated_at))
    out.print(table)


def _json_object(value: str, option: str) -> dict[str, Any]:
    """``--config``: a JSON object, given inline or as ``@FILE``."""
    text = value
    if value.startswith("@"):
        try:
            text = Path(value[1:]).read_text(encoding="utf-8")
        except OSError as exc:
            raise UsageError(f"{option}: cannot read {value[1:]!r}: {exc.strerror}") from None
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise UsageError(f"{option} is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise UsageError(f"{option} must be a JSON object, got {type(data).__name__}")
    return data


def _limits(values: Sequence[str] | None) -> dict[str, int]:
    limits: dict[str, int] = {}
    for item in values or ():
        name, sep, number = item.partition("=")
        try:
            limits[name] = int(number)
        except ValueError:
            name = ""
        if not sep or not name:
            raise UsageError(
                f"--endpoint-limit expects TYPE=N (e.g. spark_connect=2), got {item!r}"
            )
    return limits


async def _configs_create(args: argparse.Namespace, out: Output) -> int:
    config = _json_object(args.config, "--config") if args.config is not None else None
    limits = _limits(args.endpoint_limit) or None
    async with connect(args) as ls:
        with user_input():
            created = await ls.workload_configs.create(
                args.name,
                team_id=args.team,
                workload_type=args.workload_type,
                cluster_id=args.cluster,
                config=config,
                endpoint_limits=limits,
            )
    out.emit({"workload_config": created})
    out.info(f"workload config {created.id} created: {shown(created.name)}")
    return EXIT_OK


async def _configs_get(args: argparse.Namespace, out: Output) -> int:
    async with connect(args) as ls:
        with user_input():
            config = await ls.workload_configs.get(args.id)
    out.emit({"workload_config": config})
    _config_table(out, config)
    return EXIT_OK


# --------------------------------------------------------------------------- the tree


def register(tree: CommandTree) -> None:
    """Add ``aiocompute lakesail ...`` to the command tree."""
    lakesail = tree.group(
        "lakesail",
        help="LakeSail: list, create, wait for, close and relaunch sessions",
        description=(
            "LakeSail platform workloads: Spark Connect sessions and compute configs.\n\n"
            f"The API token comes from ${TOKEN_ENV} (or --token, which other users can\n"
            f"see); the API root from --url or ${BASE_URL_ENV} (default: the platform's)."
        ),
        example="aiocompute lakesail sessions create --name etl --wait",
        options=[_connection_options],
    )
    sessions = lakesail.group(
        "sessions",
        help="list, create, read, close, relaunch and wait for sessions",
        description=(
            "Sessions are pending until their compute is up, then active or idle;\n"
            "closed and failed are final (relaunch makes a new session like it)."
        ),
        example="aiocompute lakesail sessions list --status active",
    )
    p = sessions.command(
        "list",
        help="list sessions",
        description="List the sessions you can see, newest first.",
        example="aiocompute lakesail sessions list --status active --limit 20 --json",
        handler=_sessions_list,
    )
    p.add_argument(
        "--status", metavar="STATUS", help="only these: pending, active, idle, closed or failed"
    )
    p.add_argument("--limit", type=at_least_one(), metavar="N", help="show at most N sessions")
    p.add_argument(
        "--mine", action="store_true", help="only those created by aiocompute for --owner"
    )
    owner_option(p)

    p = sessions.command(
        "reap",
        help="close sessions a dead process left behind",
        description=(
            "Close the live sessions that aiocompute created for --owner (their metadata\n"
            "says so) longer ago than --older-than; asks first (--yes: don't)."
        ),
        example="aiocompute lakesail sessions reap --older-than 2h --dry-run",
        handler=_sessions_reap,
    )
    reap_options(p, "2h")

    p = sessions.command(
        "create",
        help="create a session",
        description=(
            "Create a Spark Connect session. With --wait, watch it until its compute is\n"
            "up (active or idle); exit code 3 if it times out or fails first."
        ),
        example="aiocompute lakesail sessions create --name etl --wait",
        handler=_sessions_create,
    )
    p.add_argument("--name", help="session name")
    p.add_argument(
        "--workload-config", metavar="ID", help="the compute config to use (default: the team's)"
    )
    p.add_argument("--wait", action="store_true", help="wait until it is active or idle")
    timeout_option(p, _SESSION_TIMEOUT, "if it is not ready by then")

    p = sessions.command(
        "get",
        help="show a session",
        description="Show a session: its status, why it ended, how to connect (owner only).",
        example="aiocompute lakesail sessions get S8K2M4Q9",
        handler=_sessions_get,
    )
    p.add_argument("id", metavar="ID", help="session id")

    p = sessions.command(
        "close",
        help="close sessions",
        description="Close sessions now (their compute is cleaned up in the background).",
        example="aiocompute lakesail sessions close S8K2M4Q9",
        handler=_sessions_close,
    )
    p.add_argument("ids", nargs="+", metavar="ID", help="session ids")

    p = sessions.command(
        "relaunch",
        help="start a new session like a closed or failed one",
        description=(
            "Start a brand-new session (new id) with the workload configuration of a\n"
            "closed or failed one; the old one stays as it is. --wait waits for it."
        ),
        example="aiocompute lakesail sessions relaunch S8K2M4Q9 --wait",
        handler=_sessions_relaunch,
    )
    p.add_argument("id", metavar="ID", help="id of the closed or failed session")
    p.add_argument("--wait", action="store_true", help="wait until it is active or idle")
    timeout_option(p, _SESSION_TIMEOUT, "if it is not ready by then")

    p = sessions.command(
        "token",
        help="issue a bearer token for a session's gRPC endpoint",
        description=(
            "Issue a short-lived bearer token for the session's Spark Connect (gRPC)\n"
            "endpoint (owner or org admin). The token alone goes to stdout, so that\n"
            "TOKEN=$(aiocompute lakesail sessions token ID) works; a note to stderr."
        ),
        example="aiocompute lakesail sessions token S8K2M4Q9 --duration 3600",
        handler=_sessions_token,
    )
    p.add_argument("id", metavar="ID", help="session id")
    p.add_argument(
        "--duration",
        type=at_least_one("seconds"),
        metavar="SECONDS",
        help="how long the token lives (default: the platform's)",
    )

    p = sessions.command(
        "wait",
        help="wait until sessions reach a state",
        description=(
            "Wait until every session reaches a state (default ready: active or idle),\n"
            "showing progress. Exit code 3 if one times out or can no longer get there."
        ),
        example="aiocompute lakesail sessions wait S8K2M4Q9 T3B7N1X5 --timeout 300",
        handler=_sessions_wait,
    )
    p.add_argument("ids", nargs="+", metavar="ID", help="session ids")
    p.add_argument(
        "--until",
        default=_READY,
        metavar="STATE",
        help="ready (active or idle, the default), pending, active, idle, closed or failed",
    )
    timeout_option(p, _SESSION_TIMEOUT, "if a session is not there by then")

    configs = lakesail.group(
        "configs",
        help="list, create and read compute (workload) configs",
        description="Named, reusable compute configurations of teams.",
        example="aiocompute lakesail configs list",
    )
    p = configs.command(
        "list",
        help="list workload configs",
        description="List the named workload (compute) configs you can see.",
        example="aiocompute lakesail configs list --json",
        handler=_configs_list,
    )
    p.add_argument("--limit", type=at_least_one(), metavar="N", help="show at most N configs")

    p = configs.command(
        "get",
        help="show a workload config",
        description="Show a workload config in full (--json for every setting).",
        example="aiocompute lakesail configs get C4Q8R2T6 --json",
        handler=_configs_get,
    )
    p.add_argument("id", metavar="ID", help="workload config id")

    p = configs.command(
        "create",
        help="create a named workload config",
        description=(
            "Create a named workload config for a team. Its type, cluster and team\n"
            "cannot change afterwards. --config takes the settings as a JSON object\n"
            '(inline, or @FILE), in the API\'s own shape: {"sail": {"executionMode": ...}}.'
        ),
        example=(
            "aiocompute lakesail configs create 'Nightly ETL' --team T1A2B3C4 "
            "--config @etl.json --endpoint-limit spark_connect=2"
        ),
        handler=_configs_create,
    )
    p.add_argument("name", metavar="NAME", help="config name")
    p.add_argument("--team", metavar="ID", help="the team it belongs to (default: yours)")
    p.add_argument("--workload-type", metavar="TYPE", help="e.g. sail")
    p.add_argument("--cluster", metavar="ID", help="the cluster it runs on")
    p.add_argument("--config", metavar="JSON|@FILE", help="the settings, a JSON object")
    p.add_argument(
        "--endpoint-limit",
        action="append",
        metavar="TYPE=N",
        help="at most N endpoints of TYPE (repeatable), e.g. spark_connect=2",
    )
