"""The held-out labelled evaluation set as JSON lines, one patient per line.

    {"patient": "heldout-0001", "age": 71, "sex": "female",
     "observations": {"respiratory_rate": [[17.3, 18.0], [0.7, 24.0]], ...},
     "deteriorated_within_24h": false}

`observations` maps each charted parameter (the names of `model_inputs.VITAL_SIGNS`, in
their UCUM units) to its values as `[hours before the prediction, value]`, oldest first;
a parameter that was not charted is absent; `age` is null when unknown. The model's inputs
are derived from it as `model_inputs` documents: the latest value, and the latest minus the
earliest value within `TREND_WINDOW_HOURS` when there are two or more.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from cdsflow.training.model_inputs import (
    AGE_COLUMN,
    N_INPUTS,
    TREND_WINDOW_HOURS,
    VITAL_SIGN_NAMES,
    trend_column,
)
from cdsflow.training.synthetic_cohort import SyntheticCohort


@dataclass(frozen=True)
class LabelledRows:
    patient_ids: tuple[str, ...]
    sex: tuple[str, ...]
    features: npt.NDArray[np.float32]
    present: npt.NDArray[np.bool_]
    deteriorated: npt.NDArray[np.bool_]


def _patient_record(cohort: SyntheticCohort, row: int) -> dict[str, Any]:
    observations: dict[str, list[list[float]]] = {}
    for column, name in enumerate(VITAL_SIGN_NAMES):
        charted = []
        if cohort.earlier_present[row, column]:
            charted.append(
                [_hours(cohort.earlier_hours_before, row), _value(cohort.earlier, row, column)]
            )
        if cohort.latest_present[row, column]:
            charted.append(
                [_hours(cohort.latest_hours_before, row), _value(cohort.latest, row, column)]
            )
        if charted:
            observations[name] = charted
    age = float(cohort.age[row])
    return {
        "patient": cohort.patient_ids[row],
        "age": None if math.isnan(age) else int(age),
        "sex": cohort.sex[row],
        "observations": observations,
        "deteriorated_within_24h": bool(cohort.deteriorated[row]),
    }


def _hours(hours: npt.NDArray[np.float32], row: int) -> float:
    return round(float(hours[row]), 1)


def _value(values: npt.NDArray[np.float32], row: int, column: int) -> float:
    return round(float(values[row, column]), 1)


def write_evaluation_set(cohort: SyntheticCohort, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as out:
        for row in range(len(cohort)):
            out.write(json.dumps(_patient_record(cohort, row), separators=(",", ":")) + "\n")


def model_inputs_of(record: dict[str, Any]) -> tuple[list[float], list[bool]]:
    """One patient's `features` and `present` rows (15 each) from its record."""
    features = [0.0] * N_INPUTS
    present = [False] * N_INPUTS
    for column, name in enumerate(VITAL_SIGN_NAMES):
        in_window = sorted(
            (
                pair
                for pair in record["observations"].get(name, ())
                if pair[0] <= TREND_WINDOW_HOURS
            ),
            key=lambda pair: -pair[0],
        )
        if in_window:
            features[column], present[column] = in_window[-1][1], True
        if len(in_window) >= 2:
            trend = trend_column(name)
            features[trend] = in_window[-1][1] - in_window[0][1]
            present[trend] = True
    if record["age"] is not None:
        features[AGE_COLUMN], present[AGE_COLUMN] = float(record["age"]), True
    return features, present


def read_evaluation_set(path: Path) -> LabelledRows:
    ids, sexes, features, present, outcome = [], [], [], [], []
    with path.open(encoding="utf-8") as lines:
        for line in lines:
            record = json.loads(line)
            row, observed = model_inputs_of(record)
            ids.append(record["patient"])
            sexes.append(record["sex"])
            features.append(row)
            present.append(observed)
            outcome.append(bool(record["deteriorated_within_24h"]))
    return LabelledRows(
        patient_ids=tuple(ids),
        sex=tuple(sexes),
        features=np.array(features, dtype=np.float32).reshape(-1, N_INPUTS),
        present=np.array(present, dtype=bool).reshape(-1, N_INPUTS),
        deteriorated=np.array(outcome, dtype=bool),
    )
