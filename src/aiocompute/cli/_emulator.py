"""``aiocompute emulator``: serve the built-in emulator until Ctrl-C."""

from __future__ import annotations

import argparse
import shlex
from collections.abc import Iterable
from typing import TYPE_CHECKING

from rich.text import Text

from ._app import EXIT_API, EXIT_OK, CommandTree, UsageError
from ._common import whole_number
from ._output import Output, one_line

if TYPE_CHECKING:
    from ..emulator import Emulator

__all__ = ["describe", "register"]


def describe(emu: Emulator) -> dict[str, object]:
    """What a user needs to point a client at ``emu``: its URLs and its (demo) tokens."""
    config = emu.config
    workbench = {
        token: {"user": user, "role": role}
        for token, (user, role) in config.workbench.tokens.items()
    }
    lakesail = {
        token: {"principal": principal, "role": role}
        for token, (principal, role) in config.lakesail.tokens.items()
    }
    return {
        "url": emu.url,
        "apis": {
            "workbench": emu.workbench_url,
            "qiskit": emu.qiskit_url,
            "qiskit_iam": emu.qiskit_iam_url,
            "lakesail": emu.lakesail_url,
            "etengine": emu.etengine_url,
        },
        "tokens": {
            "workbench": workbench,
            "qiskit": {key: {"user": user} for key, user in config.qiskit.api_keys.items()},
            "lakesail": lakesail,
            "etengine": {key: {"user": user} for key, user in config.etengine.api_keys.items()},
        },
        "qiskit_instances": sorted(config.qiskit.instances),
        "etengine_tools": sorted(config.etengine.tools),
        "seed": emu.seed,
    }


def _first(keys: Iterable[str], default: str) -> str:
    return next(iter(keys), default)


def _print_ready(out: Output, emu: Emulator) -> None:
    info = describe(emu)
    out.emit(info)
    if out.json_mode:
        return
    config = emu.config
    out.info(Text.assemble(("aiocompute emulator", "bold"), f" listening on {emu.url}"))
    out.info(f"  Workbench API    {emu.workbench_url}")
    out.info(f"  Qiskit Runtime   {emu.qiskit_url}  (IAM: {emu.qiskit_iam_url})")
    out.info(f"  LakeSail         {emu.lakesail_url}")
    out.info(f"  ET Engine        {emu.etengine_url}")
    table = out.table("API", "TOKEN", "USER", "ROLE", title="Demo tokens (they only work here)")
    for token, (user, role) in config.workbench.tokens.items():
        table.add_row("workbench", token, user, role)
    for key, user in config.qiskit.api_keys.items():
        table.add_row("qiskit", key, user, "-")
    for token, (principal, role) in config.lakesail.tokens.items():
        table.add_row("lakesail", token, principal, role)
    for key, user in config.etengine.api_keys.items():
        table.add_row("etengine", key, user, "-")
    out.print(table)
    instance = _first(sorted(config.qiskit.instances), "")
    exports = [
        ("WORKBENCH_SERVER", emu.workbench_url),
        ("WORKBENCH_API_KEY", _first(config.workbench.tokens, "user-token")),
        ("AIOCOMPUTE_QISKIT_BASE_URL", emu.qiskit_url),
        ("QISKIT_IBM_IAM_URL", emu.qiskit_iam_url),
        ("QISKIT_IBM_TOKEN", _first(config.qiskit.api_keys, "qiskit-key")),
        ("QISKIT_IBM_INSTANCE", instance),
        ("LAKESAIL_BASE_URL", emu.lakesail_url),
        ("LAKESAIL_API_TOKEN", _first(config.lakesail.tokens, "lakesail-token")),
        ("ET_ENGINE_URL", emu.etengine_url),
        ("ET_ENGINE_API_KEY", _first(config.etengine.api_keys, "et-key")),
    ]
    tools = config.etengine.tools
    tool = "tool-sim" if "tool-sim" in tools else _first(sorted(tools), "tool-sim")
    out.info("Try, in another terminal:")
    for name, value in exports:
        out.info(f"  export {name}={shlex.quote(value)}")
    out.info("  aiocompute workbench sessions launch 'VS Code' --name try --wait")
    out.info("  aiocompute qiskit sessions create ibm_brisbane --wait")
    out.info("  aiocompute lakesail sessions create --name try --wait")
    out.info(f"  aiocompute etengine batches submit {tool} --var seed:=1 --var seed:=2 --wait")
    out.info("Press Ctrl-C to stop.")
    out.flush()


async def _emulator(args: argparse.Namespace, out: Output) -> int:
    # Imported here: the emulator (aiohttp's server side) is no cost to the other commands.
    from ..emulator import serve

    try:
        await serve(
            args.host,
            args.port,
            seed=args.seed,
            allow_remote=args.allow_remote,
            on_ready=lambda emu: _print_ready(out, emu),
            duration=args.duration,
        )
    except ValueError as exc:  # e.g. a non-loopback host without --allow-remote
        raise UsageError(one_line(str(exc))) from None
    except OSError as exc:  # the port is taken, the address is not ours...
        out.error(f"could not serve on {args.host}:{args.port}: {exc.strerror or exc}", exc)
        return EXIT_API
    return EXIT_OK


_port = whole_number("a port number", maximum=65535)


def register(tree: CommandTree) -> None:
    """Add ``aiocompute emulator``."""
    p = tree.command(
        "emulator",
        help="serve the built-in API emulator (for trying things and for tests)",
        description=(
            "Serve the emulator: a local server that speaks the compute APIs (Posit\n"
            "Workbench, Qiskit Runtime, LakeSail, ET Engine) with realistic timings, until\n"
            "Ctrl-C. Prints its URLs, the demo tokens it accepts and the environment\n"
            "variables that point the aiocompute commands at it. Port 0 picks a free port."
        ),
        example="aiocompute emulator --port 8000 --seed 7",
        handler=_emulator,
    )
    p.add_argument("--port", type=_port, default=8000, help="TCP port (default 8000; 0: any)")
    p.add_argument("--host", default="127.0.0.1", help="interface (default 127.0.0.1)")
    p.add_argument("--seed", type=int, default=0, help="seed of every random draw (default 0)")
    p.add_argument(
        "--allow-remote",
        action="store_true",
        help="allow a non-loopback --host (anyone who can reach it can use the demo tokens)",
    )
    # For tests: stop after this many seconds instead of at Ctrl-C.
    p.add_argument("--duration", type=float, default=None, help=argparse.SUPPRESS)
