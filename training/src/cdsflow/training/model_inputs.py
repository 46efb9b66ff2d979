"""The columns of the `deterioration_risk` model's input tensors, in order.

`features` FP32 [batch, 15] and `present` BOOL [batch, 15] share this layout, and so does the
`contributions` output:

- columns 0-6: the latest value of each NEWS2 parameter in the window (respiratory rate /min,
  SpO2 %, inhaled oxygen %, systolic blood pressure mm[Hg], heart rate /min, temperature Cel,
  GCS);
- columns 7-13: each parameter's trend, the latest value minus the earliest value observed
  in the 24 h before the prediction (same unit as the parameter; present only when the
  parameter was observed at least twice in the window);
- column 14: age in years at the prediction.
"""

from __future__ import annotations

from dataclasses import dataclass

TREND_WINDOW_HOURS = 24.0
MODEL_NAME = "deterioration_risk"


@dataclass(frozen=True)
class VitalSign:
    name: str
    unit: str  # UCUM
    loinc: str


VITAL_SIGNS: tuple[VitalSign, ...] = (
    VitalSign("respiratory_rate", "/min", "9279-1"),
    VitalSign("oxygen_saturation", "%", "59408-5"),
    VitalSign("inhaled_oxygen_concentration", "%", "3150-0"),
    VitalSign("systolic_blood_pressure", "mm[Hg]", "8480-6"),
    VitalSign("heart_rate", "/min", "8867-4"),
    VitalSign("body_temperature", "Cel", "8310-5"),
    VitalSign("glasgow_coma_score", "{score}", "9269-2"),
)
VITAL_SIGN_NAMES: tuple[str, ...] = tuple(v.name for v in VITAL_SIGNS)
TREND_NAMES: tuple[str, ...] = tuple(f"{name}_trend" for name in VITAL_SIGN_NAMES)
AGE = "age"
INPUT_NAMES: tuple[str, ...] = (*VITAL_SIGN_NAMES, *TREND_NAMES, AGE)
INPUT_UNITS: tuple[str, ...] = (*(v.unit for v in VITAL_SIGNS), *(v.unit for v in VITAL_SIGNS), "a")
N_INPUTS = len(INPUT_NAMES)
AGE_COLUMN = INPUT_NAMES.index(AGE)


def trend_column(vital_sign: str) -> int:
    """The column of a vital sign's trend."""
    return len(VITAL_SIGNS) + VITAL_SIGN_NAMES.index(vital_sign)
