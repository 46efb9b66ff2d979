"""The adapter between a patient's context and the `deterioration_score` model's tensors.

Input tensors (one row per request):
  vital_signs  FP32 [1, 7]  the readings in `VITAL_SIGNS` order, in the model's units
  present      BOOL [1, 7]  False where the vital sign has no reading (its value is 0)
Output tensors:
  deterioration_score   FP32 [1, 1]  in [0, 1]
  early_warning_points  FP32 [1, 1]  NEWS2-style aggregate
  vital_sign_points     FP32 [1, 7]  points per vital sign
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from cdsflow.reasoner.domain.errors import ImplausibleVitalSign, UnprocessableEvent
from cdsflow.reasoner.domain.patient_context import PatientContext
from cdsflow.reasoner.domain.plausible_ranges import RefusedReading
from cdsflow.reasoner.domain.vital_signs import VITAL_SIGNS

VITAL_SIGNS_INPUT = "vital_signs"
PRESENT_INPUT = "present"
DETERIORATION_SCORE_OUTPUT = "deterioration_score"
EARLY_WARNING_POINTS_OUTPUT = "early_warning_points"
VITAL_SIGN_POINTS_OUTPUT = "vital_sign_points"
OUTPUT_NAMES = (
    DETERIORATION_SCORE_OUTPUT,
    EARLY_WARNING_POINTS_OUTPUT,
    VITAL_SIGN_POINTS_OUTPUT,
)


@dataclass(frozen=True)
class ModelInputs:
    vital_signs: npt.NDArray[np.float32]
    present: npt.NDArray[np.bool_]

    def as_tensors(self) -> dict[str, npt.NDArray[np.float32] | npt.NDArray[np.bool_]]:
        return {VITAL_SIGNS_INPUT: self.vital_signs, PRESENT_INPUT: self.present}


@dataclass(frozen=True)
class ModelOutputs:
    deterioration_score: float
    early_warning_points: float
    # points per vital sign name, every vital sign present (0 when missing)
    vital_sign_points: Mapping[str, float]


def model_inputs(context: PatientContext) -> ModelInputs:
    """One row: each vital sign's value (0 when missing) and whether it was observed.

    The last guard before the model: a value outside its plausible range (which includes
    every non-finite value and every value beyond float32) raises `ImplausibleVitalSign`, so
    the tensor is always finite, whichever way the context was built.
    """
    values = np.zeros((1, len(VITAL_SIGNS)), dtype=np.float32)
    present = np.zeros((1, len(VITAL_SIGNS)), dtype=np.bool_)
    for column, vital_sign in enumerate(VITAL_SIGNS):
        reading = context.readings.get(vital_sign.name)
        if reading is None:
            continue
        reason = vital_sign.implausibility(reading.value)
        if reason is not None:
            raise ImplausibleVitalSign([RefusedReading(vital_sign.name, reason)])
        values[0, column] = reading.value
        present[0, column] = True
    return ModelInputs(vital_signs=values, present=present)


def model_outputs(tensors: Mapping[str, npt.NDArray[np.float32] | None]) -> ModelOutputs:
    """Read the first row of the model's outputs; a missing or malformed one is an error."""
    score = _row(tensors, DETERIORATION_SCORE_OUTPUT, 1)
    points = _row(tensors, EARLY_WARNING_POINTS_OUTPUT, 1)
    per_vital_sign = _row(tensors, VITAL_SIGN_POINTS_OUTPUT, len(VITAL_SIGNS))
    deterioration_score = float(score[0])
    if not 0.0 <= deterioration_score <= 1.0:
        raise ModelContractError("deterioration_score is outside [0, 1]")
    return ModelOutputs(
        deterioration_score=deterioration_score,
        early_warning_points=float(points[0]),
        vital_sign_points={
            vital_sign.name: float(per_vital_sign[column])
            for column, vital_sign in enumerate(VITAL_SIGNS)
        },
    )


class ModelContractError(UnprocessableEvent):
    """The model answered with outputs this adapter does not understand."""


def _row(
    tensors: Mapping[str, npt.NDArray[np.float32] | None], name: str, width: int
) -> npt.NDArray[np.float32]:
    tensor = tensors.get(name)
    if tensor is None:
        raise ModelContractError(f"the model returned no {name}")
    array = np.asarray(tensor, dtype=np.float32)
    if array.ndim != 2 or array.shape[1] != width or array.shape[0] < 1:
        raise ModelContractError(f"{name} has shape {array.shape}, expected [1, {width}]")
    if not np.all(np.isfinite(array[0])):
        raise ModelContractError(f"{name} is not finite")
    row: npt.NDArray[np.float32] = array[0]
    return row
