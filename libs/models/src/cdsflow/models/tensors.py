"""The model's input tensors for one patient: one row per tensor, values and presence mask.

A column that was not observed is 0 in its value tensor and `false` in the presence tensor,
so the model knows it is missing; a tensor declared without a presence mask has only
required columns, and a missing required column means the model is not called at all.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

import numpy as np
import numpy.typing as npt

from cdsflow.models.adapter_schema import ModelAdapter
from cdsflow.models.feature_extraction import (
    ExtractedInputs,
    Reading,
    extract_from_readings,
    extract_inputs,
)
from cdsflow.models.prompts import render_prompt

_DTYPES = {"FP32": np.float32, "FP64": np.float64}


class MissingRequiredInputs(ValueError):
    """Columns the adapter marks required were not observed: the model is not called."""

    def __init__(self, columns: list[str]) -> None:
        self.columns = columns
        super().__init__(f"required inputs not observed: {', '.join(columns)}")


@dataclass(frozen=True)
class ModelInputs:
    """What goes to Triton (`tensors`, each [1, width]) and what it was made from."""

    extracted: ExtractedInputs
    tensors: Mapping[str, npt.NDArray[Any]]


def build_model_inputs(
    adapter: ModelAdapter, resources: Iterable[Mapping[str, Any]], as_of: datetime
) -> ModelInputs:
    """The input tensors for one patient as of `as_of`.

    Raises `MissingRequiredInputs` when a required column was not observed.
    """
    extracted = extract_inputs(adapter, resources, as_of)
    missing = extracted.missing_required()
    if missing:
        raise MissingRequiredInputs(missing)
    return ModelInputs(extracted=extracted, tensors=input_tensors(adapter, extracted))


def inputs_from_readings(
    adapter: ModelAdapter,
    readings: Mapping[str, Sequence[Reading]],
    as_of: datetime,
    *,
    birth_date: date | None = None,
    patient_reference: str = "Patient/",
) -> ModelInputs:
    """The input tensors for one patient as of `as_of`, from the readings kept per data feed
    (`ResourceReader`) and the birth date, instead of from the resources themselves.

    Raises `MissingRequiredInputs` when a required column was not observed.
    """
    extracted = extract_from_readings(
        adapter, readings, as_of, birth_date=birth_date, patient_reference=patient_reference
    )
    missing = extracted.missing_required()
    if missing:
        raise MissingRequiredInputs(missing)
    return ModelInputs(extracted=extracted, tensors=input_tensors(adapter, extracted))


def input_tensors(adapter: ModelAdapter, extracted: ExtractedInputs) -> dict[str, npt.NDArray[Any]]:
    tensors: dict[str, npt.NDArray[Any]] = {}
    values_by_column = {value.column.name: value.value for value in extracted.columns}
    for tensor in adapter.inputs.tensors:
        values = np.zeros((1, len(tensor.columns)), dtype=_DTYPES[tensor.datatype])
        present = np.zeros((1, len(tensor.columns)), dtype=np.bool_)
        for index, column in enumerate(tensor.columns):
            value = values_by_column[column.name]
            if value is not None:
                values[0, index] = value
                present[0, index] = True
        tensors[tensor.name] = values
        if tensor.presence_tensor is not None:
            tensors[tensor.presence_tensor] = present
    prompt = adapter.inputs.prompt
    if prompt is not None:
        text = render_prompt(adapter, extracted)
        tensors[prompt.tensor] = np.array([[text.encode("utf-8")]], dtype=np.object_)
    return tensors


def stacked_tensors(rows: Sequence[ModelInputs]) -> dict[str, npt.NDArray[Any]]:
    """Several patients' tensors as one batch, row i being `rows[i]` (read the answer back
    with `interpret_outputs(..., row=i)`)."""
    if not rows:
        raise ValueError("no rows to stack")
    return {
        name: np.concatenate([inputs.tensors[name] for inputs in rows], axis=0)
        for name in rows[0].tensors
    }
