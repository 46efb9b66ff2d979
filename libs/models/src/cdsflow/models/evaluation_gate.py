"""Whether measured performance meets an adapter's declared evaluation gate.

`cdsflow evaluate` measures; this says which declared bound each figure misses, so that the
report and the exit status come from the adapter file, not from code.
"""

from __future__ import annotations

from dataclasses import dataclass

from cdsflow.models.card_schema import EvaluationGate


@dataclass(frozen=True)
class MeasuredPerformance:
    """Figures on a labelled evaluation set, alerts counted from the adapter's alert band."""

    auroc: float
    sensitivity: float
    ppv: float
    alerts_per_100_patient_days: float
    calibration_slope: float


def gate_failures(gate: EvaluationGate, measured: MeasuredPerformance) -> list[str]:
    """One sentence per declared bound that `measured` misses; empty when the gate passes."""
    failures = []
    floors = (
        ("AUROC", gate.min_auroc, measured.auroc),
        ("sensitivity", gate.min_sensitivity, measured.sensitivity),
        ("PPV", gate.min_ppv, measured.ppv),
    )
    for name, floor, value in floors:
        if floor is not None and not value >= floor:
            failures.append(f"{name} {value:.3f} is below the gate's {floor:.3f}")
    ceiling = gate.max_alerts_per_100_patient_days
    if ceiling is not None and not measured.alerts_per_100_patient_days <= ceiling:
        failures.append(
            f"{measured.alerts_per_100_patient_days:.1f} alerts per 100 patient-days exceed "
            f"the gate's {ceiling:g}"
        )
    if gate.calibration_slope_between is not None:
        low, high = gate.calibration_slope_between
        if not low <= measured.calibration_slope <= high:
            failures.append(
                f"calibration slope {measured.calibration_slope:.2f} is outside [{low:g}, {high:g}]"
            )
    return failures
