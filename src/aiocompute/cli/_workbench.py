"""``aiocompute workbench ...``: Posit Workbench sessions and jobs from the command line.

The address comes from ``--server`` or ``$WORKBENCH_SERVER``, the token from ``--token`` or
(preferably) ``$WORKBENCH_API_KEY``; inside a Workbench session the session's RPC cookie is
used when no token is set, as the SDK does.
"""

from __future__ import annotations

import argparse
from typing import Any

from rich.text import Text

from .._core.fanout import fan_out
from ..workbench._states import SESSION_STATES
from ..workbench.models import (
    LaunchedSession,
    LaunchParameters,
    Session,
)
from ._app import EXIT_OK, CommandTree
from ._common import (
    at_least_one,
    dedupe,
    exit_for,
    keeps_running,
    shown,
    timeout_option,
    user_input,
)
from ._output import Output, state_style
from ._workbench_base import (
    LAUNCH_CONCURRENCY,
    SESSION_TIMEOUT,
    command_line,
    connect,
    connection_options,
    jobs_table,
    server_of,
    session_state,
    session_url,
    wait_ids,
    wait_many,
)
from ._workbench_jobs import AUDITED, JOBS, register_jobs

__all__ = ["connect", "register", "session_state"]


# --------------------------------------------------------------------------- workbench version


async def _server_version(args: argparse.Namespace, out: Output) -> int:
    async with connect(args) as wb:
        version = await wb.version()
    number = ".".join(str(n) for n in version.number)
    out.emit({"version": number, "server": version})
    table = out.table("FIELD", "VALUE", title="Workbench server")
    table.add_row("version", number)
    table.add_row("release", version.release_name or "-")
    table.add_row("build", f"{version.build_number or '-'} ({version.build_type or '-'})")
    table.add_row("features", ", ".join(version.features) or "-")
    out.print(table)
    return EXIT_OK


# --------------------------------------------------------------------------- sessions


async def _sessions_launch(args: argparse.Namespace, out: Output) -> int:
    count: int = args.count
    names = [args.name] if count == 1 else [f"{args.name}-{i}" for i in range(1, count + 1)]
    server = server_of(args)
    async with connect(args) as wb:

        async def launch(name: str) -> LaunchedSession:
            params = LaunchParameters(name=name, cluster=args.cluster, container_image=args.image)
            return await wb.sessions.launch(args.ide, name=name, launch_parameters=params)

        result = await fan_out(launch, names, concurrency=min(count, LAUNCH_CONCURRENCY))
        launched: list[tuple[str, LaunchedSession]] = []
        entries: dict[str, dict[str, Any]] = {}
        errors: list[BaseException] = []
        for outcome in result.outcomes:
            name = outcome.item
            entry: dict[str, Any] = {"name": name, "id": None, "url": None, "error": None}
            if outcome.error is not None:
                entry["error"] = outcome.error
                errors.append(outcome.error)
                out.problem(
                    f"could not launch {name}: {type(outcome.error).__name__}: {outcome.error}"
                )
            else:
                session = outcome.unwrap()
                launched.append((name, session))
                entry.update(id=session.id, url=server + (session.url or ""))
            entries[name] = entry

        if launched and args.wait:
            items = [(s.id, name) for name, s in launched]
            ids = [s.id for _, s in launched]
            note = keeps_running("session", ids, command_line(args, "sessions", "stop", *ids))
            with out.keeps_running(note):
                waited, wait_errors = await wait_many(
                    out,
                    wb.sessions,
                    items,
                    table=SESSION_STATES,
                    target="running",
                    wait_timeout=args.timeout,
                    state_of=session_state,
                    key="session",
                    title=f"waiting for {len(items)} session(s) to be running",
                )
            errors.extend(wait_errors)
            for (name, _), done in zip(launched, waited, strict=True):
                entries[name].update(state=done["state"], session=done["session"])
                if done["error"] is not None:
                    entries[name]["error"] = done["error"]
            running = [(n, s) for n, s in launched if entries[n].get("state") == "running"]
            if running:
                table = out.table("ID", "NAME", "URL", title=f"{len(running)} session(s) running")
                for name, session in running:
                    table.add_row(session.id, name, entries[name]["url"])
                out.print(table)
        elif launched:
            table = out.table("ID", "NAME", "URL", title=f"launched {len(launched)} session(s)")
            for name, session in launched:
                table.add_row(session.id, name, entries[name]["url"])
            out.print(table)
    out.emit({"sessions": list(entries.values())})
    return exit_for(errors)


async def _sessions_list(args: argparse.Namespace, out: Output) -> int:
    async with connect(args) as wb:
        with user_input():
            sessions = await wb.sessions.list(user=args.user)
    out.emit({"sessions": sessions})
    if not sessions:
        out.info("no live sessions")
        return EXIT_OK
    table = out.table("ID", "NAME", "IDE", "STATE", "CLUSTER", "CREATED")
    for s in sessions:
        state = session_state(s)
        cluster = s.launch_parameters.cluster if s.launch_parameters else None
        table.add_row(
            s.id,
            s.name or s.label or "-",
            s.workbench or "-",
            Text(state or "-", style=state_style(state)),
            cluster or "-",
            s.created.isoformat(timespec="seconds") if s.created else "-",
        )
    out.print(table)
    return EXIT_OK


async def _sessions_wait(args: argparse.Namespace, out: Output) -> int:
    ids = dedupe(args.ids)
    return await wait_ids(
        args,
        out,
        lambda wb: wb.sessions,
        table=SESSION_STATES,
        state_of=session_state,
        key="session",
        what="session",
        stop_note=keeps_running("session", ids, command_line(args, "sessions", "stop", *ids)),
    )


def _session_table(args: argparse.Namespace, out: Output, session: Session, title: str) -> None:
    state = session_state(session)
    params = session.launch_parameters
    table = out.table("FIELD", "VALUE", title=title)
    table.add_row("state", Text(state or "-", style=state_style(state)))
    table.add_row("detail", shown(session.status_detail))
    table.add_row("name", shown(session.name or session.label))
    table.add_row("ide", shown(session.workbench))
    table.add_row("user", shown(session.username))
    table.add_row("url", session_url(args, session.url))
    table.add_row("cluster", shown(params.cluster if params else None))
    table.add_row("image", shown(params.container_image if params else None))
    table.add_row("created", shown(session.created))
    table.add_row("last used", shown(session.last_used))
    out.print(table)


async def _sessions_get(args: argparse.Namespace, out: Output) -> int:
    async with connect(args) as wb:
        with user_input():
            session = await wb.sessions.get(args.id, user=args.user)
    out.emit(
        {"session": session, "url": None if not session.url else session_url(args, session.url)}
    )
    _session_table(args, out, session, f"session {session.id}")
    return EXIT_OK


async def _sessions_history(args: argparse.Namespace, out: Output) -> int:
    async with connect(args) as wb:
        with user_input():
            listing = await wb.sessions.history(
                args.begin,
                args.end,
                include_jobs=args.jobs,
                include_all_users=args.all_users,
            )
    out.emit({"sessions": listing.sessions, "jobs": listing.jobs})
    if not listing.sessions:
        out.info("no ended sessions in that time")
    else:
        table = out.table("ID", "NAME", "IDE", "USER", "STATE", "CREATED")
        for s in listing.sessions:
            # The history carries no state: every session in it has ended.
            state = session_state(s) or "ended"
            table.add_row(
                s.id,
                s.name or s.label or "-",
                s.workbench or "-",
                s.username or "-",
                Text(state or "-", style=state_style(state)),
                shown(s.created),
            )
        out.print(table)
    if args.jobs and listing.jobs:
        out.print(jobs_table(out, listing.jobs, title="their jobs"))
    return EXIT_OK


async def _sessions_resume(args: argparse.Namespace, out: Output) -> int:
    async with connect(args) as wb:
        with user_input():
            resumed = await wb.sessions.resume(args.id)
        entry: dict[str, Any] = {
            "id": resumed.id,
            "url": None if not resumed.url else session_url(args, resumed.url),
            "state": None,
            "session": None,
            "error": None,
        }
        errors: list[BaseException] = []
        if args.wait:
            stop = command_line(args, "sessions", "stop", resumed.id)
            with out.keeps_running(keeps_running("session", [resumed.id], stop)):
                waited, errors = await wait_many(
                    out,
                    wb.sessions,
                    [(resumed.id, "")],
                    table=SESSION_STATES,
                    target="running",
                    wait_timeout=args.timeout,
                    state_of=session_state,
                    key="session",
                    title="waiting for the session to be running",
                )
            entry.update(state=waited[0]["state"], session=waited[0]["session"])
            entry["error"] = waited[0]["error"]
    out.emit(entry)
    if entry["error"] is None:
        out.info(f"session {resumed.id} resumed: {session_url(args, resumed.url)}")
    return exit_for(errors)


async def _sessions_stop(args: argparse.Namespace, out: Output) -> int:
    ids = dedupe(args.ids)
    async with connect(args) as wb:
        with user_input():
            await wb.sessions.stop(ids, force=args.force, suspend=args.suspend)
    how = "force quit" if args.force else "suspend" if args.suspend else "stop"
    out.emit({"stopped": ids, "force": args.force, "suspend": args.suspend})
    out.info(f"{how} requested for {len(ids)} session(s): {', '.join(ids)}")
    return EXIT_OK


# --------------------------------------------------------------------------- users and clusters


async def _users(args: argparse.Namespace, out: Output) -> int:
    async with connect(args) as wb:
        users = await wb.users()
    out.emit({"users": users})
    if not users:
        out.info("no users")
        return EXIT_OK
    table = out.table("USERNAME", "STATUS", "ADMIN", "SUPER ADMIN", "LAST SIGN-IN")
    for user in users:
        table.add_row(
            user.username,
            shown(user.status),
            shown(user.is_admin),
            shown(user.is_super_admin),
            shown(user.last_sign_in),
        )
    out.print(table)
    return EXIT_OK


async def _compute_envs(args: argparse.Namespace, out: Output) -> int:
    async with connect(args) as wb:
        with user_input():
            envs = await wb.compute_envs(user=args.user)
    out.emit({"compute_envs": envs})
    table = out.table("CLUSTER", "TYPE", "CONTAINERS", "QUEUES", "IMAGES", "IDES")
    for env in envs.clusters:
        ides = [
            name
            for name, support in env.workbenches.items()
            if support.supports_interactive_sessions is not False
        ]
        table.add_row(
            env.name,
            shown(env.type),
            shown(env.supports_containers),
            ", ".join(env.queues) or "-",
            ", ".join(env.images) or "-",
            ", ".join(ides) or "-",
        )
    out.print(table)
    return EXIT_OK


def register(tree: CommandTree) -> None:
    """Add ``aiocompute workbench ...`` to the command tree."""
    wb = tree.group(
        "workbench",
        help="Posit Workbench: launch and wait for sessions, run and tail jobs",
        description=(
            "Posit Workbench sessions and jobs.\n\n"
            "The server address comes from --server or $WORKBENCH_SERVER, the API token\n"
            "from $WORKBENCH_API_KEY (or --token, which other users can see)."
        ),
        example="WORKBENCH_SERVER=https://wb.example.com aiocompute workbench sessions list",
        options=[connection_options],
    )
    wb.command(
        "version",
        help="show the server's version and features",
        description="Show the Workbench server's version and its enabled features.",
        example="aiocompute workbench version --json",
        handler=_server_version,
    )
    wb.command(
        "users",
        help="list the server's users (admin token)",
        description="List every user registered on the server (admin or super-admin token).",
        example="aiocompute workbench users --json",
        handler=_users,
    )
    p = wb.command(
        "compute-envs",
        help="list the clusters and IDEs you can launch on",
        description=(
            "List the compute environments (clusters) the server offers: their type,\n"
            "queues, container images and the IDEs they run."
        ),
        example="aiocompute workbench compute-envs --json",
        handler=_compute_envs,
    )
    p.add_argument("--user", help="what this user may use (admin token needed)")

    sessions = wb.group(
        "sessions",
        help="launch, list, read, wait for, resume and stop sessions",
        description="Interactive IDE sessions (RStudio, VS Code, JupyterLab, Positron...).",
        example="aiocompute workbench sessions launch 'VS Code' --name etl --wait",
    )
    p = sessions.command(
        "launch",
        help="launch one or many sessions",
        description=(
            "Launch a session of an IDE; --count N launches N of them concurrently\n"
            "(named NAME-1 ... NAME-N). With --wait, watch them until they are running.\n"
            "Prints each session's URL."
        ),
        example=[
            "aiocompute workbench sessions launch 'VS Code' --name etl --cluster Local --wait",
            "aiocompute workbench sessions launch RStudio --name class --count 20 --wait",
        ],
        handler=_sessions_launch,
    )
    p.add_argument("ide", metavar="IDE", help="RStudio, 'VS Code', JupyterLab, Positron...")
    p.add_argument("--name", required=True, help="session name (prefix with --count)")
    p.add_argument("--cluster", default="Local", help="compute environment (default Local)")
    p.add_argument("--image", help="container image (clusters that run containers)")
    p.add_argument("--count", type=at_least_one(), default=1, help="how many to launch (default 1)")
    p.add_argument("--wait", action="store_true", help="wait until they are running")
    timeout_option(p, SESSION_TIMEOUT, "if a session is not running by then")

    p = sessions.command(
        "list",
        help="list live sessions",
        description="List live sessions (yours, or --user's with an admin token).",
        example="aiocompute workbench sessions list --json",
        handler=_sessions_list,
    )
    p.add_argument("--user", help="whose sessions (admin token needed for others)")

    p = sessions.command(
        "get",
        help="show a live session (with its URL)",
        description="Show a live session: its state, IDE, cluster, times and URL.",
        example="aiocompute workbench sessions get 3f2a9c1e",
        handler=_sessions_get,
    )
    p.add_argument("id", metavar="ID", help="session id")
    p.add_argument("--user", help="whose session (admin token needed for others)")

    p = sessions.command(
        "history",
        help="list sessions that have ended",
        description=(
            "List the sessions that ended between --begin and --end (ISO-8601 dates or\n"
            "times, UTC unless they say; either may be left out)."
        ),
        example="aiocompute workbench sessions history --begin 2025-07-01 --jobs",
        handler=_sessions_history,
    )
    p.add_argument("--begin", metavar="WHEN", help="ended at or after (e.g. 2025-07-01)")
    p.add_argument("--end", metavar="WHEN", help="ended at or before")
    p.add_argument("--jobs", action="store_true", help="also list their jobs")
    p.add_argument("--all-users", action="store_true", help="every user's (admin token needed)")

    p = sessions.command(
        "resume",
        help="resume a suspended session",
        description=(
            "Resume a suspended session and print its URL; --wait watches it until it\n"
            "is running again (exit code 3 if it does not get there in time)."
        ),
        example="aiocompute workbench sessions resume 3f2a9c1e --wait",
        handler=_sessions_resume,
    )
    p.add_argument("id", metavar="ID", help="session id")
    p.add_argument("--wait", action="store_true", help="wait until it is running")
    timeout_option(p, SESSION_TIMEOUT, "if it is not running by then")

    p = sessions.command(
        "wait",
        help="wait until sessions reach a state",
        description=(
            "Wait until every session reaches a state (default running), showing progress.\n"
            "Exit code 3 if one times out or can no longer get there (e.g. it failed)."
        ),
        example="aiocompute workbench sessions wait 3f2a9c1e 77b0d2aa --timeout 120",
        handler=_sessions_wait,
    )
    p.add_argument("ids", nargs="+", metavar="ID", help="session ids")
    p.add_argument("--until", default="running", metavar="STATE", help="default running")
    timeout_option(p, SESSION_TIMEOUT, "if a session is not there by then")

    p = sessions.command(
        "stop",
        help="stop (or suspend, or force quit) sessions",
        description="Ask the server to stop sessions; returns without waiting for them.",
        example="aiocompute workbench sessions stop 3f2a9c1e --force",
        handler=_sessions_stop,
    )
    p.add_argument("ids", nargs="+", metavar="ID", help="session ids")
    p.add_argument("--force", action="store_true", help="force quit (kill) the sessions")
    p.add_argument("--suspend", action="store_true", help="suspend instead (RStudio)")

    register_jobs(wb, JOBS)
    register_jobs(wb, AUDITED)
