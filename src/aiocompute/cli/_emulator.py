"""``aiocompute emulator``: serve the built-in emulator until Ctrl-C."""

from __future__ import annotations

import argparse
import shlex

from rich.text import Text

from ..emulator import Emulator, serve
from ._app import EXIT_API, EXIT_OK, CommandTree, UsageError
from ._output import Output, one_line

__all__ = ["describe", "register"]


def describe(emu: Emulator) -> dict[str, object]:
    """What a user needs to point a client at ``emu``: its URLs and its (demo) tokens."""
    tokens = {
        token: {"user": user, "role": role}
        for token, (user, role) in emu.config.workbench.tokens.items()
    }
    return {
        "url": emu.url,
        "apis": {"workbench": emu.workbench_url},
        "tokens": {"workbench": tokens},
        "seed": emu.seed,
    }


def _print_ready(out: Output, emu: Emulator) -> None:
    info = describe(emu)
    out.emit(info)
    if out.json_mode:
        return
    out.info(Text.assemble(("aiocompute emulator", "bold"), f" listening on {emu.url}"))
    out.info(f"  Workbench API   {emu.workbench_url}")
    table = out.table("TOKEN", "USER", "ROLE", title="Demo tokens (they only work here)")
    for token, (user, role) in emu.config.workbench.tokens.items():
        table.add_row(token, user, role)
    out.print(table)
    token = next(iter(emu.config.workbench.tokens), "user-token")
    out.info("Try, in another terminal:")
    out.info(f"  export WORKBENCH_SERVER={shlex.quote(emu.workbench_url)}")
    out.info(f"  export WORKBENCH_API_KEY={shlex.quote(token)}")
    out.info("  aiocompute workbench sessions launch 'VS Code' --name try --wait")
    out.info("Press Ctrl-C to stop.")
    out.flush()


async def _emulator(args: argparse.Namespace, out: Output) -> int:
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


def _port(value: str) -> int:
    try:
        port = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a port number, got {value!r}") from None
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"expected a port in 0..65535, got {port}")
    return port


def register(tree: CommandTree) -> None:
    """Add ``aiocompute emulator``."""
    p = tree.command(
        "emulator",
        help="serve the built-in API emulator (for trying things and for tests)",
        description=(
            "Serve the emulator: a local server that speaks the compute APIs (Posit\n"
            "Workbench) with realistic timings, until Ctrl-C. Prints its URLs and the demo\n"
            "tokens it accepts. Port 0 picks a free port."
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
