"""The SDK's one clock for what it measures itself: the running event loop's.

anyio's sleeps, timeouts and cancel-scope deadlines read the loop's clock (``loop.time()``).
What the SDK measures on its own (the rate governor's pacing, the retry budget, an IAM
token's age, how long a request took) reads the same clock, so that all of it agrees on any
event loop, a test's virtual-time loop included. On asyncio's own loops (and uvloop's) that
clock is ``time.monotonic()``, which is also what :func:`now` reads outside a loop.
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
