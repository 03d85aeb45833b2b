"""Long-lived JSON streams over the transport: decode as bytes arrive, resume after a drop.

API-agnostic. An API supplies how to open its stream, how to turn each decoded JSON value
into a typed item, and how to tell which channel (e.g. stdout/stderr) an item's text
belongs to; this module does the rest:

- bytes go through one :class:`~aiocompute._core.jsonstream.JSONStreamDecoder`, so each item
  is yielded as soon as its closing byte arrives;
- a stream that breaks while the remote work still runs is reopened within a retry budget,
  and since servers replay output from the start, :class:`ReplayFilter` drops what was
  already delivered by counting characters per channel (robust to different chunking or
  framing between connections);
- leaving early (``break``, ``aclose()``, cancellation) closes the HTTP connection at once,
  because the transport's stream context is exited with the generator.
"""

from __future__ import annotations

import logging
import random
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from typing import Any, TypeVar

import anyio
import attrs

from .._exceptions import StreamDecodeError, TransportError
from .checks import count, number
from .jsonstream import JSONStreamDecoder
from .observability import record_event
from .responses import ByteStream

__all__ = ["ReplayFilter", "ResumePolicy", "iter_json_values", "resumable_items"]

T = TypeVar("T")
log = logging.getLogger("aiocompute.stream")


def _count(_inst: object, attribute: attrs.Attribute[Any], value: object) -> None:
    count(value, f"ResumePolicy.{attribute.name}")


def _seconds(_inst: object, attribute: attrs.Attribute[Any], value: object) -> None:
    number(value, f"ResumePolicy.{attribute.name}", minimum=0, unit="seconds")


@attrs.frozen
class ResumePolicy:
    """How a broken stream is reopened.

    ``max_reconnects`` bounds the reconnects in a row since the last new output (0: never
    reconnect; the budget is refilled whenever new output arrives, so a long tail through a
    flaky proxy survives);
    ``backoff_initial`` / ``backoff_max`` space the attempts (full jitter).
    """

    max_reconnects: int = attrs.field(default=5, validator=_count)
    backoff_initial: float = attrs.field(default=0.1, validator=_seconds)
    backoff_max: float = attrs.field(default=5.0, validator=_seconds)

    def delay(self, attempt: int, rng: random.Random) -> float:
        """Seconds to wait before reconnect number ``attempt`` (1-based)."""
        return rng.uniform(0, min(self.backoff_max, self.backoff_initial * 2 ** (attempt - 1)))


NO_RESUME = ResumePolicy(max_reconnects=0)


class ReplayFilter:
    """Drops text a replayed stream repeats, by characters already delivered per channel.

    Feed every item's ``(channel, text)`` in stream order; :meth:`admit` returns the part not
    delivered before (``""`` for a full repeat). Call :meth:`restart` when a new connection
    starts replaying from the beginning.

    Channel ``None`` marks an item holding every channel's text in the order it was produced
    (e.g. a finished job's whole output in one piece): it is measured against everything
    delivered so far, all channels together.
    """

    def __init__(self) -> None:
        self._delivered: dict[str | None, int] = {}
        self._seen: dict[str | None, int] = {}

    def restart(self) -> None:
        """A new connection: the server starts again from the first character."""
        self._seen.clear()

    def delivered(self, channel: str | None) -> int:
        """Characters of ``channel`` (None: of every channel) already delivered."""
        if channel is None:
            return sum(self._delivered.values())
        return self._delivered.get(channel, 0)

    def admit(self, channel: str | None, text: str) -> str:
        """The new part of ``text`` (a suffix of it), recording it as delivered."""
        if channel is None:
            seen = sum(self._seen.values())
            done = sum(self._delivered.values())
            self._seen[None] = self._seen.get(None, 0) + len(text)
            new = text[max(0, done - seen) :]
            self._delivered[None] = self._delivered.get(None, 0) + len(new)
            return new
        seen = self._seen.get(channel, 0)
        end = seen + len(text)
        self._seen[channel] = end
        done = self._delivered.get(channel, 0)
        if end <= done:
            return ""
        self._delivered[channel] = end
        return text[max(0, done - seen) :]


async def iter_json_values(
    chunks: AsyncIterator[bytes] | ByteStream, *, max_value_bytes: int | None = None
) -> AsyncIterator[Any]:
    """Decode a byte stream of concatenated / NDJSON values, yielding each value as it ends.

    A stream that ends inside a value raises :class:`StreamDecodeError` (``truncated=True``).
    """
    decoder = (
        JSONStreamDecoder()
        if max_value_bytes is None
        else JSONStreamDecoder(max_value_bytes=max_value_bytes)
    )
    async for data in chunks:
        for decoded in decoder.feed(data):
            yield decoded.value
    for decoded in decoder.close():
        yield decoded.value


async def resumable_items(
    open_stream: Callable[[], AbstractAsyncContextManager[ByteStream]],
    *,
    parse: Callable[[Any], T],
    channel: Callable[[T], str | None],
    text: Callable[[T], str],
    with_text: Callable[[T, str], T],
    still_running: Callable[[], Awaitable[bool]] | None = None,
    resume: ResumePolicy = NO_RESUME,
    max_value_bytes: int | None = None,
    what: str = "stream",
) -> AsyncGenerator[T, None]:
    """Yield typed items from a replaying JSON stream, reconnecting after drops.

    ``parse`` turns a decoded value into an item (and raises the API's error for an error
    object mid-stream: that ends the stream, after the items before it). A connection that
    breaks (:class:`TransportError`, a truncated value) is reopened while ``resume`` allows;
    a stream that ends cleanly is reopened only if ``still_running()`` says the remote work
    goes on (a proxy may close idle streams). Items repeated by the replay are dropped;
    a partly repeated item is yielded with only its new text (``with_text``). ``channel``
    returns None for an item that holds every channel's output at once (see
    :class:`ReplayFilter`).
    """
    rng = random.Random()
    replay = ReplayFilter()
    failures = 0
    while True:
        try:
            async with open_stream() as stream:
                async for value in iter_json_values(stream, max_value_bytes=max_value_bytes):
                    item = parse(value)
                    new = replay.admit(channel(item), text(item))
                    if not new and text(item):
                        continue
                    failures = 0  # new output refills the reconnect budget
                    yield item if new == text(item) else with_text(item, new)
        except (TransportError, StreamDecodeError) as exc:
            if isinstance(exc, StreamDecodeError) and not exc.truncated:
                raise  # garbage, not a cut: reconnecting would read the same garbage
            if isinstance(exc, TransportError) and not exc.retryable:
                raise
            # Counts the reconnect about to happen, so max_reconnects=0 never reconnects.
            failures += 1
            if failures > resume.max_reconnects:
                raise
            log.debug("%s broke (%s); reconnect %d", what, exc, failures)
            reason = type(exc).__name__
        else:
            if still_running is None or not await still_running():
                return
            failures += 1
            if failures > resume.max_reconnects:
                raise TransportError(
                    f"{what} keeps ending while the work still runs "
                    f"(gave up after {failures - 1} reconnect(s) without new output)",
                    retryable=False,
                )
            log.debug("%s ended early; reconnect %d", what, failures)
            reason = "ended early"
        # offset: characters delivered so far, all channels together (where output resumes).
        record_event(
            "stream.reconnect",
            {"attempt": failures, "offset": replay.delivered(None), "reason": reason},
        )
        replay.restart()
        await anyio.sleep(resume.delay(max(failures, 1), rng))
