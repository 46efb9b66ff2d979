"""The model's output tensors, read as the adapter declares them: the score and its band,
other named values, each input's contribution, or the generated text; and the basis of the
result (which inputs, which values, measured when)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from cdsflow.models.adapter_schema import ModelAdapter
from cdsflow.models.card_schema import RiskBand
from cdsflow.models.feature_extraction import ColumnValue
from cdsflow.models.risk_bands import band_of
from cdsflow.models.tensors import ModelInputs


class ModelContractError(ValueError):
    """The model answered with outputs that the adapter does not describe."""


@dataclass(frozen=True)
class InputBasis:
    """An observed input and, when the model reports it, how much it moved the score."""

    column: ColumnValue
    contribution: float | None


@dataclass(frozen=True)
class ModelResult:
    score: float | None
    band: RiskBand | None
    values: Mapping[str, float]
    # the observed inputs, the largest contribution first when there are contributions
    basis: tuple[InputBasis, ...]
    missing: tuple[ColumnValue, ...]
    generated_text: str | None = None

    @property
    def indicator(self) -> str | None:
        return self.band.indicator if self.band is not None else None


def interpret_outputs(
    adapter: ModelAdapter,
    inputs: ModelInputs,
    tensors: Mapping[str, npt.NDArray[Any] | None],
    row: int = 0,
) -> ModelResult:
    """Row `row` of each declared output (the patient's row in a batch the caller stacked);
    a missing, misshapen, non-finite or out-of-range output raises `ModelContractError`."""
    outputs = adapter.outputs
    score = band = None
    if outputs.score is not None:
        score = float(_row(tensors, outputs.score.tensor, 1, row)[0])
        if outputs.score.range is not None:
            low, high = outputs.score.range
            if not low <= score <= high:
                raise ModelContractError(f"{outputs.score.tensor} is outside [{low:g}, {high:g}]")
        band = band_of(adapter.risk_bands, score)
    values = {named.name: float(_row(tensors, named.tensor, 1, row)[0]) for named in outputs.values}
    contributions: dict[str, float] = {}
    if outputs.contributions is not None:
        tensor = next(
            t for t in adapter.inputs.tensors if t.name == outputs.contributions.input_tensor
        )
        terms = _row(tensors, outputs.contributions.tensor, len(tensor.columns), row)
        contributions = {column.name: terms[i] for i, column in enumerate(tensor.columns)}
    observed = [c for c in inputs.extracted.columns if c.present]
    basis = [InputBasis(c, contributions.get(c.column.name)) for c in observed]
    if contributions:
        basis.sort(key=lambda item: -(item.contribution or 0.0))
    generated = None
    if outputs.generated_text is not None:
        generated = _text(tensors, outputs.generated_text.tensor, row)[
            : outputs.generated_text.max_chars
        ]
    return ModelResult(
        score=score,
        band=band,
        values=values,
        basis=tuple(basis),
        missing=tuple(inputs.extracted.missing()),
        generated_text=generated,
    )


def _row(
    tensors: Mapping[str, npt.NDArray[Any] | None], name: str, width: int, row: int
) -> list[float]:
    tensor = tensors.get(name)
    if tensor is None:
        raise ModelContractError(f"the model returned no {name}")
    array = np.asarray(tensor, dtype=np.float64)
    if array.ndim == 1:
        array = array.reshape(1, -1)
    if array.ndim != 2 or array.shape[0] <= row or array.shape[1] != width:
        raise ModelContractError(
            f"{name} has shape {tensor.shape}, expected [{row + 1} or more, {width}]"
        )
    # a row is a few numbers: Python floats are checked faster than a numpy reduction
    values: list[float] = array[row].tolist()
    if not all(map(math.isfinite, values)):
        raise ModelContractError(f"{name} is not finite")
    return values


def _text(tensors: Mapping[str, npt.NDArray[Any] | None], name: str, row: int) -> str:
    tensor = tensors.get(name)
    flat = np.asarray(tensor, dtype=np.object_).reshape(-1) if tensor is not None else None
    if flat is None or flat.size <= row:
        raise ModelContractError(f"the model returned no {name}")
    first = flat[row]
    if isinstance(first, bytes):
        try:
            return first.decode("utf-8").strip()
        except UnicodeDecodeError:
            raise ModelContractError(f"{name} is not UTF-8 text") from None
    if isinstance(first, str):
        return first.strip()
    raise ModelContractError(f"{name} is not text")
