"""How the CLI talks to people and to scripts.

Human output (the default) is drawn with rich: tables, and live progress while waiting when
stdout is a terminal; plain lines otherwise, so that CI logs and pipes stay readable. With
``--json`` a command prints exactly one JSON document on stdout (models unstructured to plain
data, datetimes as ISO-8601 strings, no ``raw``) and nothing else there.

Every piece of text that came from a server or a user is printed as plain text (rich markup is
off), and every error message goes through :func:`~aiocompute._exceptions.redact`.
"""

from __future__ import annotations

import enum
import json
import os
import sys
import time
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from datetime import date, datetime
from types import TracebackType
from typing import Any, TextIO

import anyio
import anyio.abc
import attrs
from rich import box
from rich.console import Console, RenderableType
from rich.live import Live
from rich.table import Table
from rich.text import Text

from .._core.states import StateTable
from .._core.wait_types import TransitionEvent
from .._exceptions import AioComputeError, APIError, WaitError, WaitTimeout, redact

__all__ = [
    "Output",
    "StateBoard",
    "error_data",
    "fmt_seconds",
    "one_line",
    "short_reason",
    "state_style",
    "to_data",
]

#: Width of human output when stdout is not a terminal (and $COLUMNS is unset): logs are wide.
_PLAIN_WIDTH = 120

# States a person should read as good, bad or over; anything else is "in progress".
_GOOD = frozenset({"running", "Finished", "active", "succeeded"})
_BAD = frozenset({"failed", "killed", "canceled", "Failed", "Killed", "Canceled", "error"})
_OVER = frozenset({"finished", "ended", "suspended", "saved", "closed"})


def to_data(value: object) -> Any:
    """Turn a model (or anything holding models) into JSON-ready plain data.

    attrs classes become dicts of their fields (``raw`` left out), enums their values,
    datetimes ISO-8601 strings, tuples and sets lists, exceptions :func:`error_data`.
    """
    if isinstance(value, enum.Enum):
        return to_data(value.value)
    if value is None or isinstance(value, (str, bool, int, float)):
        return value
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    cls: Any = type(value)
    if attrs.has(cls):
        return {
            f.name: to_data(getattr(value, f.name)) for f in attrs.fields(cls) if f.name != "raw"
        }
    if isinstance(value, BaseException):
        return error_data(value)
    if isinstance(value, Mapping):
        return {str(k): to_data(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [to_data(v) for v in value]
    return str(value)


def one_line(text: str) -> str:
    """``text`` on one line, credentials scrubbed."""
    return redact(" ".join(text.split()))


def error_data(exc: BaseException) -> dict[str, Any]:
    """An error as plain data: its type, its (scrubbed) message and what the type adds."""
    data: dict[str, Any] = {"type": type(exc).__name__, "message": one_line(str(exc))}
    if isinstance(exc, APIError):
        data["status"] = exc.status
        data["code"] = to_data(exc.code)
    if isinstance(exc, WaitError):
        data["attempts"] = exc.attempts
        data["elapsed"] = round(exc.elapsed, 3)
    return data


def state_style(state: str | None) -> str:
    """The rich style a state is shown in."""
    if state is None:
        return "dim"
    if state in _GOOD:
        return "green"
    if state in _BAD:
        return "red"
    if state in _OVER:
        return "dim"
    return "yellow"


class _Console(Console):
    """A rich Console that lets a closed pipe end the command like other Unix tools.

    rich's own handling of a closed pipe raises ``SystemExit(1)``, which would pass the
    command's exit-code mapping by: here it is a :class:`BrokenPipeError` again, which
    :func:`~aiocompute.cli._app.main` turns into exit code 141, quietly."""

    def on_broken_pipe(self) -> None:
        self.quiet = True
        raise BrokenPipeError("the reader of the output went away")


def _make_console(stream: TextIO, *, stderr: bool) -> Console:
    console = _Console(file=stream, stderr=stderr, highlight=False, markup=False, emoji=False)
    if not console.is_interactive and "COLUMNS" not in os.environ:
        console = _Console(
            file=stream,
            stderr=stderr,
            highlight=False,
            markup=False,
            emoji=False,
            width=_PLAIN_WIDTH,
        )
    return console


class Output:
    """Where a command writes: human output (rich) or one JSON document, and errors.

    Built once per command run, after the streams are known (tests capture them).
    """

    def __init__(
        self,
        *,
        json_mode: bool = False,
        stdout: TextIO | None = None,
        stderr: TextIO | None = None,
    ) -> None:
        self.json_mode = json_mode
        self._stdout = stdout if stdout is not None else sys.stdout
        self._stderr = stderr if stderr is not None else sys.stderr
        self.console = _make_console(self._stdout, stderr=False)
        self.err_console = _make_console(self._stderr, stderr=True)
        #: What to tell on stderr if Ctrl-C stops the command now (see :meth:`keeps_running`).
        self.interrupt_note: str | None = None

    @property
    def live(self) -> bool:
        """Whether live (redrawn) progress may be shown: human mode on an interactive
        terminal (not a pipe, a file, a dumb terminal or a CI log)."""
        return not self.json_mode and self.console.is_interactive

    def print(self, *renderables: RenderableType) -> None:
        """Print human output (nothing in JSON mode)."""
        if not self.json_mode:
            self.console.print(*renderables)

    def info(self, text: str | Text) -> None:
        """Print one line of human output (nothing in JSON mode)."""
        if not self.json_mode:
            self.console.print(text, soft_wrap=True)

    def emit(self, data: object) -> None:
        """Print the JSON document of a command (JSON mode only)."""
        if self.json_mode:
            self._stdout.write(json.dumps(to_data(data), indent=2) + "\n")
            self._stdout.flush()

    def emit_line(self, data: object) -> None:
        """Print one JSON object on one line and flush it (NDJSON, JSON mode only): for
        commands that stream, so that a reader gets each object as it happens."""
        if self.json_mode:
            self._stdout.write(json.dumps(to_data(data), separators=(",", ":")) + "\n")
            self._stdout.flush()

    @contextmanager
    def keeps_running(self, note: str) -> Iterator[None]:
        """Around a wait or a tail: if Ctrl-C stops the command inside, ``note`` (what keeps
        running and the command that stops it) is said on stderr. Not cleared on an
        exception: the interrupt comes out of the block as one."""
        before = self.interrupt_note
        self.interrupt_note = note
        yield
        self.interrupt_note = before

    def interrupted(self) -> None:
        """Say on stderr what Ctrl-C left running (if a wait or tail was under way)."""
        if self.interrupt_note is None:
            return
        note = Text(f"aiocompute: interrupted; {one_line(self.interrupt_note)}", style="yellow")
        with suppress(OSError):  # stderr is gone too: nothing more to say
            self.err_console.print(note, soft_wrap=True)

    def flush(self) -> None:
        """Push what was written to stdout out now (a reader may be waiting for it)."""
        self._stdout.flush()

    def warn(self, text: str, *, style: str = "yellow") -> None:
        """A one-line notice on stderr, whatever the mode (never a JSON document)."""
        self.err_console.print(Text(one_line(text), style=style), soft_wrap=True)

    def problem(self, text: str) -> None:
        """One ``aiocompute: ...`` line on stderr, in red (never a JSON document: for a command
        that reports the failure in its own document)."""
        self.err_console.print(Text(f"aiocompute: {one_line(text)}", style="red"), soft_wrap=True)

    def error(self, text: str, exc: BaseException | None = None) -> None:
        """Report a failure: one line on stderr; in JSON mode also ``{"error": ...}`` on stdout."""
        self.problem(text)
        if self.json_mode:
            data = error_data(exc) if exc is not None else {"message": one_line(text)}
            self._stdout.write(json.dumps({"error": data}, indent=2) + "\n")
            self._stdout.flush()

    def fail(self, exc: AioComputeError) -> None:
        """Report an SDK error as one line (no traceback)."""
        self.error(f"{type(exc).__name__}: {exc}", exc)

    def raw(self, text: str, *, stderr: bool = False) -> None:
        """Write ``text`` as it is (job output, maybe ending mid-line) to stdout or stderr."""
        stream = self._stderr if stderr else self._stdout
        stream.write(text)
        stream.flush()

    def out_line(self, text: str, *, stderr: bool = False, style: str | None = None) -> None:
        """Write one raw line (job output): no wrapping, no markup; ``stderr`` picks the stream."""
        console = self.err_console if stderr else self.console
        console.out(text, style=style, highlight=False)

    def table(self, *columns: str, title: str | None = None) -> Table:
        """An empty table in the house style (light rules, readable in plain logs)."""
        table = Table(
            *columns,
            title=title,
            box=box.SIMPLE_HEAD,
            title_justify="left",
            header_style="bold",
            pad_edge=False,
        )
        return table


def fmt_seconds(seconds: float | None) -> str:
    """``0.1234`` -> ``"0.12s"``, ``12.34`` -> ``"12.3s"``."""
    if seconds is None:
        return "-"
    return f"{seconds:.2f}s" if seconds < 1 else f"{seconds:.1f}s"


@attrs.define
class _Row:
    label: str
    state: str | None = None
    started: float = 0.0
    settled: float | None = None
    note: str = ""
    ok: bool | None = None


class StateBoard:
    """Progress of a wait over many ids: their states and how long each took.

    On a terminal it is a live table redrawn several times a second. Otherwise it prints plain
    lines: every change of state when there are a few ids; for many, a count of states each
    second it changed (and every 10 s regardless, to show it is alive). Use it as ``async
    with board:`` around the wait, pass :meth:`on_transition` to the wait, then
    :meth:`finish` each id with its result and print :meth:`summary`.
    """

    #: Seconds between two plain count lines, and the longest silence without one.
    PLAIN_EVERY = 1.0
    PLAIN_HEARTBEAT = 10.0

    def __init__(
        self,
        out: Output,
        items: Sequence[tuple[str, str]],
        *,
        table: StateTable,
        targets: frozenset[str],
        title: str = "",
        verbose: bool | None = None,
    ) -> None:
        self._out = out
        self._table = table
        self._targets = targets
        self._title = title
        self._start = time.monotonic()
        self._rows: dict[str, _Row] = {
            one: _Row(label, started=self._start) for one, label in items
        }
        self._verbose = len(self._rows) <= 4 if verbose is None else verbose
        self._live: Live | None = None
        self._ticker: anyio.abc.TaskGroup | None = None

    async def __aenter__(self) -> StateBoard:
        if self._out.live:
            self._live = Live(
                get_renderable=self.render,
                console=self._out.console,
                refresh_per_second=8,
                transient=True,
            )
            self._live.start()
        elif not self._out.json_mode and not self._verbose:
            self._ticker = anyio.create_task_group()
            await self._ticker.__aenter__()
            self._ticker.start_soon(self._tick)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._live is not None:
            self._live.stop()
            self._live = None
        if self._ticker is not None:
            ticker, self._ticker = self._ticker, None
            ticker.cancel_scope.cancel()
            # The ticker only sleeps and prints: closing it cleanly cannot raise, and the
            # body's own exception (if any) propagates as itself.
            await ticker.__aexit__(None, None, None)

    async def _tick(self) -> None:
        shown: Counter[str] = Counter()
        last = time.monotonic()
        while True:
            await anyio.sleep(self.PLAIN_EVERY)
            counts = self._counts()
            now = time.monotonic()
            if counts and (counts != shown or now - last >= self.PLAIN_HEARTBEAT):
                shown, last = counts, now
                try:
                    self._out.info(f"{fmt_seconds(now - self._start):>7}  {self.counts_text()}")
                except OSError:  # stdout went away: progress is not worth failing the wait
                    return

    def _settled(self, state: str) -> bool:
        if state in self._targets:
            return True
        return not any(self._table.can_reach(state, t) for t in self._targets)

    def on_transition(self, event: TransitionEvent[Any]) -> None:
        """Record a change of state (the ``on_transition`` hook of a wait)."""
        row = self._rows.get(event.id)
        if row is None:
            return
        now = time.monotonic()
        old, row.state = row.state, event.new_state
        if not row.label:
            row.label = _label_of(event.resource)
        if row.settled is None and self._settled(event.new_state):
            row.settled = now
        if self._verbose and not self._out.live and not self._out.json_mode:
            elapsed = fmt_seconds(now - row.started)
            label = f"{event.id} {row.label}".strip()
            self._out.info(f"{elapsed:>7}  {label}  {old or '-'} -> {event.new_state}")

    def _counts(self) -> Counter[str]:
        return Counter(row.state for row in self._rows.values() if row.state is not None)

    def counts_text(self) -> str:
        """``"running 20, pending 3, failed 1"`` for the states read so far."""
        return ", ".join(f"{state} {n}" for state, n in self._counts().most_common())

    def finish(self, one: str, resource_state: str | None, error: BaseException | None) -> None:
        """Record how the wait for ``one`` ended."""
        row = self._rows.get(one)
        if row is None:
            return
        if resource_state is not None:
            row.state = resource_state
        if row.settled is None:
            row.settled = time.monotonic()
        row.ok = error is None
        row.note = "ok" if error is None else short_reason(error)

    def render(self) -> Table:
        """The live table: one row per id, its state and elapsed time."""
        now = time.monotonic()
        counts = self.counts_text() or "starting"
        title = f"{self._title}  {fmt_seconds(now - self._start)}  ({counts})".strip()
        table = self._out.table("ID", "NAME", "STATE", "ELAPSED", title=title)
        for one, row in self._rows.items():
            end = row.settled if row.settled is not None else now
            table.add_row(
                one,
                row.label or "-",
                Text(row.state or "…", style=state_style(row.state)),
                fmt_seconds(end - row.started),
            )
        return table

    def summary(self, title: str | None = None) -> Table:
        """The final table: state, elapsed and outcome of every id."""
        table = self._out.table("ID", "NAME", "STATE", "ELAPSED", "RESULT", title=title)
        for one, row in self._rows.items():
            end = row.settled if row.settled is not None else time.monotonic()
            table.add_row(
                one,
                row.label or "-",
                Text(row.state or "-", style=state_style(row.state)),
                fmt_seconds(end - row.started),
                Text(row.note, style="green" if row.ok else "red"),
            )
        return table


def _label_of(resource: object) -> str:
    name = getattr(resource, "name", None)
    return name if isinstance(name, str) else ""


def short_reason(error: BaseException) -> str:
    """A word or two for a table cell: ``timed out``, ``unreachable`` or the error's type."""
    if isinstance(error, WaitTimeout):
        return "timed out"
    if isinstance(error, WaitError):
        return "unreachable"
    return type(error).__name__
