"""`make bench`'s report: `bench/report.md` and its plots from `bench/results.json` — cdsflow
beside its bare ceiling (`bench.ceiling`), the ratios and the goals they are held to.

Run as `python -m bench.report [--results bench/results.json] [--out-dir bench]`; it also
brings `ratios` in the results file up to date with the sections in it (every key kept).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from bench.ratios import Goal, goals, ratios

REPO = Path(__file__).resolve().parent.parent
LATENCY_PLOT = "report-latency.png"
THROUGHPUT_PLOT = "report-throughput.png"
SIDES = (("pipeline", "cdsflow"), ("ceiling", "ceiling"))


def _number(value: Any, unit: str = "") -> str:
    if not isinstance(value, int | float):
        return "—"
    return f"{value:g}{unit}"


def _p50_p99(run: dict[str, Any] | None) -> str:
    run = run or {}
    if run.get("unanswered"):
        return (
            f"not carried at {run['offered_per_s']:g}/s: {run['unanswered']} of "
            f"{run['events']} answers never came (answered {run['answered_per_s']:g}/s)"
        )
    latency = run.get("latency") or {}
    if "p99_ms" not in latency:
        return "—"
    text = f"{latency['p50_ms']:g} / {latency['p99_ms']:g} ms at {run['offered_per_s']:g}/s"
    sent = run.get("sent_per_s")
    if isinstance(sent, int | float) and sent < 0.9 * float(run["offered_per_s"]):
        # the load generator could not keep the offered pace: say so next to the figure
        text += f" (sent only {sent:g}/s)"
    return text


def _runs(results: dict[str, Any], side: str) -> list[dict[str, Any]]:
    """A side's open-loop runs: one per fraction of its capacity, then 500/s if measured."""
    section = results.get(side) or {}
    runs = list(section.get("fixed_rate") or [])
    high = section.get("at_500_per_s")
    if high and high.get("latency"):
        runs.append({**high, "fraction_of_capacity": None})
    return runs


def _label(run: dict[str, Any]) -> str:
    fraction = run.get("fraction_of_capacity")
    prefix = f"{fraction:.0%} of capacity, " if isinstance(fraction, float) else ""
    return f"{prefix}{run['offered_per_s']:g}/s"


def cpu_ms_per_event(section: dict[str, Any], process: str) -> float | None:
    """The median over a side's saturated rounds of one process's CPU ms per event."""
    figures = sorted(
        float(one["cpu_ms_per_event"][process])
        for one in section.get("saturated_rounds") or []
        if isinstance((one.get("cpu_ms_per_event") or {}).get(process), int | float)
    )
    if not figures:
        return None
    middle = len(figures) // 2
    median = figures[middle] if len(figures) % 2 else (figures[middle - 1] + figures[middle]) / 2
    return round(median, 3)


def _quotient(numerator: float | None, denominator: float | None) -> float | None:
    if numerator is None or not denominator:
        return None
    return round(numerator / denominator, 2)


def comparison_rows(results: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    """(figure, cdsflow, ceiling, ratio) rows of the report's table."""
    pipeline = results.get("pipeline") or {}
    ceiling = results.get("ceiling") or {}
    computed = ratios(results)
    rows = [
        (
            "events/s, saturated (median of rounds)",
            _number((pipeline.get("saturated") or {}).get("events_per_s")),
            _number(ceiling.get("events_per_s")),
            _number(computed["pipeline_events_per_s"]),
        )
    ]
    # the saturated rounds run beside the main ones, each with its own ratio
    beside = (
        (
            "saturated_ehr_same_priority",
            "events/s, saturated, the EHR at the same CPU priority",
            "pipeline_ehr_same_priority_events_per_s",
        ),
        (
            "saturated_same_hops",
            "events/s, saturated, the ceiling's hops alone (the writeback stopped)",
            "pipeline_same_hops_events_per_s",
        ),
    )
    for section, label, ratio in beside:
        rounds = pipeline.get(section) or {}
        if rounds:
            rows.append(
                (
                    label,
                    _number(rounds.get("events_per_s")),
                    _number(ceiling.get("events_per_s")),
                    _number(computed[ratio]),
                )
            )
    rows.append(
        (
            "in flight where doubling it stopped raising events/s",
            _number(pipeline.get("in_flight")),
            _number(ceiling.get("in_flight")),
            "",
        )
    )
    fixed = zip(pipeline.get("fixed_rate") or [], ceiling.get("fixed_rate") or [], strict=False)
    for ours, bare in fixed:
        rows.append(
            (
                f"p50 / p99 at {ours['fraction_of_capacity']:.0%} of own capacity",
                _p50_p99(ours),
                _p50_p99(bare),
                "",
            )
        )
    pipeline_high = pipeline.get("at_500_per_s") or {}
    rows.append(
        (
            "p50 / p99 at 500/s",
            _p50_p99(pipeline_high) if pipeline_high.get("latency") else "not offered",
            _p50_p99(ceiling.get("at_500_per_s")),
            _number(computed["pipeline_p99_at_500_per_s"]),
        )
    )
    rows.append(
        (
            "Triton mean batch (saturated)",
            _number(pipeline.get("triton_mean_batch")),
            _number(ceiling.get("triton_mean_batch")),
            "",
        )
    )
    ours_rss = pipeline.get("peak_rss_mb") or {}
    bare_rss = ceiling.get("peak_rss_mb") or {}
    for ours_name, bare_name in (("listener", "bare_ingest"), ("reasoner", "bare_loop")):
        rows.append(
            (
                f"peak RSS: {ours_name} / {bare_name.replace('_', ' ')}",
                _number(ours_rss.get(ours_name), " MiB"),
                _number(bare_rss.get(bare_name), " MiB"),
                "",
            )
        )
    rows.append(("peak RSS: writeback", _number(ours_rss.get("writeback"), " MiB"), "—", ""))
    for ours_name, bare_name in (("listener", "bare_ingest"), ("reasoner", "bare_loop")):
        rows.append(
            (
                f"CPU per event, saturated: {ours_name} / {bare_name.replace('_', ' ')}",
                _number(cpu_ms_per_event(pipeline, ours_name), " ms"),
                _number(cpu_ms_per_event(ceiling, bare_name), " ms"),
                _number(
                    _quotient(
                        cpu_ms_per_event(pipeline, ours_name), cpu_ms_per_event(ceiling, bare_name)
                    )
                ),
            )
        )
    for shared in ("broker", "triton"):
        rows.append(
            (
                f"CPU per event, saturated: {shared}",
                _number(cpu_ms_per_event(pipeline, shared), " ms"),
                _number(cpu_ms_per_event(ceiling, shared), " ms"),
                "",
            )
        )
    ours_load = pipeline.get("load_generator") or {}
    bare_load = ceiling.get("load_generator") or {}
    for what, key, unit in (
        ("CPU per request", "cpu_ms_per_request", " ms"),
        ("busiest run, share of a core", "max_cpu_share_of_a_core", ""),
    ):
        rows.append(
            (
                f"load generator: {what}",
                _number(ours_load.get(key), unit),
                _number(bare_load.get(key), unit),
                "",
            )
        )
    for section, what in (("listener", "listener alone"), ("reasoner", "reasoner alone")):
        figures = results.get(section) or {}
        rows.append(
            (
                f"events/s, {what} (its own bench)",
                _number(figures.get("events_per_s")),
                _number(figures.get("bare_events_per_s")),
                _number(computed[f"{section}_events_per_s"]),
            )
        )
    hooks = results.get("cds_hooks") or {}
    rows.append(
        (
            "CDS Hooks p99 at 200 req/s",
            _number(hooks.get("p99_ms"), " ms"),
            _number(hooks.get("bare_p99_ms"), " ms"),
            "",
        )
    )
    return rows


def _goal_line(goal: Goal) -> str:
    bound = f"{'≥' if goal.at_least else '≤'} {goal.bound:g}"
    verdict = {True: "met", False: "not met", None: "not measured"}[goal.met]
    return f"| {goal.what} | {_number(goal.figure)} | {bound} | {verdict} |"


def report_markdown(results: dict[str, Any]) -> str:
    pipeline = results.get("pipeline") or {}
    load = results.get("load_average_1m") or {}
    lines = [
        "# cdsflow beside its bare ceiling",
        "",
        f"Measured {results.get('measured_at', '?')} by `{results.get('command', 'make bench')}`"
        f" on {(results.get('machine') or {}).get('cpus', '?')} CPUs, load average (1 min) "
        f"{load.get('before', '?')} before and {load.get('after', '?')} after; generated by "
        "`python -m bench.report` from `bench/results.json`.",
        "",
        "cdsflow: " + str(pipeline.get("what", "")) + ".",
        "",
        "Ceiling: " + str((results.get("ceiling") or {}).get("what", "")) + ".",
        "",
        "## Side by side",
        "",
        "| figure | cdsflow | ceiling | ratio |",
        "|---|---|---|---|",
        *(f"| {a} | {b} | {c} | {d} |" for a, b, c, d in comparison_rows(results)),
        "",
        "## Goals",
        "",
        "| goal | figure | bound | |",
        "|---|---|---|---|",
        *(_goal_line(goal) for goal in goals(results)),
        "",
    ]
    measured = [
        f"`{name}` {(results.get(name) or {}).get('measured_at', '?')}"
        for name in ("listener", "reasoner", "cds_hooks")
        if results.get(name)
    ]
    if measured:
        lines += [
            "The listener, reasoner and CDS Hooks rows are those sections' own side-by-side "
            "runs (measured " + ", ".join(measured) + "); CPU per event is user + system "
            "time of each process from the start of a side's saturated round until every "
            "process is idle again, less its idle CPU over that wait, ÷ the round's events "
            "(medians); each round starts once every measured process is back at its idle "
            "CPU. Both sides are driven by the same "
            "load generator, a process of its own (`bench/load_process.py`).",
            "",
        ]
    pipeline_high = pipeline.get("at_500_per_s") or {}
    if pipeline_high.get("reason"):
        lines += [f"At 500/s, cdsflow: {pipeline_high['reason']}.", ""]
    lines += [
        "## Latency distribution",
        "",
        "PUT of the notification until its answer is on Kafka, per offered rate.",
        "",
        f"![latency distribution]({LATENCY_PLOT})",
        "",
        "## Throughput against offered load",
        "",
        f"![throughput vs offered load]({THROUGHPUT_PLOT})",
        "",
    ]
    return "\n".join(lines)


def write_plots(results: dict[str, Any], out_dir: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, 2, figsize=(11, 4.2), sharey=True)
    for axis, (side, title) in zip(axes, SIDES, strict=True):
        for run in _runs(results, side):
            points = run.get("distribution_ms") or {}
            percentiles = [float(p) for p in points]
            axis.plot(list(points.values()), percentiles, marker=".", label=_label(run))
        axis.set_xscale("log")
        axis.set_xlabel("latency, ms (log)")
        axis.set_title(title)
        axis.grid(True, which="both", alpha=0.3)
        axis.legend(fontsize=8)
    axes[0].set_ylabel("percentile")
    figure.tight_layout()
    figure.savefig(out_dir / LATENCY_PLOT, dpi=90)
    plt.close(figure)

    figure, axis = plt.subplots(figsize=(6.5, 4.2))
    top = 0.0
    for side, title in SIDES:
        runs = sorted(_runs(results, side), key=lambda run: float(run["offered_per_s"]))
        offered = [float(run["offered_per_s"]) for run in runs]
        answered = [float(run["answered_per_s"]) for run in runs]
        (line,) = axis.plot(offered, answered, marker="o", label=f"{title}, open loop")
        capacity = (
            ((results.get(side) or {}).get("saturated") or {}).get("events_per_s")
            if side == "pipeline"
            else (results.get(side) or {}).get("events_per_s")
        )
        if isinstance(capacity, int | float):
            axis.axhline(
                capacity, linestyle="--", color=line.get_color(), label=f"{title}, saturated"
            )
            top = max(top, float(capacity))
        top = max(top, *offered, *answered)
    axis.plot([1, top], [1, top], color="grey", linewidth=0.8, label="answered = offered")
    axis.set_xscale("log")
    axis.set_yscale("log")
    axis.set_xlabel("offered, events/s (log)")
    axis.set_ylabel("answered, events/s (log)")
    axis.grid(True, which="both", alpha=0.3)
    axis.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(out_dir / THROUGHPUT_PLOT, dpi=90)
    plt.close(figure)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--results", type=Path, default=REPO / "bench" / "results.json")
    parser.add_argument("--out-dir", type=Path, default=REPO / "bench")
    args = parser.parse_args()
    results = json.loads(args.results.read_text())
    args.out_dir.mkdir(parents=True, exist_ok=True)
    # the ratios follow the sections as they are now (each bench rewrites only its own)
    results["ratios"] = ratios(results)
    args.results.write_text(json.dumps(results, indent=2) + "\n")
    write_plots(results, args.out_dir)
    (args.out_dir / "report.md").write_text(report_markdown(results))
    print(f"wrote {args.out_dir / 'report.md'}")


if __name__ == "__main__":
    main()
