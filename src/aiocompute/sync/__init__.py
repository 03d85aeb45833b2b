"""Blocking twins of the async clients, for scripts, notebooks and other sync code.

::

    from aiocompute.sync import WorkbenchClient

    with WorkbenchClient("https://workbench.example.com", token="...") as wb:
        print(wb.version())
        s = wb.sessions.launch("VS Code", name="etl", launch_parameters=...)
        wb.sessions.wait(s.id)                      # -> Session, like the async twin
        with wb.jobs.output(job_id) as chunks:      # an iterator; leaving closes the stream
            for chunk in chunks:
                ...

The rules
---------
- Every async client has a sync class of the same name here, with the same constructor;
  its resources (``wb.sessions``...) and their methods have the same names, parameters and
  defaults, and the same return types with ``await`` taken away.
- A method returning an async iterator returns a :class:`SyncIterator`: items come one at a
  time as they arrive. Leaving early (``break``, ``close()``, the end of a ``with`` block, or
  the iterator being garbage collected) closes the underlying stream at once.
- A method returning a :class:`~aiocompute._core.pagination.Paginator` returns a
  :class:`SyncPaginator`: iterate it (pages are fetched lazily), or call ``.all()`` (or
  ``list(...)``) for every item.
- ``async with`` becomes ``with``; ``await client.aclose()`` becomes ``client.close()``.
- :func:`fan_out` / :func:`fan_out_iter` run a blocking function (a sync client's method)
  over many items on at most ``concurrency`` threads, with the async ones' results.
  A client that is garbage collected unclosed warns (:class:`ResourceWarning`) and closes.

How it runs
-----------
Each sync client owns one background thread running an event loop; the async client is
built and used there only. So the twins work the same in a plain script and inside an
already running event loop (a Jupyter notebook), and one client may be shared by threads.
Callbacks such as ``on_transition`` run in that background thread, where the sync client
itself must not be called (use the async client there). Ctrl-C while a call is in flight
cancels the call (closing its stream, and stopping a remote resource when the wait was
asked to with ``on_cancel="cancel"``) and then raises :class:`KeyboardInterrupt`.
A call that finds the client closed raises :class:`ClientClosedError`.

Where the twins come from
-------------------------
``_generated.py`` is written by ``python tools/gen_sync.py`` from the async classes, never
by hand: every ``BaseClient`` subclass exported (``__all__``) by an
``aiocompute.<api>.client`` module gets its twins, so a new API needs no code here, only a
run of the generator (CI runs ``tools/gen_sync.py --check`` and fails on a stale file).
Only the waiting methods shared by every resource with a state machine (``wait``,
``wait_all``, ``as_completed``, ``watch``, ``wait_token``, ``resume_wait``) are written by
hand, once, in :class:`SyncWaitableResource`, which the generated resource twins subclass.
"""

from .._core.fanout import FanOutResult, Outcome
from ._fanout import fan_out, fan_out_iter
from ._generated import *  # noqa: F403  (the generated twins; their names are in its __all__)
from ._generated import __all__ as _generated_all
from ._runtime import (
    ClientClosedError,
    SyncClient,
    SyncContextManager,
    SyncHandle,
    SyncIterator,
    SyncPaginator,
    SyncResource,
    SyncWaitableResource,
)

__all__ = [
    "ClientClosedError",
    "FanOutResult",
    "Outcome",
    "SyncClient",
    "SyncContextManager",
    "SyncHandle",
    "SyncIterator",
    "SyncPaginator",
    "SyncResource",
    "SyncWaitableResource",
    "fan_out",
    "fan_out_iter",
    *_generated_all,
]
