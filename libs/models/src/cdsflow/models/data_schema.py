"""The FHIR data an adapter reads (`data:`), and how it becomes tensor columns (`inputs:`)."""

from __future__ import annotations

import re
from datetime import timedelta
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, StringConstraints

from cdsflow.models.plausible_ranges import PlausibleRange

_DURATION = re.compile(r"(\d+(?:\.\d+)?)\s*(min|h|d|wk)")
_DURATION_UNITS = {"min": "minutes", "h": "hours", "d": "days", "wk": "weeks"}


def _duration(value: object) -> timedelta:
    """`24h`, `90d`, `30min`, `2wk` as a timedelta."""
    if isinstance(value, timedelta):
        return value
    match = _DURATION.fullmatch(value.strip()) if isinstance(value, str) else None
    if match is None:
        raise ValueError("a duration is a number and a unit: 30min, 24h, 90d or 2wk")
    amount = float(match.group(1))
    if amount <= 0:
        raise ValueError("a window must be longer than zero")
    return timedelta(**{_DURATION_UNITS[match.group(2)]: amount})


def text_from_number(value: object) -> object:
    """A version or code written as a bare YAML number (`1`, `6809`) is still text."""
    return str(value) if isinstance(value, int) and not isinstance(value, bool) else value


Duration = Annotated[timedelta, BeforeValidator(_duration)]
Name = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]{0,63}$")]
TensorName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z_][A-Za-z0-9_.\-]{0,127}$")]
# a FHIR token: system|code, e.g. http://loinc.org|8867-4
CodeToken = Annotated[
    str,
    BeforeValidator(text_from_number),
    StringConstraints(pattern=r"^[^|\s]+\|[^|\s]+$"),
]

OBSERVATION_STATUSES = ("final", "amended", "corrected", "preliminary")


class Declared(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class ObservationData(Declared):
    """Observations with one of `codes` (on the Observation or one of its components)."""

    resource: Literal["Observation"]
    label: str
    codes: list[CodeToken] = Field(min_length=1)
    # the unit the model wants (UCUM); values in `accept_units` are converted to it
    unit: str
    accept_units: list[str] = Field(default_factory=list)
    # how the unit is written on a card ("mmHg", "°C"); the UCUM code when absent
    display_unit: str | None = None
    # only values observed within this span before the "as of" time count
    window: Duration | None = None
    statuses: list[str] = Field(default=list(OBSERVATION_STATUSES), min_length=1)
    plausible_range: PlausibleRange


class MedicationRequestData(Declared):
    """MedicationRequests for one of `codes` (medicationCodeableConcept) in `statuses`."""

    resource: Literal["MedicationRequest"]
    label: str
    codes: list[CodeToken] = Field(min_length=1)
    statuses: list[str] = Field(default=["active"], min_length=1)
    # only requests authored within this span count; absent: whenever authored
    window: Duration | None = None


class PatientAgeData(Declared):
    """The patient's age in years at the "as of" time, from Patient.birthDate."""

    resource: Literal["Patient"]
    label: str = "Age"
    element: Literal["birthDate"] = "birthDate"
    unit: Literal["a"] = "a"
    display_unit: str | None = "years"
    plausible_range: PlausibleRange = PlausibleRange(low=0, high=130)


DataFeed = Annotated[
    ObservationData | MedicationRequestData | PatientAgeData, Field(discriminator="resource")
]


class Aggregation(StrEnum):
    """How the values of one data feed within its window become one number."""

    LATEST = "latest"
    EARLIEST = "earliest"
    MIN = "min"
    MAX = "max"
    MEAN = "mean"
    # latest minus earliest; present only with at least `min_values` (default 2) values
    TREND = "trend"
    COUNT = "count"
    # 1 when at least one matching resource is in the context, else 0 (always present)
    EXISTS = "exists"


AGGREGATIONS_BY_RESOURCE: dict[str, frozenset[Aggregation]] = {
    "Observation": frozenset(Aggregation) - {Aggregation.EXISTS},
    "MedicationRequest": frozenset({Aggregation.EXISTS, Aggregation.COUNT}),
    "Patient": frozenset({Aggregation.LATEST}),
}


class TensorColumn(Declared):
    """One column of an input tensor (or one value a prompt may use)."""

    name: Name
    data: Name
    aggregation: Aggregation = Aggregation.LATEST
    # values needed for the column to be present (default: 2 for a trend, else 1)
    min_values: int | None = Field(default=None, ge=1)
    # a required column that is not observed means the model is not called at all
    required: bool = False

    @property
    def values_needed(self) -> int:
        if self.min_values is not None:
            return self.min_values
        return 2 if self.aggregation is Aggregation.TREND else 1


class InputTensor(Declared):
    """A numeric input tensor [batch, len(columns)], and its presence mask beside it."""

    name: TensorName
    datatype: Literal["FP32", "FP64"] = "FP32"
    # BOOL [batch, len(columns)]: false where a column was not observed (its value is 0)
    presence_tensor: TensorName | None = None
    columns: list[TensorColumn] = Field(min_length=1)


class PromptInput(Declared):
    """A generative model's input: one BYTES tensor holding the prompt built from `template`."""

    tensor: TensorName
    columns: list[TensorColumn] = Field(default_factory=list)
    template: str
    max_chars: int = Field(default=16000, ge=1)
    # sent to Triton as request parameters (max_tokens, temperature, ...)
    parameters: dict[str, str | int | float | bool] = Field(default_factory=dict)


class InputsDeclaration(Declared):
    tensors: list[InputTensor] = Field(default_factory=list)
    prompt: PromptInput | None = None
