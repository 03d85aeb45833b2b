"""``aiocompute workbench ...``: Posit Workbench sessions and jobs from the command line.

The address comes from ``--server`` or ``$WORKBENCH_SERVER``, the token from ``--token`` or
(preferably) ``$WORKBENCH_API_KEY``; inside a Workbench session the session's RPC cookie is
used when no token is set, as the SDK does.
"""

from __future__ import annotations

import argparse
import enum
import os
import time
from collections.abc import Callable, Sequence
from typing import Any

import anyio
from rich.text import Text

from .._core.fanout import fan_out
from .._core.resources import WaitableResource
from .._core.states import StateTable
from .._exceptions import AioComputeError, WaitError, WaitTimeout
from ..workbench._states import JOB_STATES, SESSION_STATES
from ..workbench.client import WorkbenchClient
from ..workbench.models import Job, JobSpec, LaunchedSession, LaunchParameters, Session
from ._app import EXIT_OK, EXIT_WAIT, CommandTree, UsageError
from ._common import (
    at_least_one,
    connection_option,
    dedupe,
    exit_for,
    given,
    missing_secret,
    new_client,
    secret_option,
    target_state,
    timeout_option,
    user_input,
    wait_and_show,
)
from ._output import Output, state_style

__all__ = ["connect", "register", "session_state"]

_SESSION_TIMEOUT = 600.0
_JOB_TIMEOUT = 3600.0
_LAUNCH_CONCURRENCY = 16
_SERVER_ENV = "WORKBENCH_SERVER"
#: Read by the SDK's client (which also falls back to a session's RPC cookie), not here.
_TOKEN_ENV = "WORKBENCH_API_KEY"


# --------------------------------------------------------------------------- configuration


def _connection_options(parser: argparse.ArgumentParser) -> None:
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
    server = _server(args)
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


def _server(args: argparse.Namespace) -> str:
    """``--server``, else ``$WORKBENCH_SERVER``, without a trailing slash ("" if neither)."""
    server = getattr(args, "server", None) or os.environ.get(_SERVER_ENV, "")
    return str(server).strip().rstrip("/")


# --------------------------------------------------------------------------- shared helpers


def session_state(session: Session | None) -> str | None:
    """A session's ``activity_state`` as a plain string (None if unknown)."""
    if session is None or session.activity_state is None:
        return None
    state = session.activity_state
    return str(state.value) if isinstance(state, enum.Enum) else str(state)


def _job_state(job: Job | None) -> str | None:
    return None if job is None else job.state


async def _wait_many(
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
            "name": w.label or _name_of(w.resource),
            "state": w.state,
            key: w.resource,
            "error": w.error,
        }
        for w in waited
    ]
    return entries, [w.error for w in waited if w.error is not None]


def _name_of(resource: Session | Job | None) -> str:
    return (resource.name or "") if resource is not None else ""


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
    server = _server(args)
    async with connect(args) as wb:

        async def launch(name: str) -> LaunchedSession:
            params = LaunchParameters(name=name, cluster=args.cluster, container_image=args.image)
            return await wb.sessions.launch(args.ide, name=name, launch_parameters=params)

        result = await fan_out(launch, names, concurrency=min(count, _LAUNCH_CONCURRENCY))
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
            waited, wait_errors = await _wait_many(
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


async def _wait_ids(
    args: argparse.Namespace,
    out: Output,
    resource: Callable[[WorkbenchClient], WaitableResource[Any]],
    *,
    table: StateTable,
    state_of: Callable[[Any], str | None],
    key: str,
) -> int:
    """``sessions wait`` / ``jobs wait``: every ``args.ids`` until ``args.until``; the
    document is ``{<key>s: [entry per id]}``."""
    target = target_state(table, args.until, key)
    ids = dedupe(args.ids)
    async with connect(args) as wb:
        entries, errors = await _wait_many(
            out,
            resource(wb),
            [(one, "") for one in ids],
            table=table,
            target=target,
            wait_timeout=args.timeout,
            state_of=state_of,
            key=key,
            title=f"waiting for {len(ids)} {key}(s) to be {target}",
        )
    out.emit({f"{key}s": entries})
    return exit_for(errors)


async def _sessions_wait(args: argparse.Namespace, out: Output) -> int:
    return await _wait_ids(
        args,
        out,
        lambda wb: wb.sessions,
        table=SESSION_STATES,
        state_of=session_state,
        key="session",
    )


async def _sessions_stop(args: argparse.Namespace, out: Output) -> int:
    ids = dedupe(args.ids)
    async with connect(args) as wb:
        with user_input():
            await wb.sessions.stop(ids, force=args.force, suspend=args.suspend)
    how = "force quit" if args.force else "suspend" if args.suspend else "stop"
    out.emit({"stopped": ids, "force": args.force, "suspend": args.suspend})
    out.info(f"{how} requested for {len(ids)} session(s): {', '.join(ids)}")
    return EXIT_OK


# --------------------------------------------------------------------------- jobs


def _env_pairs(values: Sequence[str] | None) -> dict[str, str]:
    env: dict[str, str] = {}
    for item in values or ():
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise UsageError(f"--env expects NAME=VALUE, got {item!r}")
        env[name] = value
    return env


async def _follow(wb: WorkbenchClient, job_id: str, out: Output) -> tuple[int, int]:
    """Print a job's output as it comes: stdout lines to stdout, stderr lines to stderr
    (in red on a terminal). Returns the number of stdout and stderr lines."""
    counts = {"stdout": 0, "stderr": 0}
    async for line in wb.jobs.lines(job_id):
        is_err = line.output_type == "stderr"
        counts["stderr" if is_err else "stdout"] += 1
        out.out_line(line.text, stderr=is_err, style="red" if is_err else None)
    return counts["stdout"], counts["stderr"]


def _job_summary(job: Job) -> Text:
    exit_code = "-" if job.exit_code is None else str(job.exit_code)
    style = "red" if job.failed else state_style(job.state)
    return Text.assemble(
        f"job {job.id} ({job.name or '-'}): ",
        (job.state, style),
        f", exit code {exit_code}",
    )


async def _jobs_launch(args: argparse.Namespace, out: Output) -> int:
    job_args = list(args.job_args)
    if job_args[:1] == ["--"]:  # some Python versions keep the separator
        job_args = job_args[1:]
    with user_input():
        spec = JobSpec(
            name=args.name,
            cluster=args.cluster,
            exe=args.exe,
            command=args.command,
            args=job_args,
            environment=_env_pairs(args.env) or None,
            container_image=args.image,
        )
    async with connect(args) as wb:
        with user_input():
            job = await wb.jobs.launch(spec)
        if not (args.wait or args.tail):
            out.emit({"job": job})
            out.info(_job_summary(job))
            return EXIT_OK
        out.info(f"launched job {job.id} ({job.name or '-'}) on {job.cluster or args.cluster}")
        document: dict[str, Any] = {"job": job, "error": None}
        started = time.monotonic()
        try:
            with anyio.fail_after(args.timeout):
                if args.tail and out.json_mode:
                    collected = await wb.jobs.collect(job.id)
                    document["output"] = {"stdout": collected.stdout, "stderr": collected.stderr}
                elif args.tail:
                    await _follow(wb, job.id, out)
                remaining = max(0.1, args.timeout - (time.monotonic() - started))
                if args.tail:
                    final = await wb.jobs.wait(job.id, timeout=remaining)
                    document["job"] = final
                else:
                    entries, errors = await _wait_many(
                        out,
                        wb.jobs,
                        [(job.id, job.name or "")],
                        table=JOB_STATES,
                        target="Finished",
                        wait_timeout=remaining,
                        state_of=_job_state,
                        key="job",
                        title="waiting for the job to finish",
                    )
                    document.update(job=entries[0]["job"] or job, error=entries[0]["error"])
                    out.emit(document)
                    return exit_for(errors)
        except TimeoutError:
            error: AioComputeError = WaitTimeout(
                f"job {job.id} did not finish within {args.timeout:g} s"
            )
            document["error"] = error
        except WaitError as exc:
            document["error"] = exc
            if isinstance(exc.last, Job):
                document["job"] = exc.last
    out.emit(document)
    final_job = document["job"]
    if isinstance(final_job, Job) and final_job.is_terminal:
        out.info(_job_summary(final_job))
    if document["error"] is not None:
        out.problem(f"{type(document['error']).__name__}: {document['error']}")
        return EXIT_WAIT
    return EXIT_OK


async def _jobs_tail(args: argparse.Namespace, out: Output) -> int:
    async with connect(args) as wb:
        with user_input():
            if out.json_mode:
                collected = await wb.jobs.collect(args.job_id)
                out.emit(
                    {"job_id": args.job_id, "stdout": collected.stdout, "stderr": collected.stderr}
                )
                return EXIT_OK
            await _follow(wb, args.job_id, out)
    return EXIT_OK


async def _jobs_list(args: argparse.Namespace, out: Output) -> int:
    async with connect(args) as wb:
        jobs = await wb.jobs.list()
    out.emit({"jobs": jobs})
    if not jobs:
        out.info("no jobs")
        return EXIT_OK
    table = out.table("ID", "NAME", "STATUS", "EXIT", "CLUSTER", "SUBMITTED")
    for job in jobs:
        table.add_row(
            job.id,
            job.name or "-",
            Text(job.state, style="red" if job.failed else state_style(job.state)),
            "-" if job.exit_code is None else str(job.exit_code),
            job.cluster or "-",
            job.submission_time.isoformat(timespec="seconds") if job.submission_time else "-",
        )
    out.print(table)
    return EXIT_OK


async def _jobs_wait(args: argparse.Namespace, out: Output) -> int:
    return await _wait_ids(
        args, out, lambda wb: wb.jobs, table=JOB_STATES, state_of=_job_state, key="job"
    )


async def _jobs_stop(args: argparse.Namespace, out: Output) -> int:
    ids = dedupe(args.ids)
    async with connect(args) as wb:
        with user_input():
            for one in ids:
                await wb.jobs.stop(one, force=args.force)
    out.emit({"stopped": ids, "force": args.force})
    how = "kill" if args.force else "stop"
    out.info(f"{how} requested for {len(ids)} job(s): {', '.join(ids)}")
    return EXIT_OK


# --------------------------------------------------------------------------- the tree


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
        options=[_connection_options],
    )
    wb.command(
        "version",
        help="show the server's version and features",
        description="Show the Workbench server's version and its enabled features.",
        example="aiocompute workbench version --json",
        handler=_server_version,
    )

    sessions = wb.group(
        "sessions",
        help="launch, list, wait for and stop sessions",
        description="Interactive IDE sessions (RStudio, VS Code, JupyterLab, Positron...).",
        example="aiocompute workbench sessions launch 'VS Code' --name etl --wait",
    )
    p = sessions.command(
        "launch",
        help="launch one or many sessions",
        description=(
            "Launch a session of an IDE; --count N launches N of them concurrently\n"
            "(named NAME-1 ... NAME-N). With --wait, watch them until they are running."
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
    timeout_option(p, _SESSION_TIMEOUT, "if a session is not running by then")

    p = sessions.command(
        "list",
        help="list live sessions",
        description="List live sessions (yours, or --user's with an admin token).",
        example="aiocompute workbench sessions list --json",
        handler=_sessions_list,
    )
    p.add_argument("--user", help="whose sessions (admin token needed for others)")

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
    timeout_option(p, _SESSION_TIMEOUT, "if a session is not there by then")

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

    jobs = wb.group(
        "jobs",
        help="launch, list, wait for, tail and stop jobs",
        description="Launcher jobs: batch work whose output streams back live.",
        example="aiocompute workbench jobs launch --name fit --exe Rscript --tail -- fit.R",
    )
    p = jobs.command(
        "launch",
        help="launch a job (and optionally follow it)",
        description=(
            "Launch a job running --exe (a program) or --command (a shell command); the\n"
            "job's own arguments go after '--'. --tail prints its output live until it\n"
            "ends; --wait waits for it to finish. Exit code 3 if the job fails."
        ),
        example="aiocompute workbench jobs launch --name fit --exe Rscript --tail -- fit.R",
        handler=_jobs_launch,
    )
    p.add_argument("--name", required=True, help="job name")
    p.add_argument("--cluster", default="Local", help="compute environment (default Local)")
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("--exe", help="program to run")
    what.add_argument("--command", help="shell command to run")
    p.add_argument(
        "--env", action="append", metavar="NAME=VALUE", help="environment variable (repeatable)"
    )
    p.add_argument("--image", help="container image (clusters that run containers)")
    p.add_argument("--wait", action="store_true", help="wait until the job finishes")
    p.add_argument("--tail", action="store_true", help="print the job's output live")
    timeout_option(p, _JOB_TIMEOUT, "if the job has not finished by then")
    p.add_argument("job_args", nargs="*", metavar="ARG", help="the job's arguments (after --)")

    p = jobs.command(
        "tail",
        help="follow a job's live output",
        description=(
            "Print a job's output as it is produced, until the job ends: stdout lines on\n"
            "stdout, stderr lines on stderr (in red on a terminal)."
        ),
        example="aiocompute workbench jobs tail 8d3c0f2b9a1e4d57 2>errors.log",
        handler=_jobs_tail,
    )
    p.add_argument("job_id", metavar="JOB_ID", help="job id")

    p = jobs.command(
        "list",
        help="list your jobs",
        description="List the jobs the server still reports (live and recent).",
        example="aiocompute workbench jobs list --json",
        handler=_jobs_list,
    )

    p = jobs.command(
        "wait",
        help="wait until jobs finish",
        description=(
            "Wait until every job reaches a status (default Finished), showing progress.\n"
            "Exit code 3 if one times out or fails (a non-zero exit code counts as failing)."
        ),
        example="aiocompute workbench jobs wait 8d3c0f2b9a1e4d57 --timeout 600",
        handler=_jobs_wait,
    )
    p.add_argument("ids", nargs="+", metavar="JOB_ID", help="job ids")
    p.add_argument("--until", default="Finished", metavar="STATUS", help="default Finished")
    timeout_option(p, _JOB_TIMEOUT, "if a job has not finished by then")

    p = jobs.command(
        "stop",
        help="stop jobs",
        description="Ask the server to stop jobs (--force: kill them at once).",
        example="aiocompute workbench jobs stop 8d3c0f2b9a1e4d57 --force",
        handler=_jobs_stop,
    )
    p.add_argument("ids", nargs="+", metavar="JOB_ID", help="job ids")
    p.add_argument("--force", action="store_true", help="kill instead of terminate")
