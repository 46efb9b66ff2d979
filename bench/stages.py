"""Where the time goes: span durations per stage, from the traces the pipeline exported."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from bench.measures import latency_summary
from cdsflow.runtime.trace_collector import CollectedSpan, TraceCollector


async def settled_spans(
    collector: TraceCollector, quiet_s: float = 2.0, timeout_s: float = 20.0
) -> list[CollectedSpan]:
    """The collected spans once no new ones arrived for `quiet_s` (exporters send in batches)."""
    deadline = time.monotonic() + timeout_s
    count, quiet_since = -1, time.monotonic()
    while time.monotonic() < deadline:
        current = len(collector.spans())
        if current != count:
            count, quiet_since = current, time.monotonic()
        elif time.monotonic() - quiet_since >= quiet_s:
            break
        await asyncio.sleep(0.2)
    return collector.spans()


def stage_durations(spans: list[CollectedSpan]) -> list[dict[str, Any]]:
    """Per `service: span name`, the duration percentiles, slowest p50 first."""
    by_stage: dict[tuple[str, str], list[float]] = {}
    for span in spans:
        if span.end_unix_nano:
            by_stage.setdefault((span.service, span.name), []).append(span.duration_s)
    stages = [
        {"service": service, "span": name, **latency_summary(durations)}
        for (service, name), durations in by_stage.items()
    ]
    return sorted(stages, key=lambda stage: -float(stage["p50_ms"]))
