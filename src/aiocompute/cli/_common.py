"""What every API group of the command shares: connection options and settings, argument
types, bad input as usage errors, waits with live progress, per-id calls and exit codes.

Nothing here knows an API: each group (``_workbench``, ``_qiskit``, ``_lakesail``,
``_etengine``) imports its shared pieces from this module, ``_output`` and ``_app`` only.
"""

from __future__ import annotations

import argparse
import os
import shlex
from collections.abc import Awaitable, Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import Any

from attrs import frozen

from .._core import checks
from .._core.config import ConfigError
from .._core.fanout import fan_out
from .._core.resources import WaitableResource
from .._core.states import StateTable
from .._core.wait_group import DONE
from .._exceptions import AioComputeError, WaitError
from ._app import EXIT_API, EXIT_OK, EXIT_USAGE, EXIT_WAIT, UsageError
from ._output import Output, StateBoard, one_line

__all__ = [
    "Waited",
    "at_least_one",
    "command_line",
    "connection_option",
    "dedupe",
    "exit_for",
    "for_each",
    "given",
    "is_bad_input",
    "keeps_running",
    "missing_secret",
    "new_client",
    "positive_seconds",
    "report_each",
    "secret",
    "secret_option",
    "setting",
    "shown",
    "target_state",
    "timeout_option",
    "user_input",
    "wait_and_show",
    "waited_data",
    "whole_number",
]

#: How many per-id requests (close, drain, delete) are in flight at once.
_CONCURRENCY = 8


# --------------------------------------------------------------------------- options


def connection_option(
    parser: argparse.ArgumentParser, flag: str, *, metavar: str, help: str
) -> None:
    """Add a connection option of a group (``--url``, ``--server``...).

    SUPPRESS: the option is accepted at any level of the group (``qiskit``, ``sessions``,
    ``create``) without a subcommand's parser resetting what a level above set."""
    parser.add_argument(flag, metavar=metavar, default=argparse.SUPPRESS, help=help)


def secret_option(
    parser: argparse.ArgumentParser, flag: str, *, metavar: str, what: str, env: str
) -> None:
    """Add the credential option of a group; its help steers people to ``$env`` instead.

    (``flag`` must be one of the options :func:`~aiocompute.cli._app.main` redacts.)"""
    connection_option(
        parser,
        flag,
        metavar=metavar,
        help=(
            f"{what}; prefer setting ${env} instead, since command-line arguments are "
            "visible to other users and kept in shell history"
        ),
    )


def timeout_option(parser: argparse.ArgumentParser, default: float, what: str) -> None:
    """Add ``--timeout SECONDS`` (exit code 3 when it passes)."""
    parser.add_argument(
        "--timeout",
        type=positive_seconds,
        default=default,
        metavar="SECONDS",
        help=f"give up waiting after this long (default {default:g}); exit code 3 {what}",
    )


# --------------------------------------------------------------------------- argument types


# The range is decided by the library's own checks (aiocompute._core.checks), so that the
# CLI accepts what the API methods accept; their error becomes argparse's (exit code 2).


def positive_seconds(value: str) -> float:
    """An argparse type: a positive, finite number of seconds."""
    try:
        number = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, got {value!r}") from None
    try:
        return checks.seconds(number, "the value")
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected a positive number of seconds, got {value!r}"
        ) from None


def whole_number(
    noun: str = "a whole number", *, minimum: int = 0, maximum: int | None = None
) -> Callable[[str], int]:
    """An argparse type: a whole number within ``minimum..maximum``, called ``noun`` in
    errors ("expected <noun> >= 1, got '0'")."""
    within = f" >= {minimum}" if maximum is None else f" within {minimum}..{maximum}"

    def parse(value: str) -> int:
        try:
            number = int(value)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {noun}, got {value!r}") from None
        try:
            return checks.count(number, "the value", minimum=minimum, maximum=maximum)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {noun}{within}, got {value!r}") from None

    return parse


def at_least_one(unit: str = "") -> Callable[[str], int]:
    """An argparse type: a whole number >= 1 (of ``unit``, named in the error if given)."""
    return whole_number(f"a whole number of {unit}" if unit else "a whole number", minimum=1)


def target_state(table: StateTable, value: str, what: str) -> str:
    """The table's spelling of a state typed by the user (case-insensitive), or ``done``
    (any end, as the library reads it); a usage error listing the states when it knows none
    such."""
    known = {state.lower(): state for state in table.reaches}
    typed = value.strip().lower()
    if typed == DONE and DONE not in known:
        return DONE
    found = known.get(typed)
    if found is None:
        choices = ", ".join(sorted(table.reaches))
        raise UsageError(
            f"unknown {what} state {value!r}; expected {DONE} (any end) or one of: {choices}"
        )
    return found


def dedupe(ids: Sequence[str]) -> list[str]:
    """``ids`` without repeats, in the order first given."""
    return list(dict.fromkeys(ids))


# --------------------------------------------------------------------------- settings


def given(args: argparse.Namespace, attr: str, option: str, *, instead: str) -> str | None:
    """The value of ``option`` (``args.<attr>``), stripped; None if it was not given.

    An option given empty is a usage error naming the variable to set ``instead``: it would
    otherwise fall back silently."""
    value = getattr(args, attr, None)
    if value is None:
        return None
    if not str(value).strip():
        raise UsageError(f"the {option} option is empty; set {instead} instead")
    return str(value).strip()


def setting(args: argparse.Namespace, attr: str, env: str, option: str) -> str | None:
    """The value of ``option`` (``args.<attr>``) if given, else ``$env``; None if neither.

    An option given empty is a usage error: it would otherwise fall back silently."""
    value = given(args, attr, option, instead=env)
    if value is not None:
        return value
    return os.environ.get(env, "").strip() or None


def missing_secret(what: str, env: str, option: str) -> str:
    """The usage error text for a credential given neither by ``option`` nor by ``$env``."""
    return (
        f"the {what} is missing; set {env} (or pass {option}, which other users can see in "
        "the process list)"
    )


def secret(args: argparse.Namespace, attr: str, env: str, option: str, *, what: str) -> str:
    """A credential from ``option``, else ``$env``; a usage error naming both if neither."""
    value = setting(args, attr, env, option)
    if value is None:
        raise UsageError(missing_secret(what, env, option))
    return value


@contextmanager
def new_client(invalid: str, *, missing: str | None = None) -> Iterator[None]:
    """Around a client's construction: its :class:`ConfigError` becomes a usage error
    (``missing`` if given, else its own text), a ``ValueError`` (a malformed address) the
    usage error ``"<invalid>: <why>"``."""
    try:
        yield
    except ConfigError as exc:
        raise UsageError(missing if missing is not None else one_line(str(exc))) from None
    except ValueError as exc:
        raise UsageError(f"{invalid}: {one_line(str(exc))}") from None


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


# --------------------------------------------------------------------------- output


def shown(value: object) -> str:
    """A cell of a table: ``-`` for nothing, datetimes to the second, the rest as text."""
    if value is None or value == "":
        return "-"
    if isinstance(value, datetime):
        return value.isoformat(timespec="seconds")
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(getattr(value, "value", value))


# --------------------------------------------------------------------------- waits


def command_line(
    args: argparse.Namespace,
    group: str,
    *words: str,
    options: Sequence[tuple[str, str]] = (("--url", "url"),),
) -> str:
    """The command line that does ``words`` in ``group`` against the same address as this
    one: each ``(option, attribute)`` of ``options`` the user gave is repeated (never a
    credential: it comes from the environment or is typed again)."""
    line = ["aiocompute", group]
    for option, attr in options:
        value = getattr(args, attr, None)
        if value:
            line += [option, str(value)]
    return shlex.join([*line, *words])


def keeps_running(what: str, ids: Sequence[str], stop: str, *, verb: str = "stop") -> str:
    """What Ctrl-C leaves behind, said on stderr: ``"job 8d3c keeps running; stop it with:
    aiocompute workbench jobs stop 8d3c"`` (``stop`` is the whole command line)."""
    if len(ids) == 1:
        return f"{what} {ids[0]} keeps running; {verb} it with: {stop}"
    return f"{len(ids)} {what}s keep running ({', '.join(ids)}); {verb} them with: {stop}"


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
    line per failure on stderr; return how each wait ended, in the order of ``items``.

    An id the SDK refuses outright (e.g. empty) is a usage error, raised before any wait."""
    targets = frozenset({until}) if isinstance(until, str) else until
    board = StateBoard(out, items, table=table, targets=targets, title=title)
    async with board:
        with user_input():  # a malformed id is refused before any request
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


# --------------------------------------------------------------------------- per-id calls


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


def report_each(
    out: Output, key: str, done: list[str], failed: dict[str, BaseException], said: str
) -> int:
    """Report what :func:`for_each` did: ``{key: done, "errors": failed}`` in JSON, else
    ``said`` (a format string of ``{n}`` and ``{ids}``) when any id succeeded; return the
    exit code."""
    out.emit({key: done, "errors": failed})
    if done:
        out.info(said.format(n=len(done), ids=", ".join(done)))
    return exit_for(failed.values())


# --------------------------------------------------------------------------- exit codes


def is_bad_input(error: BaseException) -> bool:
    """Whether the SDK refused an argument before sending anything (not an API answer)."""
    return isinstance(error, (ValueError, TypeError)) and not isinstance(error, AioComputeError)


def exit_for(errors: Iterable[BaseException | None]) -> int:
    """The exit code of a command that went on past errors: 2 if an argument was malformed
    (the SDK refused it before sending anything), else 1 if any error is not a wait error,
    else 3 if there is any, else 0."""
    found = [e for e in errors if e is not None]
    if any(is_bad_input(e) for e in found):
        return EXIT_USAGE
    if any(not isinstance(e, WaitError) for e in found):
        return EXIT_API
    return EXIT_WAIT if found else EXIT_OK
