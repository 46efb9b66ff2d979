"""Latency and throughput figures from raw samples."""

from __future__ import annotations

import statistics
from typing import Any


def percentile(samples: list[float], fraction: float) -> float:
    """Nearest-rank percentile of `samples` (seconds), `fraction` in (0, 1]."""
    ordered = sorted(samples)
    rank = max(0, min(len(ordered) - 1, round(fraction * len(ordered) + 0.5) - 1))
    return ordered[rank]


def latency_summary(samples_s: list[float]) -> dict[str, Any]:
    """p50/p90/p99/max in milliseconds and the sample count."""
    if not samples_s:
        return {"count": 0}
    return {
        "count": len(samples_s),
        "p50_ms": round(percentile(samples_s, 0.50) * 1000, 2),
        "p90_ms": round(percentile(samples_s, 0.90) * 1000, 2),
        "p99_ms": round(percentile(samples_s, 0.99) * 1000, 2),
        "max_ms": round(max(samples_s) * 1000, 2),
        "mean_ms": round(statistics.fmean(samples_s) * 1000, 2),
    }


def rate(count: int, seconds: float) -> float:
    return round(count / seconds, 1) if seconds > 0 else 0.0
