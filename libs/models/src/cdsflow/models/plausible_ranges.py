"""Which values an input can have at all; anything else is refused with a reason, never fed.

A range says what a measurement of a living patient can be, not what is normal: refusing a
real extreme reading would cost the patient the card that it should have produced.
"""

from __future__ import annotations

import math
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, model_validator

# The largest finite 32-bit float (FP32 tensors); beyond it a value becomes inf.
FLOAT32_MAX = 3.4028234663852886e38


class RefusalReason(StrEnum):
    """Why a value was not used; stable codes, fit for a metric label."""

    NOT_FINITE = "not-finite"
    NOT_FLOAT32 = "not-float32"
    BELOW_RANGE = "below-range"
    ABOVE_RANGE = "above-range"
    NOT_WHOLE = "not-whole"
    UNKNOWN_UNIT = "unknown-unit"
    NO_TIME = "no-time"


class PlausibleRange(BaseModel):
    """The closed interval [low, high] of possible values, in the input's model unit."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    low: float
    high: float
    # a score counted in whole points (the Glasgow coma score): 13.5 is no reading
    whole_numbers: bool = False

    @model_validator(mode="after")
    def _ordered(self) -> PlausibleRange:
        if not (math.isfinite(self.low) and math.isfinite(self.high)) or self.low > self.high:
            raise ValueError("low and high must be finite numbers with low <= high")
        return self

    def refusal(self, value: float) -> RefusalReason | None:
        """Why `value` cannot be used, or None when it can."""
        if not math.isfinite(value):
            return RefusalReason.NOT_FINITE
        if abs(value) > FLOAT32_MAX:
            return RefusalReason.NOT_FLOAT32
        if value < self.low:
            return RefusalReason.BELOW_RANGE
        if value > self.high:
            return RefusalReason.ABOVE_RANGE
        if self.whole_numbers and not float(value).is_integer():
            return RefusalReason.NOT_WHOLE
        return None
