"""The report's two plots, drawn by matplotlib (no display needed) as inline SVG: the ROC curve
with the alert band's operating point, and the binned calibration curve."""

from __future__ import annotations

import io
from collections.abc import Sequence

from matplotlib.figure import Figure  # a Figure without pyplot: no display, no global state

from cdsflow.evaluation.classifier_metrics import CalibrationBin, RocPoint

SIZE_IN = (4.6, 4.2)


def _svg(figure: Figure) -> str:
    figure.tight_layout()
    text = io.StringIO()
    figure.savefig(text, format="svg", metadata={"Date": None})
    svg = text.getvalue()
    return svg[svg.index("<svg") :]  # inline: no XML prolog or doctype


def roc_plot_svg(
    curve: Sequence[RocPoint], operating_point: tuple[float, float], auroc: float | None, title: str
) -> str:
    """`operating_point`: (1 - specificity, sensitivity) at the alert band."""
    figure = Figure(figsize=SIZE_IN)
    axes = figure.add_subplot()
    axes.plot([0, 1], [0, 1], linestyle=":", color="grey", label="chance")
    label = "ROC" if auroc is None else f"ROC (AUROC {auroc:.3f})"
    axes.plot(
        [p.false_positive_rate for p in curve], [p.true_positive_rate for p in curve], label=label
    )
    axes.plot(*operating_point, marker="o", color="crimson", linestyle="", label="alert band")
    axes.set(xlabel="1 - specificity", ylabel="sensitivity", xlim=(0, 1), ylim=(0, 1), title=title)
    axes.legend(loc="lower right")
    return _svg(figure)


def calibration_plot_svg(bins: Sequence[CalibrationBin], title: str) -> str:
    figure = Figure(figsize=SIZE_IN)
    axes = figure.add_subplot()
    top = max([0.05] + [max(b.mean_predicted, b.observed_rate) for b in bins]) * 1.05
    top = min(top, 1.0)
    axes.plot([0, top], [0, top], linestyle=":", color="grey", label="perfect calibration")
    axes.plot(
        [b.mean_predicted for b in bins],
        [b.observed_rate for b in bins],
        marker="o",
        label=f"{len(bins)} equal-count bins",
    )
    axes.set(
        xlabel="mean predicted risk",
        ylabel="observed rate",
        xlim=(0, top),
        ylim=(0, top),
        title=title,
    )
    axes.legend(loc="upper left")
    return _svg(figure)
