"""Tests for aiocompute._core.pagination."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import anyio
import anyio.lowlevel
import pytest
from hypothesis import given
from hypothesis import strategies as st

from aiocompute import ProtocolError
from aiocompute._core.pagination import Page, Paginator

pytestmark = pytest.mark.virtual_time


class FakeServer:
    """Serves pre-built pages by marker and records every request."""

    def __init__(self, pages: dict[str | None, Page[Any]]) -> None:
        self.pages = pages
        self.requests: list[str | None] = []

    async def fetch(self, marker: str | None) -> Page[Any]:
        self.requests.append(marker)
        await anyio.lowlevel.checkpoint()
        return self.pages[marker]


def chain(*chunks: Sequence[int]) -> FakeServer:
    """Pages holding ``chunks`` linked by markers m1, m2, ...; the last page has no marker."""
    pages: dict[str | None, Page[Any]] = {}
    for n, chunk in enumerate(chunks):
        marker = None if n == 0 else f"m{n}"
        nxt = f"m{n + 1}" if n + 1 < len(chunks) else None
        pages[marker] = Page(list(chunk), nxt)
    return FakeServer(pages)


async def test_await_gathers_every_item() -> None:
    server = chain([1, 2, 3], [4, 5], [6])
    assert await Paginator(server.fetch) == [1, 2, 3, 4, 5, 6]
    assert server.requests == [None, "m1", "m2"]


async def test_async_for_yields_the_same_items_lazily() -> None:
    server = chain([1, 2, 3], [4, 5], [6])
    paginator = Paginator(server.fetch)
    assert server.requests == []  # nothing before iteration
    seen: list[int] = []
    async for item in paginator:
        seen.append(item)
        # Only the page holding the current item has been fetched.
        assert len(server.requests) == (1 if item <= 3 else 2 if item <= 5 else 3)
    assert seen == [1, 2, 3, 4, 5, 6]


async def test_constructing_or_abandoning_fetches_nothing() -> None:
    server = chain([1], [2])
    paginator = Paginator(server.fetch)
    iterators = (paginator.__aiter__(), paginator.pages())  # created, never driven
    await anyio.lowlevel.checkpoint()
    assert len(iterators) == 2
    assert server.requests == []


async def test_early_stop_fetches_no_more_pages() -> None:
    server = chain([1, 2], [3, 4], [5, 6])
    async for item in Paginator(server.fetch):
        if item == 2:
            break
    assert server.requests == [None]


async def test_each_await_or_iteration_starts_over() -> None:
    server = chain([1], [2])
    paginator = Paginator(server.fetch)
    assert await paginator == [1, 2]
    assert [i async for i in paginator] == [1, 2]
    assert server.requests == [None, "m1", None, "m1"]


async def test_pages_yields_whole_pages() -> None:
    server = chain([1, 2], [], [3])
    pages = [p async for p in Paginator(server.fetch).pages()]
    assert pages == [Page([1, 2], "m1"), Page([], "m2"), Page([3], None)]


async def test_max_items_stops_inside_a_page() -> None:
    server = chain([1, 2, 3], [4, 5, 6], [7])
    assert await Paginator(server.fetch, max_items=5) == [1, 2, 3, 4, 5]
    assert server.requests == [None, "m1"]


async def test_max_items_on_a_page_boundary_fetches_no_further() -> None:
    server = chain([1, 2, 3], [4, 5, 6])
    paginator = Paginator(server.fetch, max_items=3)
    assert [i async for i in paginator] == [1, 2, 3]
    assert server.requests == [None]
    pages = [p async for p in paginator.pages()]
    assert pages == [Page([1, 2, 3], "m1")]


async def test_max_items_zero_and_max_pages() -> None:
    server = chain([1, 2], [3, 4], [5])
    assert await Paginator(server.fetch, max_items=0) == []
    assert server.requests == []
    assert await Paginator(server.fetch, max_pages=2) == [1, 2, 3, 4]
    assert server.requests == [None, "m1"]
    assert await Paginator(server.fetch, max_items=100) == [1, 2, 3, 4, 5]


async def test_empty_pages() -> None:
    assert await Paginator(FakeServer({None: Page([], None)}).fetch) == []
    # Empty pages in the middle are followed, not taken for the end.
    server = chain([], [], [1], [], [2])
    assert await Paginator(server.fetch) == [1, 2]
    assert len(server.requests) == 5


async def test_empty_string_marker_ends_the_listing() -> None:
    server = FakeServer({None: Page([1], "")})
    assert await Paginator(server.fetch) == [1]
    assert server.requests == [None]


async def test_start_marker() -> None:
    server = chain([1], [2], [3])
    assert await Paginator(server.fetch, start_marker="m1") == [2, 3]
    assert server.requests == ["m1", "m2"]


async def test_repeated_marker_is_a_protocol_error() -> None:
    # The server ignores the marker and serves the first page forever.
    server = FakeServer({None: Page([1, 2], "a"), "a": Page([1, 2], "a")})
    seen: list[int] = []

    async def consume() -> None:
        async for item in Paginator(server.fetch, what="sessions"):
            seen.append(item)

    with anyio.fail_after(2), pytest.raises(ProtocolError, match="'a' a second time") as info:
        await consume()
    assert seen == [1, 2]  # the repeated page is not yielded
    assert server.requests == [None, "a"]
    assert "sessions" in str(info.value)
    assert "page 2" in str(info.value)


async def test_marker_cycle_is_detected() -> None:
    server = FakeServer({None: Page([1], "a"), "a": Page([2], "b"), "b": Page([3], "a")})
    with pytest.raises(ProtocolError, match="second time"):
        await Paginator(server.fetch)
    assert server.requests == [None, "a", "b"]


async def test_start_marker_coming_back_is_detected() -> None:
    server = FakeServer({"s": Page([1], "t"), "t": Page([2], "s")})
    with pytest.raises(ProtocolError):
        await Paginator(server.fetch, start_marker="s")


async def test_long_markers_are_cut_in_the_message() -> None:
    marker = "x" * 500
    server = FakeServer({None: Page([1], marker), marker: Page([2], marker)})
    with pytest.raises(ProtocolError) as info:
        await Paginator(server.fetch)
    assert len(str(info.value)) < 250
    assert "…" in str(info.value)


async def test_fetch_errors_propagate() -> None:
    calls = 0

    async def fetch(marker: str | None) -> Page[int]:
        nonlocal calls
        calls += 1
        if marker is None:
            return Page([1], "next")
        raise ConnectionError("lost")

    seen: list[int] = []

    async def consume() -> None:
        async for item in Paginator(fetch):
            seen.append(item)

    with pytest.raises(ConnectionError, match="lost"):
        await consume()
    assert seen == [1]
    assert calls == 2


async def test_fetch_page_must_return_a_page() -> None:
    async def fetch(marker: str | None) -> Any:
        return [1, 2]

    with pytest.raises(TypeError, match="must return a Page"):
        await Paginator(fetch)


@pytest.mark.parametrize(
    ("bad", "error", "says"),
    [
        (-1, ValueError, ">= 0"),
        (1.5, TypeError, "an int"),
        (True, TypeError, "an int"),
        ("3", TypeError, "an int"),
    ],
)
def test_limit_validation(bad: Any, error: type[Exception], says: str) -> None:
    async def fetch(marker: str | None) -> Page[int]:
        return Page([], None)

    # The one rule of _core.checks: the wrong kind is a TypeError, out of range a ValueError.
    with pytest.raises(error, match=f"Paginator max_items must be {says}"):
        Paginator(fetch, max_items=bad)
    with pytest.raises(error, match=f"Paginator max_pages must be {says}"):
        Paginator(fetch, max_pages=bad)


def test_fetch_page_must_be_callable() -> None:
    with pytest.raises(TypeError, match="fetch_page must be an async callable"):
        Paginator("nope")  # type: ignore[arg-type]


def test_repr() -> None:
    async def fetch(marker: str | None) -> Page[int]:
        return Page([], None)

    assert repr(Paginator(fetch, what="jobs", max_items=3)) == (
        "Paginator(what='jobs', max_items=3, max_pages=None)"
    )


@given(
    chunks=st.lists(st.lists(st.integers(), max_size=5), min_size=1, max_size=8),
    max_items=st.none() | st.integers(min_value=0, max_value=45),
)
def test_paging_matches_the_flat_list(chunks: list[list[int]], max_items: int | None) -> None:
    server = chain(*chunks)
    flat = [i for chunk in chunks for i in chunk]
    expected = flat if max_items is None else flat[:max_items]

    async def main() -> tuple[list[int], list[int]]:
        paginator = Paginator(server.fetch, max_items=max_items)
        return await paginator, [i async for i in paginator]

    awaited, iterated = anyio.run(main)
    assert awaited == expected
    assert iterated == expected
