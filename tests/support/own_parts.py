"""Real parts a test starts for itself (so it may fault them without touching the shared ones),
and a fault: a part's process paused."""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path

from cdsflow.runtime.processes import ManagedProcess


@asynccontextmanager
async def own_part(
    start: Callable[[Path], ManagedProcess], log_dir: Path
) -> AsyncIterator[ManagedProcess]:
    """`start(log_dir)` (e.g. `start_broker`) for the block, stopped after it."""
    part = await asyncio.to_thread(start, log_dir)
    try:
        yield part
    finally:
        await asyncio.to_thread(part.stop)


@contextmanager
def paused(part: ManagedProcess) -> Iterator[None]:
    """The part's process stopped (SIGSTOP) for the block: alive, its sockets open, silent."""
    os.kill(part.process.pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(part.process.pid, signal.SIGCONT)
