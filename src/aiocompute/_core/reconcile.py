"""Exactly-once creates: what the SDK does when a create may or may not have happened.

No API here takes an idempotency key. So a create that fails ambiguously (the connection
was cut, no answer came in time, or a gateway answered 502/503/504 after the body went
out: the transport raises :class:`~aiocompute.OutcomeUnknown`) is *reconciled*: the SDK
looks for what the create may have made, and

- **found** exactly one: returns it, as if the create had answered;
- **surely absent** (nothing found, and the exchange is over: a cut or a gateway's
  answer, not a timeout): sends the create again, at most :data:`MAX_RESENDS` times;
- **cannot tell** (the lookup failed or ran out of time, several candidates, or nothing
  found after a timeout, when the request may still be on its way): raises
  :class:`~aiocompute.OutcomeUnknown` carrying the token, the lookup in words, the
  candidates, and ``find()`` to look again later.

How a create is looked up depends on what its API offers (:class:`Plan`):

- a **client token** (:func:`new_token`) in a field the server stores and returns (tags,
  metadata): the lookup finds the resources carrying it;
- a **fingerprint** where no field carries one back (Workbench sessions, ET Engine
  batches): a list taken before the create, and the lookup keeps the new resources that
  look like the one asked for, minus those this client's other creates returned
  (:class:`Claims`). Another process creating the same kind of resource at the same
  moment cannot be told apart: the API gives nothing to tell them by. Creates that start
  together share that first list (:meth:`Claims.baseline`): a thousand launches at once
  take a few listings, not a thousand.

API-agnostic: the API packages build the plans.
"""

from __future__ import annotations

import getpass
import logging
import os
import socket
import uuid
from collections.abc import Awaitable, Callable, Hashable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Generic, TypeVar

import anyio
from attrs import frozen

from .._exceptions import AioComputeError, OutcomeUnknown

__all__ = [
    "LOOKUP_DEADLINE",
    "MAX_RESENDS",
    "OWNER_ENV",
    "OWNER_LABEL",
    "TOKEN_LABEL",
    "Claims",
    "Plan",
    "create_once",
    "default_owner",
    "labelled_map",
    "labelled_tags",
    "new_token",
    "tag",
    "tag_value",
]

logger = logging.getLogger("aiocompute.reconcile")

T = TypeVar("T")

#: The name a client token goes by: ``aiocompute-token:<hex>`` as a tag, or the key of a
#: metadata entry.
TOKEN_LABEL = "aiocompute-token"
#: The name of the owner label (the client's ``owner=``), for ``list --mine`` and ``reap``.
OWNER_LABEL = "aiocompute-owner"
#: Seconds the lookups after one ambiguous failure may take in all.
LOOKUP_DEADLINE = 30.0
#: How many times a create found surely absent is sent again.
MAX_RESENDS = 2


def new_token() -> str:
    """A fresh client token: 32 hex digits, unique per create."""
    return uuid.uuid4().hex


#: The environment variable that sets the default owner label.
OWNER_ENV = "AIOCOMPUTE_OWNER"


def default_owner() -> str:
    """The owner label a client puts on what it creates unless given ``owner=``:
    ``$AIOCOMPUTE_OWNER``, else ``user@host`` of this process."""
    configured = os.environ.get(OWNER_ENV, "").strip()
    if configured:
        return configured
    try:
        user = getpass.getuser()
    except Exception:  # no user name in the environment or the password database
        user = "unknown"
    return f"{user}@{socket.gethostname() or 'localhost'}"


def tag(label: str, value: str) -> str:
    """``label:value``: a label as a tag, for APIs whose labels are plain strings."""
    return f"{label}:{value}"


def tag_value(tags: Sequence[str], label: str) -> str | None:
    """The value of the first ``label:value`` tag in ``tags``, or None."""
    prefix = f"{label}:"
    for t in tags:
        if isinstance(t, str) and t.startswith(prefix):
            return t[len(prefix) :]
    return None


def labelled_map(
    metadata: Mapping[str, str] | None, *, token: str | None, owner: str
) -> tuple[str | None, dict[str, str]]:
    """``metadata`` with the owner label and the client token added (a caller's own entries
    stay: a token the caller chose is the one used), and the token it carries."""
    if metadata is not None and not isinstance(metadata, Mapping):
        raise TypeError(f"metadata must be a mapping of strings, got {type(metadata).__name__}")
    labelled = dict(metadata or {})
    labelled.setdefault(OWNER_LABEL, owner)
    if token is not None:
        token = labelled.setdefault(TOKEN_LABEL, token)
    return token, labelled


def labelled_tags(
    tags: Iterable[str] | None, *, token: str | None, owner: str
) -> tuple[str | None, list[str]]:
    """``tags`` with ``aiocompute-owner:<owner>`` and ``aiocompute-token:<token>`` added
    (unless the caller gave its own), and the token they carry."""
    if isinstance(tags, str):
        raise TypeError("tags must be a list of strings, not one string")
    labelled = list(tags or ())
    if tag_value(labelled, OWNER_LABEL) is None:
        labelled.append(tag(OWNER_LABEL, owner))
    if token is not None:
        own = tag_value(labelled, TOKEN_LABEL)
        if own is None:
            labelled.append(tag(TOKEN_LABEL, token))
        else:
            token = own
    return token, labelled


@frozen
class Plan(Generic[T]):
    """How one create is reconciled.

    ``find()`` returns what the create may have made (by token, or new and alike); ``id_of``
    names each; ``lookup`` says in words what a caller would run to look (shown in
    :class:`~aiocompute.OutcomeUnknown`); ``token`` is the client token the create carries,
    None if the API has no field for one.
    """

    find: Callable[[], Awaitable[Sequence[T]]]
    id_of: Callable[[T], str]
    lookup: str
    token: str | None = None


class _Listing:
    """One listing taken for the creates waiting on it (see :meth:`Claims.baseline`)."""

    def __init__(self) -> None:
        self.started = False
        self.done = anyio.Event()
        self.ids: frozenset[str] | None = None  # None: it failed or was cancelled


class Claims:
    """What this client's creates of each kind are doing, for fingerprint lookups.

    A fingerprint lookup sees every new resource that looks like the one asked for: those
    the client's other creates made (and returned, or are about to) must not be taken. So
    while creates of a kind run, the ids they return are kept here, and a lookup waits for
    the creates of its kind still sending before it decides. The record of a kind is
    dropped when its last create ends (nothing grows with the client's age).
    """

    def __init__(self) -> None:
        self._running: dict[Hashable, int] = {}
        self._sending: dict[Hashable, int] = {}
        self._claimed: dict[Hashable, set[str]] = {}
        self._quiet: dict[Hashable, anyio.Event] = {}
        self._looking: dict[Hashable, int] = {}
        self._in_flight: dict[Hashable, _Listing] = {}
        self._next: dict[Hashable, _Listing] = {}

    async def baseline(
        self, source: Hashable, take: Callable[[], Awaitable[Iterable[str]]]
    ) -> frozenset[str]:
        """The ids that exist before a create: ``take()`` (a listing of ``source``), shared
        by the creates that ask at the same time. Call it inside :meth:`creating`.

        A listing already under way is not joined: it may have begun before this create was
        recorded, so a resource another create of the kind made and claimed meanwhile could
        be in neither its answer nor the claims once that create ends. This waits for it,
        then takes the next listing with everyone else who waited (the first of them sends
        it). If a shared listing fails, each create takes its own.
        """
        flight = self._in_flight.get(source)
        listing = self._next.setdefault(source, _Listing())
        if flight is not None:
            await flight.done.wait()
        if listing.started:
            await listing.done.wait()
            if listing.ids is not None:
                return listing.ids
            return frozenset(await take())
        listing.started = True
        if self._next.get(source) is listing:
            del self._next[source]
        self._in_flight[source] = listing
        try:
            listing.ids = frozenset(await take())
            return listing.ids
        finally:
            listing.done.set()
            if self._in_flight.get(source) is listing:
                del self._in_flight[source]

    @contextmanager
    def creating(self, kind: Hashable) -> Iterator[None]:
        """Held for the whole of one create (sends and lookups)."""
        self._running[kind] = self._running.get(kind, 0) + 1
        self._claimed.setdefault(kind, set())
        try:
            yield
        finally:
            self._running[kind] -= 1
            if not self._running[kind]:
                del self._running[kind], self._claimed[kind]

    @contextmanager
    def sending(self, kind: Hashable) -> Iterator[None]:
        """Held while one create's request is out (not while it is being looked up)."""
        self._sending[kind] = self._sending.get(kind, 0) + 1
        try:
            yield
        finally:
            self._sending[kind] -= 1
            if not self._sending[kind]:
                del self._sending[kind]
                event = self._quiet.pop(kind, None)
                if event is not None:
                    event.set()

    @contextmanager
    def looking(self, kind: Hashable) -> Iterator[None]:
        """Held while one create of ``kind`` is being looked up."""
        self._looking[kind] = self._looking.get(kind, 0) + 1
        try:
            yield
        finally:
            self._looking[kind] -= 1
            if not self._looking[kind]:
                del self._looking[kind]

    def others_looking(self, kind: Hashable) -> bool:
        """Whether another create of ``kind`` is being looked up too (held by the caller)."""
        return self._looking.get(kind, 0) > 1

    def claim(self, kind: Hashable, resource_id: str) -> None:
        """Record that one of this client's creates returned ``resource_id``."""
        claimed = self._claimed.get(kind)
        if claimed is not None:
            claimed.add(resource_id)

    def claimed(self, kind: Hashable) -> frozenset[str]:
        """The ids this client's creates of ``kind`` returned while creates of it ran."""
        return frozenset(self._claimed.get(kind, ()))

    def sending_now(self, kind: Hashable) -> bool:
        """Whether a create of ``kind`` has a request out."""
        return bool(self._sending.get(kind))

    async def settled(self, kind: Hashable) -> None:
        """Return once no create of ``kind`` has a request out (their ids are claimed)."""
        while self._sending.get(kind):
            event = self._quiet.setdefault(kind, anyio.Event())
            await event.wait()


async def create_once(
    send: Callable[[], Awaitable[T]],
    plan: Callable[[], Awaitable[Plan[T]]] | None,
    *,
    what: str,
    claims: Claims | None = None,
    kind: Hashable = None,
    deadline: float = LOOKUP_DEADLINE,
    resends: int = MAX_RESENDS,
) -> T:
    """Run a create, reconciling it if it fails ambiguously (see the module's docstring).

    ``send`` sends the create (the same request each time: the same token). ``plan``
    prepares the lookup (for a fingerprint it lists what exists, before the first send);
    None turns reconciliation off: an ambiguous failure is raised as it came. ``what``
    names the create in logs and errors (``"Workbench session launch"``). ``claims`` and
    ``kind``, for a fingerprint: where this client's own creates of the same ``kind`` are
    recorded, from before ``plan`` lists what exists.
    """
    if plan is None:
        return await send()
    with claims.creating(kind) if claims is not None else _nothing():
        try:
            how = await plan()
        except AioComputeError as exc:
            # Without its lookup the create can still be made, only not reconciled.
            logger.warning(
                "%s: cannot prepare its reconciliation (%s): sending it as is", what, exc
            )
            return await send()
        for sent in range(resends + 1):
            try:
                with claims.sending(kind) if claims is not None else _nothing():
                    made = await send()
            except OutcomeUnknown as exc:
                failure = exc
            else:
                if claims is not None:
                    claims.claim(kind, how.id_of(made))
                return made
            with claims.looking(kind) if claims is not None else _nothing():
                found, error = await _look(how, claims, kind, deadline)
                if claims is not None:
                    # Decided and claimed with no await between: no two creates take one.
                    mine = claims.claimed(kind)
                    found = [r for r in found if how.id_of(r) not in mine]
                    if len(found) == 1 and claims.others_looking(kind):
                        # Two lost answers of one kind at once: the one found may be either's.
                        error = "another create of the same kind is being looked up too"
            if error is None and len(found) == 1:
                logger.info(
                    "%s: reconciled after %s: found %s", what, failure.reason, how.id_of(found[0])
                )
                if claims is not None:
                    claims.claim(kind, how.id_of(found[0]))
                return found[0]
            surely_absent = error is None and not found and not failure.timed_out
            if not surely_absent or sent == resends:
                raise _unknown(failure, how, found, error, what=what)
            logger.info("%s: nothing found after %s: sending it again", what, failure.reason)
    raise AssertionError("unreachable")  # pragma: no cover (the loop returns or raises)


async def _look(
    how: Plan[T], claims: Claims | None, kind: Hashable, deadline: float
) -> tuple[Sequence[T], str | None]:
    """What the plan finds, or the reason it could not look."""
    try:
        with anyio.fail_after(deadline):
            while True:
                if claims is not None:
                    await claims.settled(kind)
                found = await how.find()
                # A create of the kind sent while we looked may have made one of these.
                if claims is None or not claims.sending_now(kind):
                    return found, None
    except TimeoutError:
        return (), f"the lookup took longer than {deadline:g} s"
    except Exception as exc:  # any failure to look means: cannot tell
        return (), f"the lookup failed: {exc}"


def _unknown(
    failure: OutcomeUnknown,
    how: Plan[T],
    found: Sequence[T],
    error: str | None,
    *,
    what: str,
) -> OutcomeUnknown:
    candidates = [how.id_of(r) for r in found]
    if error is not None:
        why = error
    elif len(candidates) > 1:
        why = f"{len(candidates)} resources may be the one created: {', '.join(candidates)}"
    elif candidates:
        why = "more than one result was expected"  # pragma: no cover (one is returned)
    elif failure.timed_out:
        why = "nothing is found yet, but the request may still be on its way"
    else:
        why = "nothing was found after sending it again"
    token = f" (client token {how.token})" if how.token else ""
    return OutcomeUnknown(
        f"{what}: {failure.reason}; {why}{token}: look it up with {how.lookup} before "
        "creating it again",
        method=failure.method,
        url=failure.url,
        token=how.token,
        lookup=how.lookup,
        candidates=candidates,
        find=how.find,
        status=failure.status,
        timed_out=failure.timed_out,
    )


@contextmanager
def _nothing() -> Iterator[None]:
    yield
