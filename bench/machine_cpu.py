"""The whole machine's CPU over a bench round, beside the measured processes': what else ran
(another job, a process a killed run left behind: the bench process and the load generator
count here too) and what the hypervisor took from this VM (steal). Rounds on a busier or slower
machine then say so in their own figures, instead of only in a spread between runs."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

from bench.idle import window_rates

PROC_STAT = Path("/proc/stat")


@dataclass(frozen=True)
class MachineCpu:
    """Every CPU's time since boot, in seconds, read at `at` (`time.perf_counter`)."""

    # user, nice, system, irq and softirq: what ran (guest time is inside user already)
    busy_s: float
    # runnable, but the hypervisor ran something else on the physical CPU
    steal_s: float
    at: float


def machine_cpu(stat: Path = PROC_STAT) -> MachineCpu:
    """The machine's CPU time now, from the `cpu` line of /proc/stat."""
    at = time.perf_counter()
    for line in stat.read_text().splitlines():
        fields = line.split()
        if fields and fields[0] == "cpu":
            ticks = [int(value) for value in fields[1:]]
            break
    else:
        raise ValueError(f"{stat} has no 'cpu' line")
    # user nice system idle iowait irq softirq steal [guest guest_nice]
    user, nice, system, _idle, _iowait, irq, softirq = ticks[:7]
    steal = ticks[7] if len(ticks) > 7 else 0
    hz = os.sysconf("SC_CLK_TCK")
    return MachineCpu(busy_s=(user + nice + system + irq + softirq) / hz, steal_s=steal / hz, at=at)


def machine_cores(before: MachineCpu, after: MachineCpu, measured_cpu_s: float) -> dict[str, float]:
    """Cores the machine was busy between two readings, the cores stolen from it, and the
    cores busy outside the measured processes (which used `measured_cpu_s` over the same
    window; a negative difference, from the tick resolution, reads 0)."""
    seconds = after.at - before.at
    if seconds <= 0:
        raise ValueError("the second reading must come after the first")
    busy = (after.busy_s - before.busy_s) / seconds
    return {
        "busy_cores": round(busy, 3),
        "steal_cores": round((after.steal_s - before.steal_s) / seconds, 3),
        "outside_measured_cores": round(max(0.0, busy - measured_cpu_s / seconds), 3),
    }


async def machine_at_rest(pids: dict[str, int], seconds: float = 2.0) -> dict[str, float]:
    """`machine_cores` over `seconds` with nothing driven, `pids` the measured processes: what
    the machine spends besides them before any load (another job, a leftover process)."""
    before = machine_cpu()
    rates = await window_rates(pids, seconds)
    after = machine_cpu()
    return machine_cores(before, after, sum(rates.values()) * (after.at - before.at))
