"""The vital signs the deterioration model reads: LOINC codes, UCUM units, conversions and
the range of values each can have (`domain/plausible_ranges.py`).

The order of `VITAL_SIGNS` is the column order of the model's `vital_signs` input tensor.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime

from cdsflow.reasoner.domain.plausible_ranges import Implausibility, PlausibleRange, RefusedReading

LOINC = "http://loinc.org"
# The blood pressure panel; its systolic component is read like a standalone 8480-6.
BLOOD_PRESSURE_PANEL = "85354-9"


@dataclass(frozen=True)
class VitalSign:
    """One model input: where to find it (LOINC codes), in which unit the model wants it, and
    which values (in that unit, after conversion) it can have."""

    name: str
    label: str
    codes: tuple[str, ...]
    unit: str
    plausible: PlausibleRange
    # UCUM code -> conversion to `unit`; `unit` itself converts as identity
    conversions: Mapping[str, Callable[[float], float]] = field(default_factory=dict)

    def implausibility(self, value: float) -> Implausibility | None:
        """Why `value` (in `unit`) cannot be this vital sign, or None when it can."""
        return self.plausible.implausibility(value)

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

# Plausible ranges: what a living patient's measurement can be, not what is normal. Sources:
# - respiratory rate: 0 is apnoea; spontaneous rates stay far below 150 /min (newborns
#   breathe 30-60 /min, and severe neonatal tachypnoea rarely exceeds 100-120 /min);
# - oxygen saturation and inhaled oxygen: fractions, 0-100 % by definition (inhaled mixtures
#   below the 21 % of room air exist, e.g. hypoxic gas in paediatric cardiology);
# - systolic pressure: 0 in circulatory arrest; intra-arterial peaks of about 480 mmHg were
#   recorded during maximal weight lifting (MacDougall et al., J Appl Physiol 1985), so 500;
# - heart rate: 0 is asystole; the fastest reported human ventricular rate is about 600 /min
#   (pre-excited atrial fibrillation, Chhabra et al., Indian Pacing Electrophysiol J 2012);
# - body temperature: patients have survived core temperatures of 13.7 Cel (accidental
#   hypothermia, Gilbert et al., Lancet 2000) and 46.5 Cel (heat stroke, 1980); 10-50 Cel
#   leaves a margin on both sides;
# - Glasgow coma score: 3-15, the bounds of the scale itself (Teasdale & Jennett, Lancet 1974).
VITAL_SIGNS: tuple[VitalSign, ...] = (
    VitalSign(
        "respiratory_rate",
        "Respiratory rate",
        ("9279-1",),
        "/min",
        PlausibleRange(0, 150),
        _PER_MINUTE_ALIASES,
    ),
    VitalSign(
        "oxygen_saturation",
        "Oxygen saturation",
        ("59408-5", "2708-6"),
        "%",
        PlausibleRange(0, 100),
    ),
    VitalSign(
        "inhaled_oxygen_concentration",
        "Inhaled oxygen concentration",
        ("3150-0",),
        "%",
        PlausibleRange(0, 100),
    ),
    VitalSign(
        "systolic_blood_pressure",
        "Systolic blood pressure",
        ("8480-6",),
        "mm[Hg]",
        PlausibleRange(0, 500),
        {"kPa": _kilopascal_to_mm_hg},
    ),
    VitalSign(
        "heart_rate",
        "Heart rate",
        ("8867-4",),
        "/min",
        PlausibleRange(0, 600),
        _BEATS_ALIASES,
    ),
    VitalSign(
        "body_temperature",
        "Body temperature",
        ("8310-5",),
        "Cel",
        PlausibleRange(10, 50),
        {"[degF]": _fahrenheit_to_celsius},
    ),
    VitalSign(
        "glasgow_coma_score",
        "Glasgow coma score",
        ("9269-2",),
        "{score}",
        PlausibleRange(3, 15, whole=True),
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


def refusal_rule(refused: RefusedReading) -> str:
    """The rule a refused reading broke, naming the vital sign and never its value."""
    vital_sign = VITAL_SIGN_BY_NAME[refused.vital_sign]
    bounds = f"{vital_sign.plausible.low:g}-{vital_sign.plausible.high:g} {vital_sign.unit}"
    rules = {
        Implausibility.NOT_FINITE: "is not a finite number",
        Implausibility.NOT_FLOAT32: "is beyond the range of a 32-bit float",
        Implausibility.BELOW_RANGE: f"is below its plausible range ({bounds})",
        Implausibility.ABOVE_RANGE: f"is above its plausible range ({bounds})",
        Implausibility.NOT_WHOLE: "is not a whole number of points",
    }
    return f"{vital_sign.name} {rules[refused.reason]}"
