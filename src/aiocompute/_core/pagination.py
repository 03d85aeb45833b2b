"""Async iteration over marker-paginated listings.

An API package describes one request with ``fetch_page(marker) -> Page``; :class:`Paginator`
turns it into something the user can either await (all items as a list) or iterate lazily::

    items = await client.sessions.list()          # every item, as a list
    async for item in client.sessions.list():     # one page fetched at a time
        ...

Nothing is fetched until the paginator is awaited or iterated, and a consumer that stops
iterating causes no further requests. Each await / iteration starts again from the start.

Every ``list`` of every client returns one, so that listings read alike; a listing the API
answers in one request is a paginator of one page (:meth:`Paginator.single`).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Generator, Sequence
from typing import Any, Generic, TypeVar

from attrs import frozen

from .._exceptions import ProtocolError
from .checks import count

__all__ = ["Page", "Paginator"]

T = TypeVar("T")

#: How much of a marker an error message shows (markers are opaque and can be long).
_MARKER_EXCERPT = 60


@frozen
class Page(Generic[T]):
    """One page of a listing: its ``items`` and the marker of the next page.

    ``next_marker`` is None (or an empty string) on the last page.
    """

    items: Sequence[T]
    next_marker: str | None = None


def _check_limit(name: str, value: int | None) -> int | None:
    if value is None:
        return None
    return count(value, f"Paginator {name}")


def _show_marker(marker: str) -> str:
    if len(marker) > _MARKER_EXCERPT:
        return repr(marker[: _MARKER_EXCERPT - 1] + "…")
    return repr(marker)


class Paginator(Generic[T]):
    """Items of a paginated listing, fetched page by page on demand.

    ``fetch_page(marker)`` gets one page; it is called with ``start_marker`` (None: the first
    page) and then with each page's ``next_marker`` until a page has none. Awaiting the
    paginator returns every item as a list; ``async for`` yields them one by one; :meth:`pages`
    yields whole pages.

    ``max_items`` stops after that many items (no page beyond the one that reaches it is
    fetched); ``max_pages`` stops after that many pages. A server that hands out a marker it
    has already handed out would loop forever: that raises :class:`ProtocolError` before any
    repeated page is yielded. Empty pages with a next marker are followed.
    """

    def __init__(
        self,
        fetch_page: Callable[[str | None], Awaitable[Page[T]]],
        *,
        start_marker: str | None = None,
        max_items: int | None = None,
        max_pages: int | None = None,
        what: str = "listing",
    ) -> None:
        if not callable(fetch_page):
            raise TypeError(
                f"Paginator: fetch_page must be an async callable, got {type(fetch_page).__name__}"
            )
        self._fetch_page = fetch_page
        self._start_marker = start_marker or None
        self._max_items = _check_limit("max_items", max_items)
        self._max_pages = _check_limit("max_pages", max_pages)
        self._what = what

    @classmethod
    def single(cls, fetch_all: Callable[[], Awaitable[Sequence[T]]], *, what: str) -> Paginator[T]:
        """A paginator over a listing the API answers in one request: ``fetch_all()``
        returns every item. Awaiting or iterating it makes that one request."""
        if not callable(fetch_all):
            raise TypeError(
                f"Paginator.single: fetch_all must be an async callable, "
                f"got {type(fetch_all).__name__}"
            )

        async def fetch(marker: str | None) -> Page[T]:
            return Page(await fetch_all())

        return cls(fetch, what=what)

    def __repr__(self) -> str:
        return (
            f"Paginator(what={self._what!r}, max_items={self._max_items!r}, "
            f"max_pages={self._max_pages!r})"
        )

    async def pages(self) -> AsyncIterator[Page[T]]:
        """Yield the pages one by one (the last one cut short to respect ``max_items``)."""
        remaining = self._max_items
        if remaining == 0 or self._max_pages == 0:
            return
        marker = self._start_marker
        seen: set[str] = set() if marker is None else {marker}
        fetched = 0
        while True:
            page = await self._fetch_page(marker)
            fetched += 1
            if not isinstance(page, Page):
                raise TypeError(
                    f"Paginator({self._what}): fetch_page must return a Page, "
                    f"got {type(page).__name__}"
                )
            next_marker = page.next_marker or None
            if next_marker is not None and next_marker in seen:
                raise ProtocolError(
                    f"{self._what}: the server returned the pagination marker "
                    f"{_show_marker(next_marker)} a second time (page {fetched}); stopped to "
                    f"avoid an endless loop"
                )
            if remaining is not None:
                if len(page.items) >= remaining:
                    yield Page(page.items[:remaining], next_marker)
                    return
                remaining -= len(page.items)
            yield page
            if next_marker is None:
                return
            if self._max_pages is not None and fetched >= self._max_pages:
                return
            seen.add(next_marker)
            marker = next_marker

    async def _items(self) -> AsyncIterator[T]:
        async for page in self.pages():
            for item in page.items:
                yield item

    def __aiter__(self) -> AsyncIterator[T]:
        return self._items()

    async def _collect(self) -> list[T]:
        items: list[T] = []
        async for page in self.pages():
            items.extend(page.items)
        return items

    def __await__(self) -> Generator[Any, None, list[T]]:
        return self._collect().__await__()
