"""An evaluation's result as a JSON summary, a few lines for the terminal, and an HTML report
with the ROC and calibration plots. Aggregates only: no patient identifier appears."""

from __future__ import annotations

import html
import json
import math
from dataclasses import asdict
from typing import Any

from cdsflow.evaluation.evaluation_run import EvaluationResult, VersionEvaluation
from cdsflow.evaluation.report_plots import calibration_plot_svg, roc_plot_svg
from cdsflow.evaluation.version_performance import GroupPerformance


def _finite(value: Any) -> Any:
    """JSON has no NaN or infinity: null instead."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(item) for item in value]
    return value


def summary_json(result: EvaluationResult) -> dict[str, Any]:
    summary: dict[str, Any] = _finite(
        {
            "adapter": result.adapter_id,
            "model": result.model,
            "dataset": str(result.dataset),
            "patients": result.patients,
            "positives": result.positives,
            "alert_from_band": result.alert_from_band,
            "alert_threshold": result.alert_threshold,
            "gate": result.gate.model_dump(exclude_none=True),
            "passed": result.passed,
            "versions": [
                {
                    "version": v.version,
                    "mode": v.mode,
                    "passed": v.passed,
                    "gate_failures": list(v.gate_failures),
                    "scored": v.scored,
                    "not_scored": v.not_scored,
                    "refused_values": v.refused_values,
                    **asdict(v.performance),
                }
                for v in result.versions
            ],
        }
    )
    return summary


def _figure(value: float | None, digits: int = 3) -> str:
    return "n/a" if value is None or not math.isfinite(value) else f"{value:.{digits}f}"


def _interval(interval: tuple[float, float] | None) -> str:
    return "" if interval is None else f" (95% CI {interval[0]:.3f}-{interval[1]:.3f})"


def summary_lines(result: EvaluationResult) -> list[str]:
    """What the terminal shows: per version the gate's figures and its verdict."""
    lines = [
        f"{result.adapter_id}: {result.patients} patients, {result.positives} with the outcome; "
        f"alerts from band {result.alert_from_band} (score >= {result.alert_threshold:g})"
    ]
    for v in result.versions:
        o = v.performance.overall
        lines.append(
            f"  version {v.version} ({v.mode}): AUROC {_figure(o.auroc)}{_interval(o.auroc_95ci)}, "
            f"sensitivity {o.sensitivity:.3f}, PPV {o.ppv:.3f}, "
            f"{o.alerts_per_100_patient_days:.1f} alerts per 100 patient-days, "
            f"calibration slope {_figure(o.calibration_slope, 2)} "
            f"intercept {_figure(o.calibration_intercept, 2)}"
        )
        lines.append(f"    gate: {'met' if v.passed else 'NOT met'}")
        lines += [f"    failed: {failure}" for failure in v.gate_failures]
    return lines


def _operating_point(group: GroupPerformance) -> tuple[float, float]:
    """(1 - specificity, sensitivity) of the alert band."""
    true_alerts = round(group.sensitivity * group.positives)
    negatives = group.patients - group.positives
    return (group.alerts - true_alerts) / max(negatives, 1), group.sensitivity


_GROUP_HEADER = (
    "<tr><th>group</th><th>patients</th><th>with outcome</th><th>AUROC (95% CI)</th>"
    "<th>sensitivity</th><th>PPV</th><th>alerts</th><th>alerts / 100 patient-days</th>"
    "<th>calibration slope</th><th>calibration intercept</th><th>mean predicted</th>"
    "<th>observed rate</th></tr>"
)


def _group_row(g: GroupPerformance) -> str:
    cells = (
        g.name,
        str(g.patients),
        str(g.positives),
        _figure(g.auroc) + _interval(g.auroc_95ci).replace(" (95% CI ", " (").rstrip(),
        f"{g.sensitivity:.3f}",
        f"{g.ppv:.3f}",
        f"{g.alerts} ({g.alert_share:.1%})",
        f"{g.alerts_per_100_patient_days:.1f}",
        _figure(g.calibration_slope, 2),
        _figure(g.calibration_intercept, 2),
        f"{g.mean_predicted:.3f}",
        f"{g.observed_rate:.3f}",
    )
    return "<tr>" + "".join(f"<td>{html.escape(cell)}</td>" for cell in cells) + "</tr>"


def _version_section(result: EvaluationResult, v: VersionEvaluation) -> str:
    o = v.performance.overall
    name = f"{result.model} version {v.version} ({v.mode})"
    verdict = (
        '<p class="met">Gate met.</p>'
        if v.passed
        else '<p class="failed">Gate not met:</p><ul>'
        + "".join(f"<li>{html.escape(f)}</li>" for f in v.gate_failures)
        + "</ul>"
    )
    refused = ", ".join(f"{k} ({n})" for k, n in v.refused_values.items()) or "none"
    bins = "".join(
        f"<tr><td>{i + 1}</td><td>{b.patients}</td><td>{b.mean_predicted:.3f}</td>"
        f"<td>{b.observed_rate:.3f}</td></tr>"
        for i, b in enumerate(v.performance.calibration_curve)
    )
    roc = roc_plot_svg(v.performance.roc_curve, _operating_point(o), o.auroc, f"ROC — v{v.version}")
    calibration = calibration_plot_svg(
        v.performance.calibration_curve, f"Calibration — v{v.version}"
    )
    return f"""<section>
<h2>{html.escape(name)}</h2>
{verdict}
<p>Scored {v.scored} patients; {v.not_scored} not scored (required inputs not observed).
Values refused: {html.escape(refused)}.</p>
<div class="plots"><figure class="roc">{roc}</figure>
<figure class="calibration">{calibration}</figure></div>
<table>{_GROUP_HEADER}{_group_row(o)}{"".join(_group_row(g) for g in v.performance.subgroups)}
</table>
<h3>Calibration curve</h3>
<table><tr><th>bin</th><th>patients</th><th>mean predicted</th><th>observed rate</th></tr>
{bins}</table>
</section>"""


def html_report(result: EvaluationResult) -> str:
    gate = ", ".join(f"{k} {v}" for k, v in result.gate.model_dump(exclude_none=True).items())
    title = f"cdsflow evaluate — {result.adapter_id}"
    sections = "\n".join(_version_section(result, v) for v in result.versions)
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em; max-width: 75em; }}
table {{ border-collapse: collapse; margin: 1em 0; }}
td, th {{ border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: right; }}
td:first-child, th:first-child {{ text-align: left; }}
.plots {{ display: flex; flex-wrap: wrap; gap: 1em; }}
.plots figure {{ margin: 0; }}
.met {{ color: #176317; font-weight: bold; }} .failed {{ color: #a31515; font-weight: bold; }}
</style></head>
<body>
<h1>{html.escape(result.adapter_title)}</h1>
<p>Adapter <code>{html.escape(result.adapter_id)}</code>, Triton model
<code>{html.escape(result.model)}</code>, dataset <code>{html.escape(str(result.dataset))}</code>:
{result.patients} patients, {result.positives} with the outcome. Alerts: results in band
<code>{html.escape(result.alert_from_band)}</code> or higher (score ≥
{result.alert_threshold:g}). Gate: {html.escape(gate) or "none declared"}.</p>
{sections}
</body></html>
"""


def json_text(result: EvaluationResult) -> str:
    return json.dumps(summary_json(result), indent=2) + "\n"
