"""The rounds `make bench` (`bench.pipeline`) measures each side of its comparison in: a side
(its load generator and where its answers show), the in-flight sweep that finds where more in
flight stops raising its events/s, and rounds that start only once every measured process is
back at its idle CPU (`bench.idle`)."""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Awaitable, Callable
from typing import Any

from bench.idle import idle_baseline, wait_until_idle
from bench.machine_cpu import machine_at_rest, machine_cores, machine_cpu
from bench.pipeline_load import (
    Arrivals,
    LoadGenerator,
    fixed_rate,
    saturated,
    saturation_point,
)
from bench.reasoner import process_cpu_s, triton_counts


def median_rounded(values: list[float]) -> float:
    """The median, to one decimal."""
    return round(float(statistics.median(values)), 1)


class Side:
    """One side of the comparison: where the notifications go and where the answers show."""

    def __init__(self, generator: LoadGenerator, arrivals: Arrivals) -> None:
        self.generator = generator
        self.arrivals = arrivals
        self.sweep: list[dict[str, Any]] = []
        self.in_flight: int | None = None  # where more in flight stopped raising events/s
        self.saturated_rounds: list[dict[str, Any]] = []
        self.fixed_rate: list[dict[str, Any]] = []
        self.at_high_rate: dict[str, Any] | None = None


def side_figures(side: Side) -> dict[str, Any]:
    """What each side reports alike: the in-flight sweep, Triton's batching, the failures and
    the load generator's own figures (so that a reader sees it was not the bound)."""
    batches = [r["triton_mean_batch"] for r in side.saturated_rounds if "triton_mean_batch" in r]
    runs = [*side.saturated_rounds, *side.fixed_rate]
    if side.at_high_rate is not None:
        runs.append(side.at_high_rate)
    generator = [run["load_generator"] for run in runs if "load_generator" in run]
    shares = [g["cpu_share_of_a_core"] for g in generator if g["cpu_share_of_a_core"] is not None]
    return {
        "in_flight_sweep": side.sweep,
        "in_flight": side.in_flight,
        "failures_by_kind": side.generator.failure_kinds,
        "triton_mean_batch": median_rounded(batches) if batches else None,
        "load_generator": {
            "what": (
                "bench/load_process.py, a process of its own: pre-built HTTP/1.1 PUTs on "
                "keep-alive connections, each answer's status read back"
            ),
            "cpu_ms_per_request": round(
                float(statistics.median(g["cpu_ms_per_request"] for g in generator)), 3
            )
            if generator
            else None,
            "max_cpu_share_of_a_core": max(shares) if shares else None,
        },
    }


def in_flight_levels(smallest: int, largest: int) -> list[int]:
    """The in-flight counts the saturation sweep tries: doubling from `smallest` to `largest`."""
    levels = [smallest]
    while levels[-1] * 2 <= largest:
        levels.append(levels[-1] * 2)
    return levels


class Rounds:
    """Measures each round on a quiet machine: before it starts, every measured process is back
    at its idle CPU (`bench.idle`); during it, each process's CPU and Triton's batching."""

    def __init__(self, cpu_pids: dict[str, int], triton_http: str) -> None:
        self.cpu_pids = cpu_pids
        self._triton_http = triton_http
        self.baseline: dict[str, float] = {}
        # the whole machine before any load (`bench.machine_cpu`)
        self.machine_at_rest: dict[str, float] = {}

    async def measure_baseline(self) -> None:
        self.baseline = await idle_baseline(self.cpu_pids)
        self.machine_at_rest = await machine_at_rest(self.cpu_pids)

    async def quiet(self) -> dict[str, object]:
        return await wait_until_idle(self.cpu_pids, self.baseline)

    async def saturated(
        self,
        side: Side,
        patients: list[str],
        events: int,
        in_flight: int,
        idle: dict[str, object] | None = None,
        after: Callable[[dict[str, Any]], Awaitable[None]] | None = None,
    ) -> dict[str, Any]:
        """One saturated round; it first waits for quiet unless the caller did (`idle`). Each
        process's CPU is counted from the round's start until every process is idle again
        (the pipeline's write-backs included), less its idle CPU over that wait; `after` runs
        as soon as the last answer arrived, before that wait."""
        if idle is None:
            idle = await self.quiet()
        inferences, executions = await triton_counts(self._triton_http)
        cpu_before = {n: process_cpu_s(pid) for n, pid in self.cpu_pids.items()}
        machine_before = machine_cpu()
        one = await saturated(side.generator, side.arrivals, patients, events, in_flight)
        answered = time.perf_counter()
        one["machine"] = machine_cores(
            machine_before,
            machine_cpu(),
            sum(process_cpu_s(pid) - cpu_before[n] for n, pid in self.cpu_pids.items())
            + one["load_generator"]["cpu_s"],
        )
        inferences_after, executions_after = await triton_counts(self._triton_http)
        if executions_after > executions:
            one["triton_mean_batch"] = round(
                (inferences_after - inferences) / (executions_after - executions), 2
            )
        if after is not None:
            await after(one)
        settled = await self.quiet()
        waited = time.perf_counter() - answered
        one["cpu_ms_per_event"] = {
            n: round(
                max(0.0, process_cpu_s(pid) - cpu_before[n] - self.baseline.get(n, 0.0) * waited)
                * 1000
                / max(1, one["events"]),
                3,
            )
            for n, pid in self.cpu_pids.items()
        }
        one["idle_before"] = idle
        one["settled_after"] = settled
        return one

    async def fixed_rate(
        self, side: Side, patients: list[str], per_s: float, seconds: float
    ) -> dict[str, Any]:
        idle = await self.quiet()
        figures = await fixed_rate(side.generator, side.arrivals, patients, per_s, seconds)
        return {**figures, "idle_before": idle}


async def sweep(
    rounds: Rounds, paths: dict[str, Side], patients: list[str], args: argparse.Namespace
) -> None:
    """Each side's in flight doubled (alternating sides) until more no longer raised its
    events/s by `SATURATION_GAIN`; the largest level tried where it never stopped rising."""
    levels = in_flight_levels(args.min_in_flight, args.max_in_flight)
    for level in levels:
        for path in paths.values():
            if path.in_flight is not None:
                continue
            one = await rounds.saturated(path, patients, args.events, level)
            path.sweep.append({"in_flight": level, "events_per_s": one["events_per_s"]})
            path.in_flight = saturation_point(
                [(point["in_flight"], point["events_per_s"]) for point in path.sweep]
            )
    for path in paths.values():
        if path.in_flight is None:
            path.in_flight = levels[-1]
