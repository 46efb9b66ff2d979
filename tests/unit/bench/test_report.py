"""The bench report and its ratios, on a small results fixture (pure logic, no bench run)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from bench.pipeline_load import distribution_ms
from bench.ratios import goals, ratios
from bench.report import (
    LATENCY_PLOT,
    THROUGHPUT_PLOT,
    comparison_rows,
    report_markdown,
    write_plots,
)


def _run(offered: float, answered: float, p50: float, p99: float, **extra: Any) -> dict[str, Any]:
    return {
        "offered_per_s": offered,
        "answered_per_s": answered,
        "latency": {"count": 100, "p50_ms": p50, "p99_ms": p99},
        "distribution_ms": {"1": p50 / 2, "50": p50, "99": p99, "100": p99 * 1.1},
        **extra,
    }


@pytest.fixture
def results() -> dict[str, Any]:
    return {
        "measured_at": "2026-11-30T06:00:00+00:00",
        "command": "make bench",
        "machine": {"cpus": 2},
        "load_average_1m": {"before": 2.5, "after": 3.1},
        "pipeline": {
            "what": "PUT -> Recommendation",
            "saturated": {"events_per_s": 40.0},
            "saturated_ehr_same_priority": {"events_per_s": 32.0},
            "saturated_same_hops": {"events_per_s": 56.0},
            "saturated_rounds": [
                {"cpu_ms_per_event": {"listener": 3.0, "reasoner": 2.0, "broker": 1.0}},
                {"cpu_ms_per_event": {"listener": 5.0, "reasoner": 2.5, "broker": 1.5}},
                {"cpu_ms_per_event": {"listener": 4.0, "reasoner": 3.0, "broker": 2.0}},
            ],
            "fixed_rate": [
                _run(10.0, 10.0, 20.0, 40.0, fraction_of_capacity=0.25),
                _run(20.0, 19.8, 25.0, 60.0, fraction_of_capacity=0.5),
            ],
            "at_500_per_s": {"offered_per_s": 500.0, "latency": None, "reason": "too slow"},
            "triton_mean_batch": 3.5,
            "in_flight": 16,
            "load_generator": {"cpu_ms_per_request": 0.09, "max_cpu_share_of_a_core": 0.05},
            "peak_rss_mb": {"listener": 110.0, "reasoner": 300.0, "writeback": 150.0},
        },
        "ceiling": {
            "what": "bare hops",
            "events_per_s": 160.0,
            "saturated_rounds": [
                {"cpu_ms_per_event": {"bare_ingest": 1.0, "bare_loop": 0.5}},
                {"cpu_ms_per_event": {"bare_ingest": 2.0, "bare_loop": 0.5}},
            ],
            "p99_ms_at_500_per_s": 800.0,
            "fixed_rate": [
                _run(40.0, 40.0, 8.0, 20.0, fraction_of_capacity=0.25),
                _run(80.0, 79.0, 9.0, 30.0, fraction_of_capacity=0.5),
            ],
            "at_500_per_s": _run(500.0, 170.0, 400.0, 800.0, sent_per_s=300.0),
            "triton_mean_batch": 12.0,
            "in_flight": 64,
            "load_generator": {"cpu_ms_per_request": 0.11, "max_cpu_share_of_a_core": 0.12},
            "peak_rss_mb": {"bare_ingest": 60.0, "bare_loop": 120.0},
        },
        "listener": {"events_per_s": 170.0, "bare_events_per_s": 200.0, "ratio": 0.85},
        "reasoner": {"events_per_s": 300.0, "bare_events_per_s": 750.0},
        "cds_hooks": {"p99_ms": 70.0, "bare_p99_ms": 6.0},
    }


def test_ratios_are_cdsflow_over_its_ceiling(results: dict[str, Any]) -> None:
    assert ratios(results) == {
        "pipeline_events_per_s": 0.25,
        # the pipeline could not be offered 500/s: no ratio, rather than a made-up one
        "pipeline_p99_at_500_per_s": None,
        # the rounds with the EHR at the pipeline's own CPU priority, beside the main ones
        "pipeline_ehr_same_priority_events_per_s": 0.2,
        # the ceiling's hops alone (the writeback held off the CPU), beside the main ones
        "pipeline_same_hops_events_per_s": 0.35,
        # the listener section's own ratio is taken as it is
        "listener_events_per_s": 0.85,
        # the reasoner section has none: worked out from its two figures
        "reasoner_events_per_s": 0.4,
    }


def test_p99_ratio_at_500_when_both_were_measured(results: dict[str, Any]) -> None:
    results["pipeline"]["at_500_per_s"] = _run(500.0, 480.0, 300.0, 1000.0)
    assert ratios(results)["pipeline_p99_at_500_per_s"] == 1.25


def test_missing_sections_give_no_ratio() -> None:
    assert set(ratios({}).values()) == {None}


def test_goals_met_not_met_and_not_measured(results: dict[str, Any]) -> None:
    verdicts = {goal.what: goal.met for goal in goals(results)}
    assert verdicts == {
        "pipeline events/s ÷ chained ceiling's": False,  # 0.25 < 0.5
        "pipeline p99 at 500/s ÷ chained ceiling's": None,
        "CDS Hooks p99 at 200 req/s (ms)": False,  # 70 ms > 50 ms
    }
    results["pipeline"]["saturated"]["events_per_s"] = 100.0
    results["cds_hooks"]["p99_ms"] = 50.0
    verdicts = {goal.what: goal.met for goal in goals(results)}
    assert verdicts["pipeline events/s ÷ chained ceiling's"] is True
    assert verdicts["CDS Hooks p99 at 200 req/s (ms)"] is True


def test_report_table_and_goals(results: dict[str, Any]) -> None:
    rows = {row[0]: row[1:] for row in comparison_rows(results)}
    assert rows["events/s, saturated (median of rounds)"] == ("40", "160", "0.25")
    assert rows["events/s, saturated, the EHR at the same CPU priority"] == ("32", "160", "0.2")
    assert rows["events/s, saturated, the ceiling's hops alone (the writeback stopped)"] == (
        "56",
        "160",
        "0.35",
    )
    assert rows["p50 / p99 at 50% of own capacity"] == (
        "25 / 60 ms at 20/s",
        "9 / 30 ms at 80/s",
        "",
    )
    assert rows["p50 / p99 at 500/s"] == (
        "not offered",
        # the load generator's own pace is told where it fell short of the offered rate
        "400 / 800 ms at 500/s (sent only 300/s)",
        "—",
    )
    assert rows["peak RSS: reasoner / bare loop"] == ("300 MiB", "120 MiB", "")
    assert rows["in flight where doubling it stopped raising events/s"] == ("16", "64", "")
    assert rows["load generator: CPU per request"] == ("0.09 ms", "0.11 ms", "")
    assert rows["load generator: busiest run, share of a core"] == ("0.05", "0.12", "")
    assert rows["events/s, reasoner alone (its own bench)"] == ("300", "750", "0.4")
    # medians of each side's rounds: 4 of (3, 5, 4); 1.5 of (1, 2)
    assert rows["CPU per event, saturated: listener / bare ingest"] == ("4 ms", "1.5 ms", "2.67")
    assert rows["CPU per event, saturated: broker"] == ("1.5 ms", "—", "")
    markdown = report_markdown(results)
    assert "| pipeline events/s ÷ chained ceiling's | 0.25 | ≥ 0.5 | not met |" in markdown
    assert "| pipeline p99 at 500/s ÷ chained ceiling's | — | ≤ 1.5 | not measured |" in markdown
    assert "At 500/s, cdsflow: too slow." in markdown
    assert f"]({LATENCY_PLOT})" in markdown
    assert f"]({THROUGHPUT_PLOT})" in markdown
    assert "load average (1 min) 2.5 before and 3.1 after" in markdown


def test_plots_are_written(results: dict[str, Any], tmp_path: Path) -> None:
    write_plots(results, tmp_path)
    for name in (LATENCY_PLOT, THROUGHPUT_PLOT):
        assert (tmp_path / name).read_bytes().startswith(b"\x89PNG")


def test_latency_distribution_in_ms() -> None:
    samples = [index / 1000 for index in range(1, 101)]  # 1 ms .. 100 ms
    distribution = distribution_ms(samples)
    assert distribution["50"] == 50.0
    assert distribution["100"] == 100.0
    assert list(distribution.values()) == sorted(distribution.values())
    assert distribution_ms([]) == {}


def test_an_open_loop_that_was_not_carried_says_so(results: dict[str, Any], tmp_path: Path) -> None:
    results["ceiling"]["fixed_rate"].append(
        {
            "offered_per_s": 120.0,
            "fraction_of_capacity": 0.75,
            "events": 1200,
            "unanswered": 300,
            "answered_per_s": 15.0,
            "latency": None,
            "reason": "300 of 1200 answers not there 60 s after the last request",
        }
    )
    results["pipeline"]["fixed_rate"].append(
        _run(30.0, 30.0, 30.0, 90.0, fraction_of_capacity=0.75)
    )

    rows = {row[0]: row[1:] for row in comparison_rows(results)}

    assert rows["p50 / p99 at 75% of own capacity"] == (
        "30 / 90 ms at 30/s",
        "not carried at 120/s: 300 of 1200 answers never came (answered 15/s)",
        "",
    )
    write_plots(results, tmp_path)  # a run without a distribution is drawn without one
