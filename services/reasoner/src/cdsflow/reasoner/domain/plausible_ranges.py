"""Which values a vital sign can have at all: anything else is refused, never scored.

A range is deliberately wide. It refuses what cannot be a measurement of a living patient
(a negative rate, a saturation above 100 %, a body at absolute zero, a number that is not a
number) and keeps what is merely alarming: refusing a real extreme reading would cost the
patient the card that it should have produced.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import StrEnum

# The largest finite 32-bit float (the model's FP32 input); beyond it a value becomes inf.
FLOAT32_MAX = 3.4028234663852886e38


class Implausibility(StrEnum):
    """Why a reading was refused; the value of the `reason` metric label."""

    NOT_FINITE = "not-finite"
    NOT_FLOAT32 = "not-float32"
    BELOW_RANGE = "below-range"
    ABOVE_RANGE = "above-range"
    NOT_WHOLE = "not-whole"


@dataclass(frozen=True)
class PlausibleRange:
    """The closed interval [low, high] of possible values, in the model's unit.

    Both bounds are small whole numbers, exact in float32, so a value inside the range is
    still inside it after the model's float32 rounding.
    """

    low: float
    high: float
    # a score counted in whole points (the Glasgow coma score): 13.5 is no reading
    whole: bool = False

    def implausibility(self, value: float) -> Implausibility | None:
        """Why `value` cannot be used, or None when it can."""
        if not math.isfinite(value):
            return Implausibility.NOT_FINITE
        if abs(value) > FLOAT32_MAX:
            return Implausibility.NOT_FLOAT32
        if value < self.low:
            return Implausibility.BELOW_RANGE
        if value > self.high:
            return Implausibility.ABOVE_RANGE
        if self.whole and not float(value).is_integer():
            return Implausibility.NOT_WHOLE
        return None


@dataclass(frozen=True)
class RefusedReading:
    """A reading left out as implausible: which vital sign and why, never its value."""

    vital_sign: str
    reason: Implausibility
