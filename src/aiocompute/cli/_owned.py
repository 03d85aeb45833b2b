"""What a user's aiocompute clients created: ``list --mine`` and ``reap --older-than``.

Every client labels what it creates with its owner (``owner=``, default ``$AIOCOMPUTE_OWNER``
or ``user@host``) where the API has a field for it: a tag on Workbench and Qiskit jobs,
metadata on LakeSail sessions. These helpers let each API group find those resources again,
and stop the ones a dead process left running. APIs with no such field (Workbench sessions,
ET Engine batches, Qiskit sessions) have neither command: nothing tells their resources
apart from the ones made by hand.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime, timedelta, timezone

from attrs import frozen

from .._core.reconcile import default_owner
from ._app import EXIT_OK, UsageError
from ._common import exit_for, for_each
from ._output import Output

__all__ = ["Owned", "confirmed", "older_than", "owner_option", "reap", "reap_options"]

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*$")
_UNIT_SECONDS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def older_than(value: str) -> timedelta:
    """``--older-than`` as a duration: ``90s``, ``30m``, ``2h``, ``1d`` (plain: seconds)."""
    match = _DURATION.match(value)
    if match is None or float(match.group(1)) <= 0:
        raise argparse.ArgumentTypeError(
            f"expected a duration such as 90s, 30m, 2h or 1d, got {value!r}"
        )
    return timedelta(seconds=float(match.group(1)) * _UNIT_SECONDS[match.group(2)])


def owner_option(parser: argparse.ArgumentParser) -> None:
    """``--owner``: whose resources (default: this user's, as the clients label them)."""
    parser.add_argument(
        "--owner",
        metavar="OWNER",
        help="the owner label to look for (default: $AIOCOMPUTE_OWNER, else user@host)",
    )


def reap_options(parser: argparse.ArgumentParser, default_age: str) -> None:
    """The options of a ``reap`` command."""
    parser.add_argument(
        "--older-than",
        type=older_than,
        default=older_than(default_age),
        metavar="AGE",
        help=f"only what was created longer ago than AGE (90s, 30m, 2h, 1d; default {default_age})",
    )
    owner_option(parser)
    parser.add_argument("--dry-run", action="store_true", help="list them, stop nothing")
    parser.add_argument("--yes", action="store_true", help="do not ask for confirmation")


def owner_of(args: argparse.Namespace) -> str:
    """The owner label the command looks for."""
    given: str | None = getattr(args, "owner", None)
    if given is not None and not given.strip():
        raise UsageError("--owner must not be empty")
    return given.strip() if given is not None else default_owner()


def confirmed(question: str) -> bool:
    """Ask ``question`` on the terminal; a usage error if there is none to ask on."""
    if not sys.stdin.isatty():
        raise UsageError("not asking for confirmation without a terminal: pass --yes")
    sys.stderr.write(f"{question} [y/N] ")
    sys.stderr.flush()
    answer = sys.stdin.readline()
    return answer.strip().lower() in ("y", "yes")


@frozen
class Owned:
    """One live resource with the owner's label: its id, a name to show, when it was made."""

    id: str
    name: str
    created: datetime | None


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=timezone.utc)


async def reap(
    args: argparse.Namespace,
    out: Output,
    found: Sequence[Owned],
    stop: Callable[[str], Awaitable[object]],
    *,
    what: str,
    verb: str,
) -> int:
    """Stop (``verb``: "stop", "close", "cancel") every resource in ``found`` older than
    ``--older-than``, after asking (``--yes``: don't; ``--dry-run``: only list them).

    A resource whose creation time is unknown is left alone: it may be young.
    """
    cutoff = datetime.now(timezone.utc) - args.older_than
    old = [r for r in found if r.created is not None and _aware(r.created) < cutoff]
    owner = owner_of(args)
    listed = [{"id": r.id, "name": r.name, "created": r.created} for r in old]
    if not old:
        out.emit({"owner": owner, "found": [], "reaped": [], "dry_run": args.dry_run})
        out.info(f"no {what} of {owner} older than {args.older_than}")
        return EXIT_OK
    table = out.table("ID", "NAME", "CREATED")
    for r in old:
        table.add_row(r.id, r.name, str(r.created))
    out.print(table)
    ids = [r.id for r in old]
    if args.dry_run:
        out.emit({"owner": owner, "found": listed, "reaped": [], "dry_run": True})
        out.info(f"{len(ids)} {what}(s) of {owner} would be {verb}d (--dry-run: nothing done)")
        return EXIT_OK
    question = f"{verb.capitalize()} these {len(ids)} {what}(s) of {owner}?"
    if not args.yes and not confirmed(question):
        out.emit({"owner": owner, "found": listed, "reaped": [], "dry_run": False})
        out.warn(f"nothing {verb}d")
        return EXIT_OK
    done, failed = await for_each(out, ids, stop, what=verb)
    out.emit({"owner": owner, "found": listed, "reaped": done, "dry_run": False, "errors": failed})
    if done:
        out.info(f"{verb}d {len(done)} {what}(s) of {owner}: {', '.join(done)}")
    return exit_for(failed.values())
