"""``aiocompute qiskit ...``: Qiskit Runtime sessions (IBM Quantum Platform) from the command line.

The IBM Cloud API key comes from ``--token`` or (preferably) ``$QISKIT_IBM_TOKEN``, the instance
CRN from ``--instance`` or ``$QISKIT_IBM_INSTANCE``, the API base from ``--url`` or
``$QISKIT_IBM_URL`` (default: the global endpoint) and the IAM token endpoint from
``--iam-url`` or ``$QISKIT_IBM_IAM_URL`` (default: IBM Cloud IAM).

This module also holds the helpers the ``lakesail`` and ``etengine`` groups share with it
(settings from options then the environment, waits with live progress, bad input as usage
errors).
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Awaitable, Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import Any

from attrs import frozen
from rich.text import Text

from .._core.config import ConfigError
from .._core.fanout import fan_out
from .._core.polling import StateTable
from .._core.resources import WaitableResource
from .._exceptions import AioComputeError, WaitError
from ..qiskit._states import SESSION_STATES
from ..qiskit.client import DEFAULT_URL, QiskitRuntimeClient
from ..qiskit.models import Session, SessionMode
from ._app import EXIT_OK, EXIT_USAGE, CommandTree, UsageError
from ._output import Output, StateBoard, one_line, state_style
from ._workbench import _dedupe, _exit_for, _positive, _target

__all__ = [
    "Waited",
    "connect",
    "exit_for",
    "for_each",
    "register",
    "setting",
    "shown",
    "timeout_option",
    "user_input",
    "wait_and_show",
    "waited_data",
]

_SESSION_TIMEOUT = 1800.0
#: How many close / drain requests are in flight at once.
_CONCURRENCY = 8

#: Where the settings come from when no option gives them (the SDK's client reads the same
#: three variables).
TOKEN_ENV = "QISKIT_IBM_TOKEN"
INSTANCE_ENV = "QISKIT_IBM_INSTANCE"
URL_ENV = "QISKIT_IBM_URL"
#: Not read by the SDK's client: a convenience of the command (e.g. to reach the emulator).
IAM_URL_ENV = "QISKIT_IBM_IAM_URL"


# --------------------------------------------------------------------------- shared helpers


def setting(args: argparse.Namespace, attr: str, env: str, option: str) -> str | None:
    """The value of ``option`` (``args.<attr>``) if given, else ``$env``; None if neither.

    An option given empty is a usage error: it would otherwise fall back silently."""
    value = getattr(args, attr, None)
    if value is not None:
        if not str(value).strip():
            raise UsageError(f"the {option} option is empty; set {env} instead")
        return str(value).strip()
    return os.environ.get(env, "").strip() or None


@contextmanager
def user_input() -> Iterator[None]:
    """Turn the SDK's checks of arguments (ValueError / TypeError naming the parameter,
    raised before any request) into usage errors (exit code 2)."""
    try:
        yield
    except AioComputeError:
        raise
    except (ValueError, TypeError) as exc:
        raise UsageError(one_line(str(exc))) from None


def shown(value: object) -> str:
    """A cell of a table: ``-`` for nothing, datetimes to the second, the rest as text."""
    if value is None or value == "":
        return "-"
    if isinstance(value, datetime):
        return value.isoformat(timespec="seconds")
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(getattr(value, "value", value))


def timeout_option(parser: argparse.ArgumentParser, default: float, what: str) -> None:
    """Add ``--timeout SECONDS`` (exit code 3 when it passes)."""
    parser.add_argument(
        "--timeout",
        type=_positive,
        default=default,
        metavar="SECONDS",
        help=f"give up waiting after this long (default {default:g}); exit code 3 {what}",
    )


@frozen
class Waited:
    """How the wait for one id ended: the resource as last read, its state, the error."""

    id: str
    label: str
    resource: Any
    state: str | None
    error: BaseException | None


async def wait_and_show(
    out: Output,
    resource: WaitableResource[Any],
    items: Sequence[tuple[str, str]],
    *,
    table: StateTable,
    until: str | frozenset[str],
    timeout: float,
    state_of: Callable[[Any], str | None],
    title: str,
) -> list[Waited]:
    """Wait for every id (``(id, label)`` pairs) with live progress; print the summary and a
    line per failure on stderr; return how each wait ended, in the order of ``items``."""
    targets = frozenset({until}) if isinstance(until, str) else until
    board = StateBoard(out, items, table=table, targets=targets, title=title)
    async with board:
        results = await resource.wait_all(
            [one for one, _ in items],
            until=until,
            timeout=timeout,
            return_exceptions=True,
            on_transition=board.on_transition,
        )
    waited: list[Waited] = []
    for (one, label), result in zip(items, results, strict=True):
        if isinstance(result, BaseException):
            last = result.last if isinstance(result, WaitError) else None
            state = state_of(last) if last is not None else None
            waited.append(Waited(one, label, last, state, result))
        else:
            waited.append(Waited(one, label, result, state_of(result), None))
        board.finish(one, waited[-1].state, waited[-1].error)
    out.print(board.summary())
    if not out.json_mode:
        for entry in waited:
            if entry.error is not None:
                out.problem(f"{entry.id}: {type(entry.error).__name__}: {entry.error}")
    return waited


def waited_data(entry: Waited, key: str) -> dict[str, Any]:
    """One wait as a JSON entry: ``{"id", "state", <key>: resource, "error"}``."""
    return {"id": entry.id, "state": entry.state, key: entry.resource, "error": entry.error}


async def for_each(
    out: Output, ids: Sequence[str], call: Callable[[str], Awaitable[object]], *, what: str
) -> tuple[list[str], dict[str, BaseException]]:
    """Run ``await call(id)`` for every id (a few at a time); report failures on stderr.

    Returns the ids that succeeded and the error of each one that did not."""
    result = await fan_out(call, ids, concurrency=_CONCURRENCY)
    done = [o.item for o in result.outcomes if o.ok]
    failed: dict[str, BaseException] = {}
    for one, error in result.errors:
        failed[one] = error
        out.problem(f"could not {what} {one}: {type(error).__name__}: {error}")
    return done, failed


def _bad_input(error: BaseException) -> bool:
    return isinstance(error, (ValueError, TypeError)) and not isinstance(error, AioComputeError)


def exit_for(errors: Iterable[BaseException | None]) -> int:
    """The exit code of a command that went on past errors: 2 if an id was malformed (the
    SDK refused it before sending anything), else 1 if any error is not a wait error, else 3
    if there is any, else 0."""
    found = [e for e in errors if e is not None]
    if any(_bad_input(e) for e in found):
        return EXIT_USAGE
    return _exit_for(found)


# --------------------------------------------------------------------------- configuration


def _connection_options(parser: argparse.ArgumentParser) -> None:
    # SUPPRESS: accepted at any level (qiskit, sessions, create) without being reset.
    parser.add_argument(
        "--url",
        metavar="URL",
        default=argparse.SUPPRESS,
        help=f"API base (default: ${URL_ENV}, else {DEFAULT_URL})",
    )
    parser.add_argument(
        "--iam-url",
        metavar="URL",
        default=argparse.SUPPRESS,
        help=f"IBM Cloud IAM token endpoint (default: ${IAM_URL_ENV}, else IBM Cloud's)",
    )
    parser.add_argument(
        "--instance",
        metavar="CRN",
        default=argparse.SUPPRESS,
        help=f"instance CRN, sent as Service-CRN (default: ${INSTANCE_ENV})",
    )
    parser.add_argument(
        "--token",
        metavar="API_KEY",
        default=argparse.SUPPRESS,
        help=(
            f"IBM Cloud API key; prefer setting ${TOKEN_ENV} instead, since command-line "
            "arguments are visible to other users and kept in shell history"
        ),
    )


def connect(args: argparse.Namespace) -> QiskitRuntimeClient:
    """A client from the options, else the environment; :class:`UsageError` (exit 2) naming
    what is missing."""
    token = setting(args, "token", TOKEN_ENV, "--token")
    if token is None:
        raise UsageError(
            f"the IBM Cloud API key is missing; set {TOKEN_ENV} (or pass --token, which "
            "other users can see in the process list)"
        )
    instance = setting(args, "instance", INSTANCE_ENV, "--instance")
    if instance is None:
        raise UsageError(
            f"the Qiskit Runtime instance CRN is missing; set {INSTANCE_ENV} (or pass --instance)"
        )
    url = setting(args, "url", URL_ENV, "--url")
    iam_url = setting(args, "iam_url", IAM_URL_ENV, "--iam-url")
    try:
        return QiskitRuntimeClient(token=token, instance=instance, url=url, iam_url=iam_url)
    except ConfigError as exc:  # not expected: every setting was checked above
        raise UsageError(one_line(str(exc))) from None
    except ValueError as exc:  # a malformed address
        raise UsageError(f"invalid Qiskit Runtime setting: {one_line(str(exc))}") from None


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
    ids = _dedupe(args.ids)
    async with connect(args) as q:
        done, failed = await for_each(out, ids, q.sessions.close, what="close")
    out.emit({"closed": done, "errors": failed})
    if done:
        out.info(f"closed {len(done)} session(s): {', '.join(done)}")
    return exit_for(failed.values())


async def _sessions_drain(args: argparse.Namespace, out: Output) -> int:
    ids = _dedupe(args.ids)
    async with connect(args) as q:

        async def drain(one: str) -> None:
            await q.sessions.update(one, accepting_jobs=False)

        done, failed = await for_each(out, ids, drain, what="drain")
    out.emit({"drained": done, "errors": failed})
    if done:
        out.info(
            f"{len(done)} session(s) no longer accept jobs and will close once their queued "
            f"jobs have run: {', '.join(done)}"
        )
    return exit_for(failed.values())


async def _sessions_wait(args: argparse.Namespace, out: Output) -> int:
    target = _target(SESSION_STATES, args.until, "session")
    ids = _dedupe(args.ids)
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


def _ttl(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected a whole number of seconds, got {value!r}"
        ) from None
    if number < 1:
        raise argparse.ArgumentTypeError(f"expected a number of seconds >= 1, got {value!r}")
    return number


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
        type=_ttl,
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
