"""The emulated Workbench's records (see :mod:`aiocompute.emulator.workbench`): sessions and
jobs, their schedules of states, and a job's output (its lines, chunks and the
``--emu-split-lines`` cuts).
"""

from __future__ import annotations

import collections
import hashlib
import itertools
import random
from typing import Any, Literal

import attrs

from ._runtime import ChunkWrite, Runtime, Signal, Transition, entered_by, first_entered, phase_at

# Exit codes a launcher reports for signals: SIGTERM (normal stop) and SIGKILL (force).
_EXIT_TERM = 143
_EXIT_KILL = 137


# -- records -------------------------------------------------------------------------------


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
        return phase_at(self.phases, now).state

    @property
    def transitions(self) -> list[Transition]:
        """States entered so far, oldest first, each with its wall and monotonic time."""
        return entered_by(self.phases, self._runtime.now())

    def ended_at(self, now: float) -> float | None:
        """When the session left the active list (``ended``), if it has by ``now``."""
        last = phase_at(self.phases, now)
        return last.monotonic if last.state == "ended" else None

    def schedule(self, now: float, steps: list[tuple[str, float]]) -> None:
        """Replace the future with ``steps``: each state is entered, then lasts its delay."""
        self.phases = entered_by(self.phases, now)
        at = now
        for state, delay in steps:
            self.phases.append(Transition(state, self._runtime.wall(at), at))
            at += delay

    def final_state(self) -> str:
        """The state the schedule ends in (where the session is heading)."""
        return self.phases[-1].state

    def first_time(self, state: str, now: float) -> float | None:
        """When ``state`` was first entered, if it has been by ``now``."""
        found = first_entered(self.phases, state, now)
        return found.monotonic if found else None

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
