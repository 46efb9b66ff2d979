"""cdsflow beside its bare ceiling: the ratios `make bench` reports and the goals they are held
to (issue 10), computed from `bench/results.json`'s sections. Pure: no I/O."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

# (ratio or figure, "at least" / "at most", bound)
PIPELINE_EVENTS_PER_S_GOAL = 0.5
PIPELINE_P99_AT_500_GOAL = 1.5
CDS_HOOKS_P99_MS_GOAL = 50.0


@dataclass(frozen=True)
class Goal:
    what: str
    figure: float | None
    bound: float
    at_least: bool  # else: at most

    @property
    def met(self) -> bool | None:
        """None when the figure could not be measured."""
        if self.figure is None:
            return None
        return self.figure >= self.bound if self.at_least else self.figure <= self.bound


def _ratio(numerator: Any, denominator: Any) -> float | None:
    if not isinstance(numerator, int | float) or not isinstance(denominator, int | float):
        return None
    return round(numerator / denominator, 3) if denominator else None


def _at(results: dict[str, Any], *keys: str) -> Any:
    """results[k1][k2]...; None where a section or key is missing."""
    value: Any = results
    for key in keys:
        if not isinstance(value, dict):
            return None
        value = value.get(key)
    return value


def ratios(results: dict[str, Any]) -> dict[str, float | None]:
    """cdsflow / its bare ceiling, each measured side by side in its own section's run:
    events/s (higher is better) and p99 latency at 500/s (lower is better); None where either
    side is missing (e.g. the pipeline cannot carry 500/s)."""
    return {
        "pipeline_events_per_s": _ratio(
            _at(results, "pipeline", "saturated", "events_per_s"),
            _at(results, "ceiling", "events_per_s"),
        ),
        "pipeline_p99_at_500_per_s": _ratio(
            _at(results, "pipeline", "at_500_per_s", "latency", "p99_ms"),
            _at(results, "ceiling", "p99_ms_at_500_per_s"),
        ),
        # the same, the EHR at the same CPU priority as the pipeline (not its own machine)
        "pipeline_ehr_same_priority_events_per_s": _ratio(
            _at(results, "pipeline", "saturated_ehr_same_priority", "events_per_s"),
            _at(results, "ceiling", "events_per_s"),
        ),
        # the ceiling's hops alone: the writeback held off the CPU for the round
        "pipeline_same_hops_events_per_s": _ratio(
            _at(results, "pipeline", "saturated_same_hops", "events_per_s"),
            _at(results, "ceiling", "events_per_s"),
        ),
        "listener_events_per_s": _section_ratio(results, "listener"),
        "reasoner_events_per_s": _section_ratio(results, "reasoner"),
    }


def _section_ratio(results: dict[str, Any], section: str) -> float | None:
    """A section's own side-by-side ratio (events/s ÷ its bare loop's, same run), else worked
    out from its two figures."""
    own = _at(results, section, "ratio")
    if isinstance(own, int | float):
        return float(own)
    return _ratio(_at(results, section, "events_per_s"), _at(results, section, "bare_events_per_s"))


def goals(results: dict[str, Any]) -> list[Goal]:
    computed = ratios(results)
    return [
        Goal(
            "pipeline events/s ÷ chained ceiling's",
            computed["pipeline_events_per_s"],
            PIPELINE_EVENTS_PER_S_GOAL,
            at_least=True,
        ),
        Goal(
            "pipeline p99 at 500/s ÷ chained ceiling's",
            computed["pipeline_p99_at_500_per_s"],
            PIPELINE_P99_AT_500_GOAL,
            at_least=False,
        ),
        Goal(
            "CDS Hooks p99 at 200 req/s (ms)",
            _at(results, "cds_hooks", "p99_ms"),
            CDS_HOOKS_P99_MS_GOAL,
            at_least=False,
        ),
    ]
