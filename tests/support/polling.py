"""Wait for a condition with a deadline (never sleep-and-hope)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")


async def eventually(
    probe: Callable[[], Awaitable[T | None]],
    timeout_s: float = 30,
    interval_s: float = 0.1,
    what: str = "condition",
) -> T:
    """Call `probe` until it returns something other than None/False; fail at the deadline."""
    deadline = time.monotonic() + timeout_s
    while True:
        result = await probe()
        if result is not None and result is not False:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s}s waiting for {what}")
        await asyncio.sleep(interval_s)
