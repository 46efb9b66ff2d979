"""The vital signs the deterioration model reads: LOINC codes, UCUM units, conversions.

The order of `VITAL_SIGNS` is the column order of the model's `vital_signs` input tensor.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime

LOINC = "http://loinc.org"
# The blood pressure panel; its systolic component is read like a standalone 8480-6.
BLOOD_PRESSURE_PANEL = "85354-9"


@dataclass(frozen=True)
class VitalSign:
    """One model input: where to find it (LOINC codes) and in which unit the model wants it."""

    name: str
    label: str
    codes: tuple[str, ...]
    unit: str
    # UCUM code -> conversion to `unit`; `unit` itself converts as identity
    conversions: Mapping[str, Callable[[float], float]] = field(default_factory=dict)

    def to_model_unit(self, value: float, ucum_code: str) -> float | None:
        """The value in `unit`, or None when the unit is not one this vital sign accepts."""
        if ucum_code == self.unit:
            return value
        convert = self.conversions.get(ucum_code)
        return convert(value) if convert is not None else None


def _identity(value: float) -> float:
    return value


def _fahrenheit_to_celsius(value: float) -> float:
    return (value - 32.0) * 5.0 / 9.0


def _kilopascal_to_mm_hg(value: float) -> float:
    return value * 7.50062


_PER_MINUTE_ALIASES = {"{breaths}/min": _identity, "{Breaths}/min": _identity}
_BEATS_ALIASES = {"{beats}/min": _identity, "{Beats}/min": _identity}

VITAL_SIGNS: tuple[VitalSign, ...] = (
    VitalSign("respiratory_rate", "Respiratory rate", ("9279-1",), "/min", _PER_MINUTE_ALIASES),
    VitalSign("oxygen_saturation", "Oxygen saturation", ("59408-5", "2708-6"), "%"),
    VitalSign("inhaled_oxygen_concentration", "Inhaled oxygen concentration", ("3150-0",), "%"),
    VitalSign(
        "systolic_blood_pressure",
        "Systolic blood pressure",
        ("8480-6",),
        "mm[Hg]",
        {"kPa": _kilopascal_to_mm_hg},
    ),
    VitalSign("heart_rate", "Heart rate", ("8867-4",), "/min", _BEATS_ALIASES),
    VitalSign(
        "body_temperature",
        "Body temperature",
        ("8310-5",),
        "Cel",
        {"[degF]": _fahrenheit_to_celsius},
    ),
    VitalSign(
        "glasgow_coma_score",
        "Glasgow coma score",
        ("9269-2",),
        "{score}",
        {"1": _identity, "": _identity},  # a score may come without a unit
    ),
)

VITAL_SIGN_BY_CODE: dict[str, VitalSign] = {
    code: vital_sign for vital_sign in VITAL_SIGNS for code in vital_sign.codes
}
VITAL_SIGN_BY_NAME: dict[str, VitalSign] = {
    vital_sign.name: vital_sign for vital_sign in VITAL_SIGNS
}

# Every Observation code worth fetching from the EHR: the vital signs and the BP panel.
OBSERVATION_CODES: tuple[str, ...] = (
    *(code for vital_sign in VITAL_SIGNS for code in vital_sign.codes),
    BLOOD_PRESSURE_PANEL,
)


@dataclass(frozen=True)
class VitalSignReading:
    """One observed value of one vital sign, in the model's unit."""

    name: str
    # the LOINC code it was recorded under (e.g. 59408-5 or 2708-6)
    code: str
    value: float
    unit: str
    # "Observation/<id>"
    resource_reference: str
    observed_at: datetime
