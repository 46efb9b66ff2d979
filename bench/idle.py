"""Between the bench's rounds: wait until the processes it measures are back at their idle CPU,
so that one round's leftovers (the pipeline's write-backs into the EHR, say) are not counted in
the next round, the other side's included.

A process's idle CPU is not zero (a consumer that fetches every 5 ms keeps the embedded broker
busy), so each is compared with its own idle rate, measured once before the first round.
"""

from __future__ import annotations

import asyncio
import time

from bench.reasoner import process_cpu_s

# busier than its idle rate by more than this (cores) counts as still working
IDLE_MARGIN_CORES = 0.05
WINDOW_S = 1.0


def cpu_rates(
    before: dict[str, float], after: dict[str, float], seconds: float
) -> dict[str, float]:
    """Each process's CPU use over a window, in cores, from two CPU-seconds readings."""
    return {name: (after[name] - before[name]) / seconds for name in before if name in after}


def busy(
    baseline: dict[str, float], rates: dict[str, float], margin: float = IDLE_MARGIN_CORES
) -> list[str]:
    """The processes busier than their idle baseline by more than `margin` cores."""
    return sorted(name for name, used in rates.items() if used > baseline.get(name, 0.0) + margin)


def flat(
    previous: dict[str, float], current: dict[str, float], margin: float = IDLE_MARGIN_CORES
) -> bool:
    """Whether every process used the same CPU (within `margin` cores) in two windows."""
    return all(abs(current[name] - previous.get(name, 0.0)) <= margin for name in current)


async def window_rates(pids: dict[str, int], seconds: float = WINDOW_S) -> dict[str, float]:
    """Each process's CPU use (cores) over the next `seconds`."""
    before = {name: process_cpu_s(pid) for name, pid in pids.items()}
    began = time.perf_counter()
    await asyncio.sleep(seconds)
    after = {name: process_cpu_s(pid) for name, pid in pids.items()}
    return cpu_rates(before, after, time.perf_counter() - began)


async def idle_baseline(pids: dict[str, int], timeout_s: float = 60.0) -> dict[str, float]:
    """The processes' idle CPU (cores): the first window that matched the one before it, with
    nothing driven; the last window at the deadline."""
    deadline = time.monotonic() + timeout_s
    previous = await window_rates(pids)
    while True:
        current = await window_rates(pids)
        if flat(previous, current) or time.monotonic() > deadline:
            return current
        previous = current


async def wait_until_idle(
    pids: dict[str, int], baseline: dict[str, float], timeout_s: float = 180.0
) -> dict[str, object]:
    """Wait until no process is busier than its idle baseline; returns how long that took and,
    at the deadline, which were still busy (the round then starts anyway, and says so)."""
    began = time.monotonic()
    while True:
        still = busy(baseline, await window_rates(pids))
        if not still or time.monotonic() - began > timeout_s:
            return {"waited_s": round(time.monotonic() - began, 1), "still_busy": still}
