"""The emulated Posit Workbench API, served under ``/workbench`` (methods at ``/api/<method>``).

It follows ``reference/posit-workbench-api.txt`` and ``API-NOTES.md``, quirks included: every
call is ``POST /api/<method>`` with ``{"method": ..., "kwparams": {...}}`` (``version``,
``get_users`` and ``get_compute_envs`` also answer ``GET``); application errors are HTTP 200
with ``{"error": {"code", "message"}}``; auth failures are a real HTTP 401; ``version`` is not
wrapped in ``result``; ``launch_job`` nests ``result`` twice; sessions are snake_case with
epoch-millisecond times while live and ISO strings once historical; jobs are camelCase.

State is computed lazily from timestamps (``state = f(now)``), so thousands of sessions cost
no tasks. Every state change is recorded with its exact time on both clocks:
``emu.workbench.sessions[sid].transitions`` and ``emu.workbench.jobs[jid].transitions`` are
lists of :class:`~aiocompute.emulator.Transition` ``(state, wall_time, monotonic)``.

Steering the emulation from the client side
-------------------------------------------
Session names (``launch_session`` ``name``):

- containing ``emu-fail``: the launch fails; ``activity_state`` goes launching -> pending ->
  ``failed`` with a ``status_detail`` message.
- containing ``emu-stuck``: the session stays ``pending`` forever (for wait timeouts).

Job args (``launch_job`` / ``launch_audited_job``), echoed back untouched in ``args``:

=========================  =============================================================
``--emu-chunks=N``         number of output chunks (default ``job_chunk_count``)
``--emu-interval=S``       seconds between chunks (default ``job_chunk_interval``)
``--emu-duration=S``       total running time; spreads the chunks evenly over it
``--emu-bytes=N``          size of each chunk (of each line with --emu-split-lines) in
                           bytes (default ``job_chunk_bytes``)
``--emu-stderr-every=N``   every N-th chunk goes to stderr
``--emu-exit=N``           exitCode when the job finishes (default ``job_exit_code``)
``--emu-fail``             the job ends ``Failed`` (exitCode from --emu-exit, else 1)
``--emu-pending=S``        seconds spent ``Pending`` before ``Running``
``--emu-split-lines``      chunks cut the output at seeded points instead of at line ends
                           (see below)
=========================  =============================================================

Chunk ``i`` (0-based) has the text ``"<stdout|stderr> line <i> of job <id>: <padding>\\n"``
(:meth:`JobRecord.line`), padding derived from the seed, the job id and ``i``, so a reader
can check that nothing was lost or repeated. Chunk ``i`` is produced ``(i + 1) * interval``
after the job starts running; the job ends with its last chunk. ``get_job_output`` replays
the output from the first chunk on every request, keeps the stream open while the job runs
and closes it when the job ends.

With ``--emu-split-lines`` the job writes the same lines, as the same number of chunks with
the same ``outputType`` and timing, but each channel's text is cut at points drawn from the
seed and the job id (the same on every replay): a chunk may end mid-line, the next chunk of
that channel continuing it (possibly after chunks of the other channel), and some chunks
carry several lines. A channel of two lines or more has a chunk that ends mid-line; one of
three lines or more also has a chunk holding the ends of two non-blank lines. The text also
has the shapes line readers get wrong: a blank line after each channel's first line (when
it has two or more), and its last line without a newline. :meth:`JobRecord.chunk` gives
the chunks as written; :meth:`JobRecord.channel_text` a channel's whole text. Meant for
jobs of test size: the cut output is computed at once and kept.

Every chunk written in full to a stream is recorded with its write instant: see
:class:`~aiocompute.emulator.ChunkWrite`, ``JobRecord.writes`` (the most recent
``job_write_log_size`` of the job, over all its streams) and ``emu.on_chunk_written``.

Audited jobs carry two ids, as the reference shows: the audited job id (``id``, used by every
``*_audited_job*`` method and in the finished output) and the launcher job id, which the live
output stream reports as ``jobId``.

``stop_session``, ``stop_job`` and ``stop_audited_job`` answer ``{"result": {}}`` (the
reference only says "an empty result message").
"""

from __future__ import annotations

import collections
import hashlib
import itertools
import json
import math
import random
from collections.abc import Callable, Container, Mapping
from datetime import datetime, timezone
from typing import Any, Literal

import attrs
from aiohttp import web

from ._config import WorkbenchEmulatorConfig
from ._runtime import ChunkWrite, Runtime, Signal, Transition

__all__ = [
    "API",
    "API_ROOT",
    "METHODS",
    "PREFIX",
    "JobRecord",
    "SessionRecord",
    "WorkbenchState",
    "create_app",
]

#: API name, the first part of every stats / fault key (``"workbench.get_session"``).
API = "workbench"
#: Where the API is mounted on the emulator.
PREFIX = "/workbench"
#: The API's base URL under the prefix (a Workbench server's address: methods are below it).
API_ROOT = ""
#: Every method of the reference.
METHODS = (
    "launch_session",
    "launch_job",
    "launch_audited_job",
    "get_session",
    "get_historical_session",
    "resume_session",
    "get_compute_envs",
    "get_job_output",
    "get_audited_job_output",
    "get_audited_job_details",
    "stop_session",
    "stop_job",
    "stop_audited_job",
    "version",
    "get_users",
)
#: Methods that also answer GET (they have no required parameter).
GET_METHODS = frozenset({"version", "get_users", "get_compute_envs"})
#: IDE names launch_session accepts.
WORKBENCHES = ("RStudio", "Positron", "JupyterLab", "Jupyter Notebook", "VS Code")

_ADMIN_ROLES = frozenset({"admin", "super-admin"})
_CLUSTERS = ("Local", "Kubernetes")
_PROFILES: Mapping[str, tuple[str, ...]] = {
    "Local": ("custom", "default"),
    "Kubernetes": ("custom", "default", "small", "medium", "large"),
}
_K8S_IMAGES = ("posit/r-base:4.3-jammy", "posit/workbench-session:2024.12.1-ubuntu2204")
_R_IDES = frozenset({"RStudio"})

# Exit codes a launcher reports for signals: SIGTERM (normal stop) and SIGKILL (force).
_EXIT_TERM = 143
_EXIT_KILL = 137


class RpcError(Exception):
    """An application error, answered as HTTP 200 ``{"error": {"code", "message"}}``."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def _denied() -> RpcError:
    return RpcError(401, "Permission denied")


@attrs.frozen
class Identity:
    """Who is calling: the token's (or RPC cookie's) user and role."""

    username: str
    role: str
    via_cookie: bool = False

    @property
    def is_admin(self) -> bool:
        """Admin or super-admin: may read and stop other users' sessions and jobs."""
        return self.role in _ADMIN_ROLES


# -- time formatting -----------------------------------------------------------------------


def _utc(wall: float) -> datetime:
    return datetime.fromtimestamp(wall, tz=timezone.utc)


def _iso_z(wall: float) -> str:
    """Launcher job style: ``2024-10-01T20:49:32.294130Z``."""
    return _utc(wall).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _iso_naive(wall: float) -> str:
    """Historical session style: ``2025-07-26T05:30:21.424300`` (no zone)."""
    return _utc(wall).strftime("%Y-%m-%dT%H:%M:%S.%f")


def _iso_seconds(wall: float) -> str:
    """Historical ``last_used`` style: ``2025-07-26T05:42:56``."""
    return _utc(wall).strftime("%Y-%m-%dT%H:%M:%S")


def _ms(wall: float) -> int:
    return int(wall * 1000)


def _parse_iso(name: str, value: Any) -> float | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise RpcError(400, f"{name} must be an ISO-8601 date-time string")
    text = value.strip()
    if text[-1:] in ("Z", "z"):
        text = text[:-1] + "+00:00"
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise RpcError(400, f"{name} is not an ISO-8601 date-time: {value!r}") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=timezone.utc)
    return parsed.timestamp()


# -- records -------------------------------------------------------------------------------


def _current(phases: list[Transition], now: float) -> Transition:
    for phase in reversed(phases):
        if phase.monotonic <= now:
            return phase
    return phases[0]


@attrs.define(eq=False)
class SessionRecord:
    """One emulated session. Its state is a schedule of phases evaluated at read time.

    ``transitions`` (the states entered so far, with their exact times) is the accessor for
    tests and benchmarks; ``state`` is the current ``activity_state``.
    """

    id: str
    owner: str
    workbench: str
    name: str
    project_id: str
    url: str
    launch_parameters: dict[str, Any]
    working_dir: str
    created: float
    job_id: str
    suspend_size: int
    _runtime: Runtime = attrs.field(repr=False)
    phases: list[Transition] = attrs.field(factory=list, repr=False)
    status_detail: str = ""
    stop_requested: float | None = None
    end_status: str = "Finished"
    end_exit_code: int = _EXIT_TERM

    @property
    def state(self) -> str:
        """The ``activity_state`` now."""
        return self.state_at(self._runtime.now())

    def state_at(self, now: float) -> str:
        """The ``activity_state`` at an instant of the emulator clock."""
        return _current(self.phases, now).state

    @property
    def transitions(self) -> list[Transition]:
        """States entered so far, oldest first, each with its wall and monotonic time."""
        now = self._runtime.now()
        return [phase for phase in self.phases if phase.monotonic <= now]

    def ended_at(self, now: float) -> float | None:
        """When the session left the active list (``ended``), if it has by ``now``."""
        last = _current(self.phases, now)
        return last.monotonic if last.state == "ended" else None

    def schedule(self, now: float, steps: list[tuple[str, float]]) -> None:
        """Replace the future with ``steps``: each state is entered, then lasts its delay."""
        self.phases = [phase for phase in self.phases if phase.monotonic <= now]
        at = now
        for state, delay in steps:
            self.phases.append(Transition(state, self._runtime.wall(at), at))
            at += delay

    def final_state(self) -> str:
        """The state the schedule ends in (where the session is heading)."""
        return self.phases[-1].state

    def first_time(self, state: str, now: float) -> float | None:
        """When ``state`` was first entered, if it has been by ``now``."""
        for phase in self.phases:
            if phase.state == state and phase.monotonic <= now:
                return phase.monotonic
        return None

    def last_used(self, now: float) -> float:
        """Last time the session became running (or its creation)."""
        used = self.created
        for phase in self.phases:
            if phase.monotonic <= now and phase.state == "running":
                used = phase.monotonic
        return used


@attrs.define(eq=False)
class JobRecord:
    """One emulated job (or audited job). Its status and output derive from its timestamps.

    Pending from ``submitted``, Running from ``running_at``, then Finished / Failed at
    ``natural_end``, unless stopped first (Killed, or Canceled if it never ran).

    ``writes`` holds the most recent :class:`~aiocompute.emulator.ChunkWrite` records of the
    job's output streams (bounded by ``job_write_log_size``); ``streams_opened`` counts its
    output streams so far (the next one's ``stream_seq``).
    """

    id: str
    launcher_id: str
    owner: str
    audited: bool
    spec: dict[str, Any]
    submitted: float
    running_at: float
    chunk_count: int
    interval: float
    natural_end: float
    chunk_bytes: int
    stderr_every: int
    exit_code: int
    fail: bool
    pid: int
    seed: int
    _runtime: Runtime = attrs.field(repr=False)
    split_lines: bool = False
    signal: Signal = attrs.field(factory=Signal, repr=False)
    stopped_at: float | None = None
    stop_status: str = "Killed"
    stop_exit_code: int | None = None
    writes: collections.deque[ChunkWrite] = attrs.field(
        factory=lambda: collections.deque(maxlen=10_000), repr=False
    )
    streams_opened: int = 0
    _split: list[tuple[Literal["stdout", "stderr"], str]] | None = attrs.field(
        default=None, init=False, repr=False
    )

    @property
    def end_time(self) -> float:
        """When the job ends (or ended)."""
        return self.natural_end if self.stopped_at is None else self.stopped_at

    @property
    def final_status(self) -> str:
        """The status the job ends in."""
        if self.stopped_at is not None:
            return self.stop_status
        return "Failed" if self.fail else "Finished"

    @property
    def final_exit_code(self) -> int | None:
        """exitCode once ended (None for a job canceled before it ran)."""
        if self.stopped_at is not None:
            return self.stop_exit_code
        if self.fail:
            return self.exit_code or 1
        return self.exit_code

    def status_at(self, now: float) -> str:
        """The job ``status`` at an instant of the emulator clock."""
        if now >= self.end_time:
            return self.final_status
        if now >= self.running_at:
            return "Running"
        return "Pending"

    @property
    def status(self) -> str:
        """The job ``status`` now."""
        return self.status_at(self._runtime.now())

    def ran(self) -> bool:
        """Whether the job reaches Running at all."""
        return self.running_at <= self.end_time and self.final_status != "Canceled"

    @property
    def transitions(self) -> list[Transition]:
        """Statuses entered so far, with their wall and monotonic times."""
        now = self._runtime.now()
        wall = self._runtime.wall
        out = [Transition("Pending", wall(self.submitted), self.submitted)]
        if self.ran() and self.running_at <= now:
            out.append(Transition("Running", wall(self.running_at), self.running_at))
        if self.end_time <= now:
            out.append(Transition(self.final_status, wall(self.end_time), self.end_time))
        return out

    def stop(self, now: float, *, force: bool, grace: float) -> None:
        """Stop the job: killed after ``grace`` (at once when forced), canceled if pending."""
        if self.end_time <= now:
            return
        kill_at = now if force else now + grace
        if kill_at >= self.end_time:
            return
        self.stopped_at = kill_at
        if kill_at < self.running_at:
            self.stop_status, self.stop_exit_code = "Canceled", None
        else:
            self.stop_status = "Killed"
            self.stop_exit_code = _EXIT_KILL if force else _EXIT_TERM
        self.signal.fire()

    # -- output --------------------------------------------------------------------------
    def chunk_time(self, index: int) -> float:
        """When chunk ``index`` is produced."""
        return self.running_at + (index + 1) * self.interval

    def _count_until(self, t: float) -> int:
        if t < self.running_at or self.chunk_count == 0:
            return 0
        if self.interval <= 0:
            return self.chunk_count
        k = min(self.chunk_count, max(0, int((t - self.running_at) / self.interval)))
        while k < self.chunk_count and self.chunk_time(k) <= t:
            k += 1
        while k > 0 and self.chunk_time(k - 1) > t:
            k -= 1
        return k

    @property
    def total_chunks(self) -> int:
        """How many chunks the job produces in all (fewer if stopped early)."""
        if self.stopped_at is None:
            return self.chunk_count
        return self._count_until(self.stopped_at)

    def chunks_at(self, now: float) -> int:
        """How many chunks exist at ``now``."""
        if now >= self.end_time:
            return self.total_chunks
        return min(self.total_chunks, self._count_until(now))

    def chunk(self, index: int) -> tuple[Literal["stdout", "stderr"], str]:
        """``(outputType, output)`` of chunk ``index`` as written to the stream.

        It is :meth:`line` ``(index)``, or with ``split_lines`` the index-th piece of the cut
        output (its ``outputType`` is line ``index``'s all the same).
        """
        if not self.split_lines:
            return self.line(index)
        if not 0 <= index < self.chunk_count:
            raise IndexError(f"job {self.id} has no chunk {index} ({self.chunk_count} chunks)")
        return self._split_chunks()[index]

    def channel_text(self, kind: str) -> str:
        """Everything the whole job writes to ``kind`` (``"stdout"`` / ``"stderr"``), from its
        lines: what the chunks of that channel add up to when the job is not stopped early."""
        lines = [text for k, text in map(self.line, range(self.chunk_count)) if k == kind]
        return _ragged(lines) if self.split_lines else "".join(lines)

    def _split_chunks(self) -> list[tuple[Literal["stdout", "stderr"], str]]:
        if self._split is None:
            kinds = [self.line(i)[0] for i in range(self.chunk_count)]
            pieces = {
                kind: iter(
                    _cut(
                        self.channel_text(kind),
                        kinds.count(kind),
                        random.Random(f"split-lines:{self.seed}:{self.id}:{kind}"),
                    )
                )
                for kind in dict.fromkeys(kinds)
            }
            self._split = [(kind, next(pieces[kind])) for kind in kinds]
        return self._split

    def record_write(self, stream_seq: int, index: int, nbytes: int, monotonic: float) -> None:
        """Remember that chunk ``index`` was written in full by stream ``stream_seq``, and
        report it to the emulator's ``on_chunk_written`` callables."""
        write = ChunkWrite(
            self.id, stream_seq, index, nbytes, self._runtime.wall(monotonic), monotonic
        )
        self.writes.append(write)
        self._runtime.chunk_written(write)

    def line(self, index: int) -> tuple[Literal["stdout", "stderr"], str]:
        """``(outputType, text)`` of line ``index``: deterministic from seed, id, index.

        Without ``split_lines`` it is also chunk ``index``.
        """
        kind: Literal["stdout", "stderr"] = "stdout"
        if self.stderr_every and (index + 1) % self.stderr_every == 0:
            kind = "stderr"
        head = f"{kind} line {index} of job {self.id}: "
        room = self.chunk_bytes - len(head) - 1
        pad = ""
        if room > 0:
            digest = hashlib.sha256(f"{self.seed}:{self.id}:{index}".encode()).hexdigest()
            pad = (digest * (room // len(digest) + 1))[:room]
        return kind, head + pad + "\n"

    def full_output(self) -> str:
        """Everything the job wrote, both streams, in the order the chunks were written."""
        return "".join(self.chunk(i)[1] for i in range(self.total_chunks))


def _ragged(lines: list[str]) -> str:
    """A channel's ``--emu-split-lines`` text: its lines, a blank line after the first (when
    there are two or more), and no newline after the last."""
    if len(lines) >= 2:
        lines = [lines[0], "\n", *lines[1:]]
    return "".join(lines)[:-1]


def _ragged_enough(text: str, cuts: list[int], pieces: list[str]) -> bool:
    """Whether a cut shows what ``--emu-split-lines`` promises: a chunk ending mid-line (for
    two chunks or more) and one ending two non-blank lines (for three or more)."""
    mid_line = len(pieces) < 2 or any(text[cut - 1] != "\n" and text[cut] != "\n" for cut in cuts)
    several = len(pieces) < 3 or any(
        sum(1 for segment in piece.split("\n")[:-1] if segment) >= 2 for piece in pieces
    )
    return mid_line and several


def _cut(text: str, count: int, rng: random.Random) -> list[str]:
    """``text`` cut into ``count`` non-empty pieces at seeded points, ragged enough."""
    if count <= 1:
        return [text][:count]
    size = len(text)
    if size < count:  # lines are ~40 characters at least, so never in practice
        raise ValueError(f"cannot cut {size} characters into {count} non-empty chunks")
    for _ in range(64):
        cuts = sorted(rng.sample(range(1, size), count - 1))
        pieces = [text[a:b] for a, b in itertools.pairwise([0, *cuts, size])]
        if _ragged_enough(text, cuts, pieces):
            return pieces
    # Unlucky draws: the first chunk takes the first line, the blank line, the second line
    # and one character of the third; the rest is cut evenly.
    starts = [i + 1 for i, char in enumerate(text) if char == "\n"]
    first = starts[2] + 1 if count >= 3 and len(starts) >= 3 else max(1, len(text) // count)
    step = (size - first) / (count - 1)
    cuts = [first, *(first + round(k * step) for k in range(1, count - 1))]
    return [text[a:b] for a, b in itertools.pairwise([0, *cuts, size])]


# -- the state and the API -----------------------------------------------------------------


def _emu_options(args: list[str]) -> dict[str, float | int | bool]:
    """Parse the ``--emu-*`` job args (see module docs)."""
    ints = {"chunks", "bytes", "stderr-every", "exit"}
    floats = {"interval", "duration", "pending"}
    flags = {"fail", "split-lines"}
    out: dict[str, float | int | bool] = {}
    for arg in args:
        if not arg.startswith("--emu-"):
            continue
        name, has_value, value = arg[len("--emu-") :].partition("=")
        if name in flags:
            if has_value:
                raise RpcError(400, f"emulator option {arg!r} takes no value")
            out[name] = True
            continue
        if name not in ints and name not in floats:
            raise RpcError(400, f"unknown emulator option {arg!r} in job args")
        try:
            number: float = int(value) if name in ints else float(value)
        except ValueError:
            kind = "an integer" if name in ints else "a number"
            raise RpcError(400, f"emulator option {arg!r} needs {kind} value") from None
        if not math.isfinite(number) or (name != "exit" and number < 0):
            raise RpcError(400, f"emulator option {arg!r} must be >= 0")
        out[name] = number
    return out


def _first(mapping: Mapping[str, Any], *names: str) -> Any:
    for name in names:
        if name in mapping and mapping[name] is not None:
            return mapping[name]
    return None


def _opt_str(kw: Mapping[str, Any], name: str) -> str | None:
    value = kw.get(name)
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise RpcError(400, f"parameter {name!r} must be a string")
    return value


def _req_str(kw: Mapping[str, Any], name: str) -> str:
    value = _opt_str(kw, name)
    if value is None:
        raise RpcError(400, f"parameter {name!r} is required")
    return value


def _opt_bool(kw: Mapping[str, Any], name: str, default: bool = False) -> bool:
    value = kw.get(name)
    if value is None:
        return default
    if not isinstance(value, bool):
        raise RpcError(400, f"parameter {name!r} must be a boolean")
    return value


def _opt_list(kw: Mapping[str, Any], name: str, where: str = "") -> list[Any]:
    value = kw.get(name)
    if value is None:
        return []
    if not isinstance(value, list):
        raise RpcError(400, f"parameter {where}{name!r} must be an array")
    return value


def _id_list(value: Any, name: str) -> list[str] | None:
    """A comma-separated id string (or, leniently, a list of ids); None when absent."""
    if value is None or value == "":
        return None
    if isinstance(value, str):
        items = value.split(",")
    elif isinstance(value, list) and all(isinstance(v, str) for v in value):
        items = value
    else:
        raise RpcError(400, f"parameter {name!r} must be a comma-separated string of ids")
    return list(dict.fromkeys(item.strip() for item in items if item.strip()))


def _unauthorized() -> web.Response:
    return web.Response(
        status=401,
        text="<html><head><title>401 Unauthorized</title></head>"
        "<body><h1>401 Unauthorized</h1></body></html>",
        content_type="text/html",
    )


def _ok(result: Any) -> web.Response:
    return web.json_response({"result": result})


class WorkbenchState:
    """The simulated Workbench server: users, sessions, jobs and their schedules.

    Attributes:
        config: the :class:`WorkbenchEmulatorConfig` in force.
        sessions: every session ever launched, by id (ended ones included).
        jobs: every job launched with ``launch_job``, by id.
        audited_jobs: every audited job, by audited job id.
    """

    def __init__(self, config: WorkbenchEmulatorConfig, runtime: Runtime) -> None:
        self.config = config
        self._rt = runtime
        seed = runtime.seed
        self._ids = random.Random(f"workbench-ids:{seed}")
        self._timing = random.Random(f"workbench-timing:{seed}")
        self.sessions: dict[str, SessionRecord] = {}
        self.jobs: dict[str, JobRecord] = {}
        self.audited_jobs: dict[str, JobRecord] = {}
        self._by_owner: dict[str, dict[str, SessionRecord]] = {}
        self._jobs_by_owner: dict[str, list[JobRecord]] = {}
        self._job_ids: set[str] = set()
        self._born = runtime.wall(runtime.now())
        self._users = self._make_users()
        framing = config.stream_framing
        self._encode: Callable[[object], bytes]
        if framing == "pretty":
            self._encode = lambda v: json.dumps(v, indent=2).encode() + b"\n"
        elif framing == "concatenated":
            self._encode = lambda v: json.dumps(v, separators=(",", ":")).encode()
        else:
            self._encode = lambda v: json.dumps(v, separators=(",", ":")).encode() + b"\n"

    # -- identities ----------------------------------------------------------------------
    def _make_users(self) -> dict[str, dict[str, Any]]:
        roles: dict[str, str] = {}
        for user, role in self.config.tokens.values():
            # A user holding several tokens gets the strongest role in the listing.
            if user not in roles or _role_rank(role) > _role_rank(roles[user]):
                roles[user] = role
        for user in self.config.rpc_cookies.values():
            roles.setdefault(user, "user")
        stamp = _iso_z(self._born)
        return {
            name: {
                "username": name,
                "status": "Active",
                "isAdmin": roles[name] in _ADMIN_ROLES,
                "isSuperAdmin": roles[name] == "super-admin",
                "uid": 1001 + index,
                "lastSignIn": stamp,
                "created": stamp,
            }
            for index, name in enumerate(sorted(roles))
        }

    def authenticate(self, request: web.Request) -> Identity | None:
        """The caller's identity from its bearer token or RPC cookie; None if neither is valid."""
        header = request.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() == "bearer" and token.strip():
            found = self.config.tokens.get(token.strip())
            return None if found is None else Identity(found[0], found[1])
        cookie = request.headers.get("X-RS-Session-Server-RPC-Cookie")
        if cookie:
            user = self.config.rpc_cookies.get(cookie.strip())
            return None if user is None else Identity(user, "user", via_cookie=True)
        return None

    def _target(self, ident: Identity, kw: Mapping[str, Any], name: str) -> str:
        return _opt_str(kw, name) or ident.username

    def _check_read(self, ident: Identity, target: str) -> None:
        if target != ident.username and not ident.is_admin:
            raise _denied()

    def _check_launch(self, ident: Identity, target: str) -> None:
        if target == ident.username:
            return
        if ident.role != "super-admin":
            raise _denied()
        if target not in self._users:
            raise RpcError(404, f"user not found: {target}")

    # -- helpers -------------------------------------------------------------------------
    def _draw(self, bounds: tuple[float, float]) -> float:
        low, high = bounds
        return low if low == high else self._timing.uniform(low, high)

    def _new_id(self, taken: Container[str], bits: int = 32) -> str:
        while True:
            candidate = f"{self._ids.getrandbits(bits):0{bits // 4}x}"
            if candidate not in taken:
                return candidate

    def _validate_placement(
        self, cluster: Any, image: Any, profile: Any, where: str
    ) -> tuple[str, str]:
        if not isinstance(cluster, str) or not cluster:
            raise RpcError(400, f"{where}cluster is required")
        if cluster not in _CLUSTERS:
            raise RpcError(400, f'Unknown cluster "{cluster}"')
        if image is not None and not isinstance(image, str):
            raise RpcError(400, f"{where}container image must be a string")
        if cluster == "Kubernetes" and not image:
            raise RpcError(400, 'Kubernetes requires the "container" parameter')
        if profile is not None and profile not in _PROFILES[cluster]:
            raise RpcError(400, "Unknown resource profile")
        return cluster, image or ""

    # -- sessions ------------------------------------------------------------------------
    def _session_json(self, s: SessionRecord, now: float) -> dict[str, Any]:
        wall = self._rt.wall
        current = _current(s.phases, now)
        state = current.state
        r_ide = s.workbench in _R_IDES
        return {
            "name": s.name,
            "url": s.url,
            "id": s.id,
            "launch_parameters": s.launch_parameters,
            "created": _ms(wall(s.created)),
            "activity_state": state,
            "last_state_updated": _ms(current.wall_time),
            "label": s.name,
            "display_name": s.name,
            "status_detail": s.status_detail if state == "failed" else "",
            "project": None,
            "project_id": s.project_id,
            "running": state == "running",
            "working_dir": s.working_dir,
            "executing": False,
            "save_prompt_required": False,
            "last_used": _ms(wall(s.last_used(now))),
            "r_version": "4.3.0" if r_ide else "",
            "r_version_label": "",
            "r_version_home": "/usr/lib/R" if r_ide else "",
            "suspend_size": s.suspend_size if state == "suspended" else 0,
            "workbench": s.workbench,
        }

    def _historical_json(self, s: SessionRecord, now: float) -> dict[str, Any]:
        wall = self._rt.wall
        ended = s.ended_at(now) or now
        running = s.first_time("running", now)
        terminated = s.stop_requested if s.stop_requested is not None else ended
        job: dict[str, Any] = {
            "name": s.name,
            "cluster": s.launch_parameters.get("cluster", "Local"),
            "id": s.job_id,
            "container": s.launch_parameters.get("container_image", ""),
            "status": s.end_status,
            "exitCode": s.end_exit_code,
            "submissionTime": _iso_naive(wall(s.created)),
            "lastUpdateTime": _iso_seconds(wall(ended)),
            "terminatedTime": _iso_naive(wall(terminated)),
        }
        if running is not None:
            job["runningTimestamp"] = _iso_naive(wall(running))
        return {
            "id": s.id,
            "username": s.owner,
            "launch_parameters": {
                "cluster": s.launch_parameters.get("cluster", "Local"),
                "container_image": s.launch_parameters.get("container_image", ""),
            },
            "created": _iso_naive(wall(s.created)),
            "label": s.name,
            "display_name": s.name,
            "project": hashlib.sha1(s.project_id.encode()).hexdigest()[:13],
            "running": False,
            "executing": False,
            "save_prompt_required": False,
            "last_used": _iso_seconds(wall(s.last_used(now))),
            "workbench": s.workbench,
            "job": job,
        }

    def _launch_steps(self, name: str) -> tuple[list[tuple[str, float]], str]:
        cfg = self.config
        d_launch = self._draw(cfg.session_launch_delay)
        d_pending = self._draw(cfg.session_pending_delay)
        d_starting = self._draw(cfg.session_starting_delay)
        if "emu-stuck" in name:
            return [("launching", d_launch), ("pending", 0.0)], ""
        if "emu-fail" in name:
            detail = "Session failed to launch: the emulated launcher was asked to fail (emu-fail)"
            return [("launching", d_launch), ("pending", d_pending), ("failed", 0.0)], detail
        steps = [
            ("launching", d_launch),
            ("pending", d_pending),
            ("starting", d_starting),
            ("running", 0.0),
        ]
        return steps, ""

    async def launch_session(self, ident: Identity, kw: dict[str, Any]) -> web.StreamResponse:
        target = self._target(ident, kw, "username")
        self._check_launch(ident, target)
        workbench = _req_str(kw, "workbench")
        if workbench not in WORKBENCHES:
            raise RpcError(400, f'Unknown workbench "{workbench}"; expected one of {WORKBENCHES}')
        name = _opt_str(kw, "name") or f"{workbench} Session"
        raw_lp = kw.get("launch_parameters")
        if raw_lp is None:
            if self.config.require_launch_parameters:
                raise RpcError(400, "launch_parameters is required: launcher sessions are enabled")
            raw_lp = {"cluster": "Local"}
        if not isinstance(raw_lp, dict):
            raise RpcError(400, "parameter 'launch_parameters' must be an object")
        image = _first(raw_lp, "container_image", "default_image")
        cluster, image = self._validate_placement(
            raw_lp.get("cluster"), image, raw_lp.get("resource_profile"), "launch_parameters."
        )
        for key in ("placement_constraints", "resource_limits", "queues"):
            _opt_list(raw_lp, key, "launch_parameters.")
        working_dir = _opt_str(kw, "working_directory") or "~"
        _opt_str(kw, "open_file")
        launch_parameters = {
            "name": raw_lp.get("name") or name,
            "cluster": cluster,
            "placement_constraints": raw_lp.get("placement_constraints") or [],
            "resource_limits": raw_lp.get("resource_limits") or [],
            "queues": raw_lp.get("queues") or [],
            "container_image": image,
            "default_image": raw_lp.get("default_image") or "",
            "container_images": [image],
        }
        for key, value in raw_lp.items():
            launch_parameters.setdefault(key, value)

        now = self._rt.now()
        sid = self._new_id(self.sessions)
        project_id = f"{self._ids.getrandbits(32):08x}"
        user_hash = hashlib.sha1(target.encode()).hexdigest()[:5]
        steps, detail = self._launch_steps(name)
        record = SessionRecord(
            id=sid,
            owner=target,
            workbench=workbench,
            name=name,
            project_id=project_id,
            url=f"/s/{user_hash}{project_id}{sid}/",
            launch_parameters=launch_parameters,
            working_dir=working_dir,
            created=now,
            job_id=self._new_id(self._job_ids, 64),
            suspend_size=self._ids.randint(1_000_000, 50_000_000),
            runtime=self._rt,
            status_detail=detail,
        )
        record.schedule(now, steps)
        if detail:
            record.end_status, record.end_exit_code = "Failed", 1
        self.sessions[sid] = record
        self._by_owner.setdefault(target, {})[sid] = record
        return _ok({"url": record.url, "id": sid, "project_id": project_id})

    async def get_session(self, ident: Identity, kw: dict[str, Any]) -> web.StreamResponse:
        target = self._target(ident, kw, "user")
        self._check_read(ident, target)
        ids = _id_list(kw.get("session_id"), "session_id")
        fields = kw.get("fields")
        if fields is not None and not (
            isinstance(fields, list) and all(isinstance(f, str) for f in fields)
        ):
            raise RpcError(400, "parameter 'fields' must be an array of strings")
        include_jobs = _opt_bool(kw, "include_jobs")
        include_all_jobs = _opt_bool(kw, "include_all_jobs")
        now = self._rt.now()
        owned = self._by_owner.get(target, {})
        candidates = list(owned.values()) if ids is None else [owned[i] for i in ids if i in owned]
        sessions = []
        for s in candidates:
            if s.state_at(now) == "ended":
                continue
            data = self._session_json(s, now)
            if fields is not None:
                data = {k: v for k, v in data.items() if k in fields}
            sessions.append(data)
        result: dict[str, Any] = {"sessions": sessions}
        if include_jobs or include_all_jobs:
            if self.config.adhoc_jobs_require_include_all and not include_all_jobs:
                result["jobs"] = []
            else:
                jobs = self._jobs_by_owner.get(target, [])
                result["jobs"] = [self._job_json(j, now) for j in jobs]
        return _ok(result)

    async def get_historical_session(
        self, ident: Identity, kw: dict[str, Any]
    ) -> web.StreamResponse:
        begin = _parse_iso("filter_time_begin", kw.get("filter_time_begin"))
        end = _parse_iso("filter_time_end", kw.get("filter_time_end"))
        include_jobs = _opt_bool(kw, "include_jobs")
        all_users = _opt_bool(kw, "include_all_users") and ident.is_admin
        now = self._rt.now()
        owners = list(self._by_owner) if all_users else [ident.username]
        sessions = []
        for owner in owners:
            for s in self._by_owner.get(owner, {}).values():
                ended = s.ended_at(now)
                if ended is None:
                    continue
                ended_wall = self._rt.wall(ended)
                if (begin is not None and ended_wall < begin) or (
                    end is not None and ended_wall > end
                ):
                    continue
                sessions.append(self._historical_json(s, now))
        result: dict[str, Any] = {"sessions": sessions}
        if include_jobs:
            result["jobs"] = [
                self._job_json(j, now)
                for owner in owners
                for j in self._jobs_by_owner.get(owner, [])
                if j.end_time <= now
            ]
        return _ok(result)

    async def resume_session(self, ident: Identity, kw: dict[str, Any]) -> web.StreamResponse:
        target = self._target(ident, kw, "username")
        self._check_launch(ident, target)
        sid = _req_str(kw, "session_id")
        lp = kw.get("launch_parameters")
        if lp is not None and not isinstance(lp, dict):
            raise RpcError(400, "parameter 'launch_parameters' must be an object")
        record = self._by_owner.get(target, {}).get(sid)
        now = self._rt.now()
        if record is None or record.state_at(now) == "ended":
            raise RpcError(404, "session not found")
        state = record.state_at(now)
        if state != "suspended":
            raise RpcError(400, f"session {sid} is not suspended (activity_state is {state})")
        record.schedule(
            now, [("resuming", self._draw(self.config.session_resume_delay)), ("running", 0.0)]
        )
        return _ok({"url": record.url, "id": record.id, "project_id": record.project_id})

    async def stop_session(self, ident: Identity, kw: dict[str, Any]) -> web.StreamResponse:
        ids = _id_list(kw.get("session_ids"), "session_ids")
        if not ids:
            raise RpcError(400, "parameter 'session_ids' is required")
        force = _opt_bool(kw, "force_quit")
        suspend = _opt_bool(kw, "suspend_session") or _opt_bool(kw, "suspend")
        now = self._rt.now()
        records = []
        for sid in ids:
            record = self.sessions.get(sid)
            if record is None or record.state_at(now) == "ended":
                raise RpcError(404, f"session not found: {sid}")
            if record.owner != ident.username and not ident.is_admin:
                raise _denied()
            records.append(record)
        for record in records:
            self._stop_one(record, now, force=force, suspend=suspend)
        return _ok({})

    def _stop_one(self, record: SessionRecord, now: float, *, force: bool, suspend: bool) -> None:
        cfg = self.config
        state = record.state_at(now)
        heading = record.final_state()
        if force:
            if state in ("killed", "ended"):
                return
            record.stop_requested = now
            if state == "failed":
                record.schedule(now, [("ended", 0.0)])
                return
            record.end_status, record.end_exit_code = "Killed", _EXIT_KILL
            record.schedule(now, [("killed", self._draw(cfg.session_kill_delay)), ("ended", 0.0)])
            return
        if heading == "ended":
            return  # already on its way out
        if state in ("failed", "suspended"):
            record.stop_requested = now
            if state == "suspended":
                record.end_status, record.end_exit_code = "Finished", 0
            record.schedule(now, [("ended", 0.0)])
            return
        if suspend and record.workbench in cfg.suspendable_workbenches and state == "running":
            record.schedule(
                now, [("suspending", self._draw(cfg.session_suspend_delay)), ("suspended", 0.0)]
            )
            return
        record.stop_requested = now
        record.end_status, record.end_exit_code = "Finished", _EXIT_TERM
        record.schedule(
            now,
            [
                ("shutting_down", self._draw(cfg.session_stop_delay)),
                ("quitting", self._draw(cfg.session_stop_delay)),
                ("ended", 0.0),
            ],
        )

    # -- jobs ----------------------------------------------------------------------------
    def _job_json(self, j: JobRecord, now: float) -> dict[str, Any]:
        wall = self._rt.wall
        status = j.status_at(now)
        spec = j.spec
        last = j.submitted
        if j.ran() and j.running_at <= now:
            last = j.running_at
        if j.end_time <= now:
            last = j.end_time
        data: dict[str, Any] = {
            "id": j.id,
            "cluster": spec["cluster"],
            "name": spec["name"],
            "user": j.owner,
            "queues": spec["queues"],
            "workingDirectory": spec["workingDirectory"],
        }
        if spec["image"]:
            data["container"] = {"image": spec["image"]}
        data.update(
            {
                "host": "localhost",
                "status": status,
                "pid": j.pid,
                "command": spec["command"],
                "exe": spec["exe"],
                "stdoutFile": "",
                "stderrFile": "",
                "stdin": "",
                "args": spec["args"],
                "environment": spec["environment"],
                "placementConstraints": spec["placementConstraints"],
                "lastUpdateTime": _iso_z(wall(last)),
                "submissionTime": _iso_z(wall(j.submitted)),
                "exposedPorts": [],
                "mounts": [],
                "config": spec["config"],
                "resourceLimits": spec["resourceLimits"],
                "tags": spec["tags"],
                "metadata": spec["metadata"],
                "resourceProfile": spec["resourceProfile"],
            }
        )
        if j.ran() and j.running_at <= now:
            data["runningTimestamp"] = _iso_z(wall(j.running_at))
        if j.end_time <= now:
            data["terminatedTime"] = _iso_z(wall(j.end_time))
            code = j.final_exit_code
            if code is not None:
                data["exitCode"] = code
            if status == "Failed":
                data["statusMessage"] = "The job failed (emulated failure requested by --emu-fail)"
            elif status in ("Killed", "Canceled"):
                data["statusMessage"] = "The job was stopped by a stop request"
        return data

    def _launch(self, ident: Identity, raw: Any, key: str, *, audited: bool) -> JobRecord:
        if not isinstance(raw, dict):
            raise RpcError(400, f"parameter {key!r} is required and must be an object")
        target = _opt_str(raw, "user") or ident.username
        self._check_launch(ident, target)
        name = _req_str(raw, "name")
        exe = _opt_str(raw, "exe") or ""
        command = _opt_str(raw, "command") or ""
        if not exe and not command:
            raise RpcError(400, f"{key}.exe or {key}.command is required")
        args = _opt_list(raw, "args", f"{key}.")
        if not all(isinstance(a, str) for a in args):
            raise RpcError(400, f"{key}.args must be an array of strings")
        container = raw.get("container")
        image = _first(raw, "container_image", "containerImage")
        if isinstance(container, dict):
            image = image or container.get("image")
        elif isinstance(container, str):
            image = image or container
        profile = _first(raw, "resource_profile", "resourceProfile")
        cluster, image = self._validate_placement(
            raw.get("cluster", "Local"), image, profile, f"{key}."
        )
        opts = _emu_options(args)
        cfg = self.config
        spec: dict[str, Any] = {
            "name": name,
            "cluster": cluster,
            "image": image,
            "exe": exe,
            "command": command,
            "args": list(args),
            "workingDirectory": _first(raw, "working_directory", "workingDirectory") or "",
            "queues": _opt_list(raw, "queues", f"{key}."),
            "environment": _opt_list(raw, "environment", f"{key}."),
            "tags": _opt_list(raw, "tags", f"{key}."),
            "placementConstraints": _first(raw, "placement_constraints", "placementConstraints")
            or [],
            "resourceLimits": _first(raw, "resource_limits", "resourceLimits") or [],
            "config": _opt_list(raw, "config", f"{key}."),
            "metadata": raw.get("metadata") if isinstance(raw.get("metadata"), dict) else {},
            "resourceProfile": profile or "custom",
        }
        chunks = int(opts.get("chunks", cfg.job_chunk_count))
        interval = float(opts.get("interval", cfg.job_chunk_interval))
        now = self._rt.now()
        pending = float(opts["pending"]) if "pending" in opts else self._draw(cfg.job_pending_delay)
        running_at = now + pending
        if "duration" in opts:
            duration = float(opts["duration"])
            interval = duration / chunks if chunks else 0.0
        else:
            duration = chunks * interval
        table = self.audited_jobs if audited else self.jobs
        job_id = self._new_id(self._job_ids, 64)
        self._job_ids.add(job_id)
        record = JobRecord(
            id=job_id,
            launcher_id=self._new_id(self._job_ids, 64) if audited else job_id,
            owner=target,
            audited=audited,
            spec=spec,
            submitted=now,
            running_at=running_at,
            chunk_count=chunks,
            interval=interval,
            natural_end=running_at + duration,
            chunk_bytes=int(opts.get("bytes", cfg.job_chunk_bytes)),
            stderr_every=int(opts.get("stderr-every", cfg.job_stderr_every)),
            exit_code=int(opts.get("exit", cfg.job_exit_code)),
            fail=bool(opts.get("fail", False)),
            pid=self._ids.randint(1000, 999_999),
            seed=self._rt.seed,
            runtime=self._rt,
            split_lines=bool(opts.get("split-lines", False)),
            writes=collections.deque(maxlen=cfg.job_write_log_size),
        )
        table[job_id] = record
        self._jobs_by_owner.setdefault(target, []).append(record)
        return record

    def _launched(self, record: JobRecord, key: str) -> web.Response:
        body = {key: self._job_json(record, self._rt.now())}
        if self.config.job_result_nesting == "double":
            return _ok({"result": body})
        return _ok(body)

    async def launch_job(self, ident: Identity, kw: dict[str, Any]) -> web.StreamResponse:
        _opt_bool(kw, "apply_config_settings", True)
        record = self._launch(ident, kw.get("job"), "job", audited=False)
        return self._launched(record, "job")

    async def launch_audited_job(self, ident: Identity, kw: dict[str, Any]) -> web.StreamResponse:
        _opt_bool(kw, "apply_config_settings", True)
        raw = kw.get("audited_job", kw.get("job"))
        record = self._launch(ident, raw, "audited_job", audited=True)
        return self._launched(record, "audited_job")

    def _find_job(
        self, ident: Identity, kw: Mapping[str, Any], table: Mapping[str, JobRecord], *names: str
    ) -> JobRecord:
        job_id = None
        for name in names:
            job_id = _opt_str(kw, name)
            if job_id is not None:
                break
        if job_id is None:
            raise RpcError(400, f"parameter {names[0]!r} is required")
        target = self._target(ident, kw, "user")
        self._check_read(ident, target)
        record = table.get(job_id)
        if record is None or record.owner != target:
            raise RpcError(404, "job not found")
        return record

    async def _stream(
        self,
        request: web.Request,
        job: JobRecord,
        key: str,
        extra: Mapping[str, str],
    ) -> web.StreamResponse:
        response = web.StreamResponse(status=200)
        response.content_type = "application/json"
        response.enable_chunked_encoding()
        await response.prepare(request)
        seq = job.streams_opened
        job.streams_opened += 1
        rt = self._rt
        index = 0

        def written(nbytes: int, monotonic: float) -> None:
            job.record_write(seq, index, nbytes, monotonic)

        with rt.open_stream(request, response, key, self._encode) as sink:
            while True:
                now = rt.now()
                available = job.chunks_at(now)
                while index < available:
                    kind, text = job.chunk(index)
                    value = {"jobId": job.launcher_id, "outputType": kind, "output": text, **extra}
                    if not await sink.send(value, written=written):
                        return response
                    index += 1
                if now >= job.end_time and index >= job.total_chunks:
                    return response
                wake = job.end_time
                if index < job.total_chunks:
                    wake = min(wake, job.chunk_time(index))
                await rt.sleep(wake - rt.now(), job.signal)
                if rt.closing:
                    sink.abort()
                    return response

    async def get_job_output(
        self, ident: Identity, kw: dict[str, Any], request: web.Request
    ) -> web.StreamResponse:
        job = self._find_job(ident, kw, self.jobs, "job_id")
        return await self._stream(request, job, f"{API}.get_job_output", {})

    async def get_audited_job_output(
        self, ident: Identity, kw: dict[str, Any], request: web.Request
    ) -> web.StreamResponse:
        job = self._find_job(ident, kw, self.audited_jobs, "audited_job_id", "job_id")
        if job.end_time <= self._rt.now():
            output = {
                "jobId": job.id,
                "outputType": "stdout",
                "output": job.full_output(),
                "outputSource": "audit_details_store",
            }
            return _ok({"audited_job_output": output})
        extra = {"outputSource": "job_launcher"}
        return await self._stream(request, job, f"{API}.get_audited_job_output", extra)

    async def get_audited_job_details(
        self, ident: Identity, kw: dict[str, Any]
    ) -> web.StreamResponse:
        job = self._find_job(ident, kw, self.audited_jobs, "audited_job_id", "job_id")
        if job.end_time > self._rt.now():
            raise RpcError(
                400, "audit details are only available for jobs that have completed running"
            )
        checksum = hashlib.sha256(job.full_output().encode()).hexdigest()[:10]
        return _ok(
            {
                "audited_details": {
                    "script_output": {
                        "checksum": checksum,
                        "user_defined_data": [
                            {
                                "file_name": "user-defined-1.txt",
                                "file_contents": f"user-defined data of job {job.id}",
                            }
                        ],
                    },
                    "environment": {
                        "summary": f"{job.spec['cluster']} session of {job.owner}, "
                        f"exe {job.spec['exe'] or job.spec['command']}"
                    },
                }
            }
        )

    def _stop_job(
        self, ident: Identity, kw: Mapping[str, Any], table: Mapping[str, JobRecord], *names: str
    ) -> web.Response:
        job_id = None
        for name in names:
            job_id = _opt_str(kw, name)
            if job_id is not None:
                break
        if job_id is None:
            raise RpcError(400, f"parameter {names[0]!r} is required")
        force = _opt_bool(kw, "force_quit")
        record = table.get(job_id)
        if record is None:
            raise RpcError(404, "job not found")
        if record.owner != ident.username and not ident.is_admin:
            raise _denied()
        record.stop(self._rt.now(), force=force, grace=self.config.job_stop_delay)
        return _ok({})

    async def stop_job(self, ident: Identity, kw: dict[str, Any]) -> web.StreamResponse:
        return self._stop_job(ident, kw, self.jobs, "job_id")

    async def stop_audited_job(self, ident: Identity, kw: dict[str, Any]) -> web.StreamResponse:
        return self._stop_job(ident, kw, self.audited_jobs, "audited_job_id", "job_id")

    # -- server-wide ---------------------------------------------------------------------
    async def version(self, ident: Identity, kw: dict[str, Any]) -> web.StreamResponse:
        # The one method whose body is not wrapped in "result".
        return web.json_response(
            {"version": dict(self.config.version), "features": list(self.config.features)}
        )

    async def get_users(self, ident: Identity, kw: dict[str, Any]) -> web.StreamResponse:
        if not ident.is_admin:
            raise _denied()
        return _ok(list(self._users.values()))

    async def get_compute_envs(self, ident: Identity, kw: dict[str, Any]) -> web.StreamResponse:
        target = self._target(ident, kw, "user")
        self._check_read(ident, target)
        return _ok(_compute_envs())

    # -- dispatch ------------------------------------------------------------------------
    async def _read_kwparams(self, request: web.Request, method: str) -> dict[str, Any]:
        if request.method != "POST":
            return {}
        raw = await request.read()
        if not raw.strip():
            return {}
        try:
            body = json.loads(raw)
        except (UnicodeDecodeError, ValueError):
            raise RpcError(400, "invalid request: the body is not valid JSON") from None
        if not isinstance(body, dict):
            raise RpcError(400, "invalid request: the body must be a JSON object")
        if body.get("method") != method:
            raise RpcError(
                400,
                f"invalid request: body method {body.get('method')!r} does not match "
                f"the URL method {method!r}",
            )
        kwparams = body.get("kwparams", {})
        if kwparams is None:
            return {}
        if not isinstance(kwparams, dict):
            raise RpcError(400, "invalid request: 'kwparams' must be a JSON object")
        return kwparams

    async def handle(self, method: str, request: web.Request) -> web.StreamResponse:
        """Answer one API request (auth, body validation, then the method)."""
        ident = self.authenticate(request)
        if ident is None:
            return _unauthorized()
        if ident.via_cookie and method in self.config.cookie_denied_methods:
            return _unauthorized()
        try:
            kw = await self._read_kwparams(request, method)
            if method in ("get_job_output", "get_audited_job_output"):
                streamer = getattr(self, method)
                response: web.StreamResponse = await streamer(ident, kw, request)
                return response
            handler = getattr(self, method)
            response = await handler(ident, kw)
            return response
        except RpcError as exc:
            return web.json_response({"error": {"code": exc.code, "message": exc.message}})


def _role_rank(role: str) -> int:
    return ("user", "admin", "super-admin").index(role)


def _compute_envs() -> dict[str, Any]:
    ides = {
        name: {"supports_interactive_sessions": True, "supports_adhoc_jobs": True}
        for name in ("RStudio", "Positron", "JupyterLab", "Jupyter Notebook", "VS Code")
    }
    local = {
        "supportsContainers": False,
        "queues": [],
        "config": [],
        "resourceLimits": [],
        "placementConstraints": [],
        "resourceProfiles": [],
        "name": "Local",
        "type": "Local",
        "workbenches": ides,
        "images": [],
    }
    kubernetes = {
        "supportsContainers": True,
        "queues": [],
        "config": [{"name": "cpu-request-ratio", "value": "1.0", "valueType": "float"}],
        "resourceLimits": [
            {"type": "cpuCount", "value": "1", "max_value": "8", "default_value": "1"},
            {"type": "memory", "value": "2048", "max_value": "16384", "default_value": "2048"},
        ],
        "placementConstraints": [],
        "resourceProfiles": [
            {"name": "small", "displayName": "Small (1 CPU, 2 GB)", "cpus": 1, "memoryMb": 2048},
            {"name": "medium", "displayName": "Medium (2 CPU, 8 GB)", "cpus": 2, "memoryMb": 8192},
            {"name": "large", "displayName": "Large (4 CPU, 16 GB)", "cpus": 4, "memoryMb": 16384},
        ],
        "name": "Kubernetes",
        "type": "Kubernetes",
        "workbenches": ides,
        "images": list(_K8S_IMAGES),
    }
    lang = {
        "RStudio": ("R", True),
        "Positron": ("Positron", True),
        "JupyterLab": ("Jupyter", True),
        "Jupyter Notebook": ("Jupyter", True),
        "VS Code": ("code-server", True),
    }
    return {
        "clusters": [local, kubernetes],
        "workbenches": {
            name: {
                "default_cluster": "Local",
                "default_image": "",
                "lang": {"name": lang_name, "available": available},
            }
            for name, (lang_name, available) in lang.items()
        },
    }


def create_app(state: WorkbenchState) -> web.Application:
    """The Workbench sub-application: ``/api/<method>`` routes named ``"workbench.<method>"``."""
    app = web.Application()
    for method in METHODS:

        async def handler(request: web.Request, _method: str = method) -> web.StreamResponse:
            return await state.handle(_method, request)

        name = f"{API}.{method}"
        path = f"{API_ROOT}/api/{method}"
        app.router.add_post(path, handler, name=name)
        if method in GET_METHODS:
            app.router.add_get(path, handler, name=name, allow_head=False)
    return app
