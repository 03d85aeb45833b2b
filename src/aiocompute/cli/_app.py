"""The ``aiocompute`` command tree (argparse) and its entry point.

Every command is registered through a :class:`CommandTree`, which gives each parser the same
shape: a description, an ``Example:`` epilog, the shared ``--json`` option and a handler
(``async def handler(args, out) -> exit code``). Each API is one *group* of commands, added
to :data:`COMMAND_GROUPS` by name and module, so that adding an API later is one module with
a ``register(tree)`` function and one line here. A command line that names its group builds
(and imports) that group only.

Exit codes: 0 success; 1 the API said no or could not be reached (any
:class:`~aiocompute.AioComputeError` other than a wait error); 2 usage (bad arguments,
missing configuration); 3 a wait timed out or its target became unreachable (a job that
failed, tailed or waited for, included); 4 what was to be deleted was not there; 130 Ctrl-C
(saying on stderr what keeps running and how to stop it); 141 stdout was closed by its
reader (``... | head``), as for a process killed by SIGPIPE.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import importlib
import os
import shutil
import sys
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, NoReturn

if sys.version_info < (3, 11):
    # The backport is a declared dependency on 3.10; it may be absent where mypy runs.
    from exceptiongroup import BaseExceptionGroup  # type: ignore[import-not-found, unused-ignore]

from .._exceptions import AioComputeError, WaitError, redact, register_secret
from .._version import __version__
from ._output import Output

__all__ = [
    "COMMAND_GROUPS",
    "EXIT_API",
    "EXIT_BROKEN_PIPE",
    "EXIT_INTERRUPTED",
    "EXIT_NOT_FOUND",
    "EXIT_OK",
    "EXIT_USAGE",
    "EXIT_WAIT",
    "CommandTree",
    "Handler",
    "UsageError",
    "build_parser",
    "main",
]

EXIT_OK = 0
EXIT_API = 1
EXIT_USAGE = 2
EXIT_WAIT = 3
EXIT_NOT_FOUND = 4
EXIT_INTERRUPTED = 130
EXIT_BROKEN_PIPE = 141

#: What a command runs: parsed arguments and the output in, exit code out.
Handler = Callable[[argparse.Namespace, Output], Awaitable[int]]

#: The top-level command each module adds, and the module, in the order ``--help`` lists
#: them. Each module has a ``register(tree: CommandTree) -> None`` that adds that command
#: (and its subcommands) only. One line per API group.
COMMAND_GROUPS: dict[str, str] = {
    "workbench": "aiocompute.cli._workbench",
    "qiskit": "aiocompute.cli._qiskit",
    "lakesail": "aiocompute.cli._lakesail",
    "etengine": "aiocompute.cli._etengine",
    "emulator": "aiocompute.cli._emulator",
    "demo": "aiocompute.cli._demo",
}

#: Options whose value is a credential (registered for redaction before parsing).
_SECRET_OPTIONS = ("--token", "--key")


class UsageError(Exception):
    """The command line or the configuration is wrong (exit code 2)."""


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser whose error messages are scrubbed of credentials."""

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(EXIT_USAGE, f"{self.prog}: error: {redact(message)}\n")


def _epilog(example: str | Sequence[str]) -> str:
    lines = [example] if isinstance(example, str) else list(example)
    head = "Example:" if len(lines) == 1 else "Examples:"
    return head + "\n" + "\n".join(f"  {line}" for line in lines)


def _json_option(parser: argparse.ArgumentParser) -> None:
    # SUPPRESS: a parser only sets the flag when it is given, so "--json" is accepted at
    # any level of the tree without a subcommand resetting it to False.
    parser.add_argument(
        "--json",
        action="store_true",
        default=argparse.SUPPRESS,
        help="print JSON on stdout instead of tables (for scripts): one document, or one "
        "object per line for commands that stream (tail)",
    )


class CommandTree:
    """A level of the command tree: adds groups (with subcommands) and commands to it.

    ``options`` are functions that add options to every parser created below this level
    (e.g. a group's connection options), so they are accepted wherever the user types them.
    """

    def __init__(
        self,
        subparsers: argparse._SubParsersAction[Any],
        prog: str,
        options: Sequence[Callable[[argparse.ArgumentParser], None]] = (),
        *,
        formatter: Callable[..., argparse.HelpFormatter] = argparse.RawDescriptionHelpFormatter,
    ) -> None:
        self._subparsers = subparsers
        self.prog = prog
        self._options = tuple(options)
        self._formatter = formatter

    def _parser(
        self,
        name: str,
        *,
        help: str,
        description: str,
        example: str | Sequence[str],
        options: Sequence[Callable[[argparse.ArgumentParser], None]],
    ) -> tuple[argparse.ArgumentParser, tuple[Callable[[argparse.ArgumentParser], None], ...]]:
        parser = self._subparsers.add_parser(
            name,
            help=help,
            description=description,
            epilog=_epilog(example),
            formatter_class=self._formatter,
        )
        every = (*self._options, *options)
        _json_option(parser)
        for add in every:
            add(parser)
        return parser, every

    def group(
        self,
        name: str,
        *,
        help: str,
        description: str,
        example: str | Sequence[str],
        options: Sequence[Callable[[argparse.ArgumentParser], None]] = (),
    ) -> CommandTree:
        """Add a group (``aiocompute workbench``) and return the tree of its subcommands."""
        parser, every = self._parser(
            name, help=help, description=description, example=example, options=options
        )
        sub = parser.add_subparsers(title="commands", metavar="COMMAND", required=True)
        return CommandTree(sub, f"{self.prog} {name}", every, formatter=self._formatter)

    def command(
        self,
        name: str,
        *,
        help: str,
        description: str,
        example: str | Sequence[str],
        handler: Handler,
        options: Sequence[Callable[[argparse.ArgumentParser], None]] = (),
    ) -> argparse.ArgumentParser:
        """Add a command run by ``handler``; returns its parser to add arguments to."""
        parser, _ = self._parser(
            name, help=help, description=description, example=example, options=options
        )
        parser.set_defaults(handler=handler)
        return parser


async def _version(args: argparse.Namespace, out: Output) -> int:
    out.emit({"version": __version__})
    out.info(f"aiocompute {__version__}")
    return EXIT_OK


def build_parser(argv: Sequence[str] | None = None) -> argparse.ArgumentParser:
    """The ``aiocompute`` argument parser: the whole tree, or, when ``argv`` names a command
    group (``workbench ...``), the tree with that group only, which parses ``argv`` the same.
    """
    # The terminal's width, read once: argparse's formatter reads it again (a system call)
    # for each of the ~1,500 arguments added, a fifth of the time the tree takes to build.
    formatter = functools.partial(
        argparse.RawDescriptionHelpFormatter, width=shutil.get_terminal_size().columns - 2
    )
    parser = _Parser(
        prog="aiocompute",
        description=(
            "Launch and watch compute sessions, fan out job queries and tail live job logs\n"
            "on remote compute platforms (Posit Workbench, Qiskit Runtime, LakeSail,\n"
            "ET Engine), or try it all against the built-in emulator.\n\n"
            "Configuration comes from options first, then environment variables\n"
            "(WORKBENCH_SERVER, WORKBENCH_API_KEY; QISKIT_IBM_TOKEN, QISKIT_IBM_INSTANCE;\n"
            "LAKESAIL_API_TOKEN; ET_ENGINE_API_KEY)."
        ),
        epilog=_epilog(["aiocompute demo", "aiocompute workbench sessions list --json"]),
        formatter_class=formatter,
    )
    parser.add_argument(
        "--version", action="version", version=f"aiocompute {__version__}", help="show version"
    )
    _json_option(parser)
    sub = parser.add_subparsers(title="commands", metavar="COMMAND", required=True)
    tree = CommandTree(sub, "aiocompute", formatter=formatter)
    tree.command(
        "version",
        help="show the SDK version",
        description="Print the version of the aiocompute SDK.",
        example="aiocompute version --json",
        handler=_version,
    )
    # The whole tree is about 1,500 arguments: a command that names its group needs only that
    # group's (a quarter of the build, and none of the other groups' imports).
    named = _group_named(argv)
    for name, module in COMMAND_GROUPS.items():
        if named is None or name == named:
            importlib.import_module(module).register(tree)
    return parser


def _group_named(argv: Sequence[str] | None) -> str | None:
    """The command group ``argv`` names, if any: its first word that is not an option (the
    top level's options take no value)."""
    for arg in argv or ():
        if arg == "--":
            return None
        if not arg.startswith("-"):
            return arg if arg in COMMAND_GROUPS else None
    return None


def _register_argv_secrets(argv: Sequence[str]) -> None:
    """Register credentials given on the command line before anything can echo them."""
    for i, arg in enumerate(argv):
        for option in _SECRET_OPTIONS:
            if arg == option and i + 1 < len(argv):
                register_secret(argv[i + 1])
            elif arg.startswith(option + "="):
                register_secret(arg.split("=", 1)[1])


def _exit_code(code: Any) -> int:
    if code is None:
        return EXIT_OK
    return code if isinstance(code, int) else EXIT_USAGE


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``aiocompute`` command with ``argv`` (default ``sys.argv[1:]``); return the
    exit code."""
    args_list = list(sys.argv[1:] if argv is None else argv)
    _register_argv_secrets(args_list)
    try:
        # Ctrl-C while the command groups are still being imported is no crash either.
        parser = build_parser(args_list)
        args = parser.parse_args(args_list)
    except SystemExit as exc:  # --help, --version, usage errors
        return _exit_code(exc.code)
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    out = Output(json_mode=bool(getattr(args, "json", False)))
    handler: Handler = args.handler
    try:
        return asyncio.run(_run(handler, args, out))
    except KeyboardInterrupt:
        out.interrupted()
        return EXIT_INTERRUPTED
    except UsageError as exc:
        out.error(str(exc), exc)
        return EXIT_USAGE
    except WaitError as exc:
        out.fail(exc)
        return EXIT_WAIT
    except AioComputeError as exc:
        out.fail(exc)
        return EXIT_API
    except BrokenPipeError:
        # The reader went away (``aiocompute ... | head``): stop quietly, like other tools.
        _silence_stdout()
        return EXIT_BROKEN_PIPE
    except BaseExceptionGroup as group:
        # The same two, raised inside a task group (a wait's progress, a fan-out).
        if _only(group, BrokenPipeError):
            _silence_stdout()
            return EXIT_BROKEN_PIPE
        if _only(group, KeyboardInterrupt):
            out.interrupted()
            return EXIT_INTERRUPTED
        raise


def _only(group: BaseExceptionGroup[BaseException], kind: type[BaseException]) -> bool:
    """Whether every exception in ``group`` (nested groups included) is a ``kind``."""
    rest = group.split(kind)[1]
    return rest is None


def _silence_stdout() -> None:
    # Python flushes stdout at exit; on a closed pipe that would print a second error.
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):  # no real file descriptor (e.g. captured by a test)
        pass


async def _run(handler: Handler, args: argparse.Namespace, out: Output) -> int:
    return await handler(args, out)
