"""The SDK's one clock for what it measures itself: the running event loop's.

anyio's sleeps, timeouts and cancel-scope deadlines read the loop's clock (``loop.time()``),
and so does what the SDK measures inside a loop (``anyio.current_time()``: the waiters, the
retry budget, how long a request took). Objects that may be made or read outside any loop
(the rate governor, the Qiskit IAM token's age) read :func:`now`: the same clock inside a
loop, so that all of it agrees on any event loop (a test's virtual-time loop included), and
``time.monotonic()`` outside one, which is what asyncio's own loops (and uvloop's) read.
"""

from __future__ import annotations

import asyncio
import time

__all__ = ["now"]


def now() -> float:
    """Seconds on the running event loop's clock, or ``time.monotonic()`` outside a loop."""
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        return time.monotonic()
    return loop.time()
