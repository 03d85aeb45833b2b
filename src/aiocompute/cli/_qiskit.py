"""``aiocompute qiskit ...``: Qiskit Runtime sessions (IBM Quantum Platform) from the command line.

The IBM Cloud API key comes from ``--token`` or (preferably) ``$QISKIT_IBM_TOKEN``, the instance
CRN from ``--instance`` or ``$QISKIT_IBM_INSTANCE``, the API base from ``--url`` or
``$AIOCOMPUTE_QISKIT_BASE_URL`` (default: the CRN's region on the platform of
``$QISKIT_IBM_URL``, as the SDK's client resolves it) and the IAM token endpoint from
``--iam-url`` or ``$QISKIT_IBM_IAM_URL`` (default: IBM Cloud IAM).
"""

from __future__ import annotations

import argparse

from rich.text import Text

from ..qiskit._states import SESSION_STATES
from ..qiskit.client import DEFAULT_URL, QiskitRuntimeClient
from ..qiskit.models import Session, SessionMode
from ._app import EXIT_OK, CommandTree, UsageError
from ._common import (
    at_least_one,
    connection_option,
    dedupe,
    exit_for,
    for_each,
    given,
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

__all__ = ["connect", "register"]

_SESSION_TIMEOUT = 1800.0

#: Where the settings come from when no option gives them (the SDK's client reads the same
#: variables: the command reads the first three itself to name the option in its errors).
TOKEN_ENV = "QISKIT_IBM_TOKEN"
INSTANCE_ENV = "QISKIT_IBM_INSTANCE"
URL_ENV = "AIOCOMPUTE_QISKIT_BASE_URL"
IAM_URL_ENV = "QISKIT_IBM_IAM_URL"


# --------------------------------------------------------------------------- configuration


def _connection_options(parser: argparse.ArgumentParser) -> None:
    connection_option(
        parser,
        "--url",
        metavar="URL",
        help=f"API base (default: ${URL_ENV}, else the CRN's region, such as {DEFAULT_URL})",
    )
    connection_option(
        parser,
        "--iam-url",
        metavar="URL",
        help=f"IBM Cloud IAM token endpoint (default: ${IAM_URL_ENV}, else IBM Cloud's)",
    )
    connection_option(
        parser,
        "--instance",
        metavar="CRN",
        help=f"instance CRN, sent as Service-CRN (default: ${INSTANCE_ENV})",
    )
    secret_option(parser, "--token", metavar="API_KEY", what="IBM Cloud API key", env=TOKEN_ENV)


def connect(args: argparse.Namespace) -> QiskitRuntimeClient:
    """A client from the options, else the environment; :class:`UsageError` (exit 2) naming
    what is missing."""
    token = secret(args, "token", TOKEN_ENV, "--token", what="IBM Cloud API key")
    instance = setting(args, "instance", INSTANCE_ENV, "--instance")
    if instance is None:
        raise UsageError(
            f"the Qiskit Runtime instance CRN is missing; set {INSTANCE_ENV} (or pass --instance)"
        )
    url = setting(args, "url", URL_ENV, "--url")
    # Without --iam-url the client reads $QISKIT_IBM_IAM_URL itself (else IBM Cloud's).
    iam_url = given(args, "iam_url", "--iam-url", instead=IAM_URL_ENV)
    # A ConfigError is not expected (every required setting was checked above).
    with new_client("invalid Qiskit Runtime setting"):
        return QiskitRuntimeClient(token=token, instance=instance, base_url=url, iam_url=iam_url)


# --------------------------------------------------------------------------- commands


def _state(session: Session | None) -> str | None:
    return None if session is None else session.effective_state


def _session_table(out: Output, session: Session) -> None:
    table = out.table("FIELD", "VALUE", title=f"session {session.id}")
    state = session.effective_state
    table.add_row("state", Text(state, style=state_style(state)))
    if state != session.state_name:
        table.add_row("reported state", session.state_name)
    table.add_row("backend", shown(session.backend_name))
    table.add_row("mode", shown(session.mode))
    table.add_row("accepting jobs", shown(session.accepting_jobs))
    table.add_row("reason", shown(session.state_reason))
    table.add_row("started", shown(session.started_at))
    table.add_row("activated", shown(session.activated_at))
    table.add_row("closed", shown(session.closed_at))
    table.add_row("max ttl", shown(session.max_ttl))
    table.add_row("usage seconds", shown(session.elapsed_time))
    out.print(table)


async def _sessions_create(args: argparse.Namespace, out: Output) -> int:
    async with connect(args) as q:
        with user_input():
            session = await q.sessions.create(args.backend, mode=args.mode, max_ttl=args.max_ttl)
        if not args.wait:
            out.emit({"session": session, "state": session.effective_state, "error": None})
            out.info(
                Text.assemble(
                    f"session {session.id} created on {args.backend} ({args.mode}): ",
                    (session.effective_state, state_style(session.effective_state)),
                )
            )
            return EXIT_OK
        out.info(f"session {session.id} created on {args.backend} ({args.mode})")
        waited = await wait_and_show(
            out,
            q.sessions,
            [(session.id, args.backend)],
            table=SESSION_STATES,
            until="active",
            timeout=args.timeout,
            state_of=_state,
            title="waiting for the session to be active",
        )
    entry = waited[0]
    out.emit({"session": entry.resource or session, "state": entry.state, "error": entry.error})
    return exit_for([entry.error])


async def _sessions_get(args: argparse.Namespace, out: Output) -> int:
    async with connect(args) as q:
        with user_input():
            session = await q.sessions.get(args.id)
    out.emit({"session": session})
    _session_table(out, session)
    return EXIT_OK


async def _sessions_close(args: argparse.Namespace, out: Output) -> int:
    ids = dedupe(args.ids)
    async with connect(args) as q:
        done, failed = await for_each(out, ids, q.sessions.close, what="close")
    return report_each(out, "closed", done, failed, "closed {n} session(s): {ids}")


async def _sessions_drain(args: argparse.Namespace, out: Output) -> int:
    ids = dedupe(args.ids)
    async with connect(args) as q:

        async def drain(one: str) -> None:
            await q.sessions.update(one, accepting_jobs=False)

        done, failed = await for_each(out, ids, drain, what="drain")
    said = (
        "{n} session(s) no longer accept jobs and will close once their queued jobs have run: {ids}"
    )
    return report_each(out, "drained", done, failed, said)


async def _sessions_wait(args: argparse.Namespace, out: Output) -> int:
    target = target_state(SESSION_STATES, args.until, "session")
    ids = dedupe(args.ids)
    async with connect(args) as q:
        waited = await wait_and_show(
            out,
            q.sessions,
            [(one, "") for one in ids],
            table=SESSION_STATES,
            until=target,
            timeout=args.timeout,
            state_of=_state,
            title=f"waiting for {len(ids)} session(s) to be {target}",
        )
    out.emit({"sessions": [waited_data(w, "session") for w in waited]})
    return exit_for([w.error for w in waited])


# --------------------------------------------------------------------------- the tree


def register(tree: CommandTree) -> None:
    """Add ``aiocompute qiskit ...`` to the command tree."""
    qiskit = tree.group(
        "qiskit",
        help="Qiskit Runtime: create, drain, close and wait for sessions",
        description=(
            "Qiskit Runtime sessions on IBM Quantum Platform.\n\n"
            f"The IBM Cloud API key comes from ${TOKEN_ENV} (or --token, which other\n"
            f"users can see), the instance CRN from ${INSTANCE_ENV} (or --instance); the\n"
            f"API base from --url or ${URL_ENV}, the IAM endpoint from --iam-url or\n"
            f"${IAM_URL_ENV} (both default to IBM Cloud's)."
        ),
        example="aiocompute qiskit sessions create ibm_brisbane --wait",
        options=[_connection_options],
    )
    sessions = qiskit.group(
        "sessions",
        help="create, read, drain, close and wait for sessions",
        description=(
            "Sessions give a series of jobs priority on one backend. A session is open\n"
            "until its backend picks it up, active while it has priority, inactive between\n"
            "jobs, and closed at the end."
        ),
        example="aiocompute qiskit sessions get 9e1a7b3c-2d4f-4e8a-b6c1-0f5d3a2e7c91 --json",
    )
    p = sessions.command(
        "create",
        help="open a session on a backend",
        description=(
            "Open a session on a backend. With --wait, watch it until it is active\n"
            "(exit code 3 if it times out or closes first)."
        ),
        example=[
            "aiocompute qiskit sessions create ibm_brisbane --wait",
            "aiocompute qiskit sessions create ibm_torino --mode dedicated --max-ttl 3600",
        ],
        handler=_sessions_create,
    )
    p.add_argument("backend", metavar="BACKEND", help="backend name, e.g. ibm_brisbane")
    p.add_argument(
        "--mode",
        choices=[m.value for m in SessionMode],
        default=SessionMode.BATCH.value,
        help="batch (jobs queued together, the default) or dedicated",
    )
    p.add_argument(
        "--max-ttl",
        type=at_least_one("seconds"),
        default=28800,
        metavar="SECONDS",
        help="the longest the session may live (default 28800, 8 h)",
    )
    p.add_argument("--wait", action="store_true", help="wait until the session is active")
    timeout_option(p, _SESSION_TIMEOUT, "if it is not active by then")

    p = sessions.command(
        "get",
        help="show a session",
        description="Show a session: its state, backend, mode and times.",
        example="aiocompute qiskit sessions get 9e1a7b3c-2d4f-4e8a-b6c1-0f5d3a2e7c91",
        handler=_sessions_get,
    )
    p.add_argument("id", metavar="ID", help="session id")

    p = sessions.command(
        "close",
        help="close sessions now",
        description=(
            "Close sessions at once: jobs that are not running yet will not run.\n"
            "(To let queued jobs finish first, use drain.)"
        ),
        example="aiocompute qiskit sessions close 9e1a7b3c-2d4f-4e8a-b6c1-0f5d3a2e7c91",
        handler=_sessions_close,
    )
    p.add_argument("ids", nargs="+", metavar="ID", help="session ids")

    p = sessions.command(
        "drain",
        help="stop sessions accepting jobs (they close once drained)",
        description=(
            "Tell sessions to accept no new jobs: queued jobs still run, then each\n"
            "session closes. Wait for that with: wait ID --until closed."
        ),
        example="aiocompute qiskit sessions drain 9e1a7b3c-2d4f-4e8a-b6c1-0f5d3a2e7c91",
        handler=_sessions_drain,
    )
    p.add_argument("ids", nargs="+", metavar="ID", help="session ids")

    p = sessions.command(
        "wait",
        help="wait until sessions reach a state",
        description=(
            "Wait until every session reaches a state (default active), showing progress.\n"
            "Exit code 3 if one times out or can no longer get there (e.g. it closed)."
        ),
        example="aiocompute qiskit sessions wait 9e1a7b3c-2d4f-4e8a-b6c1-0f5d3a2e7c91 --timeout 60",
        handler=_sessions_wait,
    )
    p.add_argument("ids", nargs="+", metavar="ID", help="session ids")
    p.add_argument(
        "--until",
        default="active",
        metavar="STATE",
        help="open, active, inactive, pending_inactive, pending_closed or closed (default active)",
    )
    timeout_option(p, _SESSION_TIMEOUT, "if a session is not there by then")
