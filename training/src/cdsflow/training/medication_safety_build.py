"""`python -m cdsflow.training medication-safety`: writes models/medication_safety from the
rule in `medication_rule` — its ONNX file and its model card.

Nothing is learned, so the seed does not shape the model: it draws the check sample. Before
the card is written, the ONNX file as written is run by onnxruntime on that sample (random
eGFR values and masks, NaNs, and every threshold with its float32 neighbours) and must agree
with the rule in numpy on every row; the card records how many rows were checked. The same
plan writes byte-identical files.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
import onnxruntime

from cdsflow.training.medication_model_card import render_medication_model_card
from cdsflow.training.medication_rule import (
    EGFR_COLUMN,
    EGFR_THRESHOLDS,
    METFORMIN_COLUMN,
    N_COLUMNS,
    OUTPUTS,
    rule_risk,
    to_onnx,
)

MODEL_FILE = Path("1") / "model.onnx"
MODEL_CARD_FILE = "MODEL_CARD.md"


@dataclass(frozen=True)
class MedicationSafetyPlan:
    model_dir: Path  # the Triton model directory, e.g. models/medication_safety
    seed: int = 20261130
    checked_rows: int = 20_000
    command: str = "make model"


class RuleMismatch(AssertionError):
    """The exported graph disagrees with the rule on some rows."""


@dataclass(frozen=True)
class CheckSample:
    features: npt.NDArray[np.float32]
    present: npt.NDArray[np.bool_]


def onnx_bytes(plan: MedicationSafetyPlan) -> bytes:
    metadata = {"seed": str(plan.seed), "checked_rows": str(plan.checked_rows)}
    return to_onnx(metadata).SerializeToString()


def check_sample(seed: int, rows: int) -> CheckSample:
    """Random rows, plus every threshold and its float32 neighbours with metformin ordered."""
    generator = np.random.default_rng(seed)
    egfr = generator.uniform(0.0, 150.0, rows).astype(np.float32)
    egfr[generator.random(rows) < 0.05] = np.nan
    metformin = generator.choice(np.array([0.0, 1.0, 0.3, 0.7], dtype=np.float32), rows)
    present = generator.random((rows, N_COLUMNS)) > 0.1
    edges = np.array(
        [
            edge
            for threshold in np.asarray(EGFR_THRESHOLDS, dtype=np.float32)
            for edge in (
                np.nextafter(threshold, np.float32(0)),
                threshold,
                np.nextafter(threshold, np.float32(np.inf)),
            )
        ],
        dtype=np.float32,
    )
    features = np.zeros((rows + len(edges), N_COLUMNS), dtype=np.float32)
    features[:rows, EGFR_COLUMN] = egfr
    features[:rows, METFORMIN_COLUMN] = metformin
    features[rows:, EGFR_COLUMN] = edges
    features[rows:, METFORMIN_COLUMN] = 1.0
    mask = np.ones((rows + len(edges), N_COLUMNS), dtype=np.bool_)
    mask[:rows] = present
    return CheckSample(features, mask)


def check_against_rule(model_file: Path, sample: CheckSample) -> int:
    """Rows on which the ONNX file agrees with the rule; `RuleMismatch` if any does not."""
    session = onnxruntime.InferenceSession(str(model_file), providers=["CPUExecutionProvider"])
    (served,) = session.run(list(OUTPUTS), {"features": sample.features, "present": sample.present})
    expected = rule_risk(sample.features, sample.present)
    wrong = np.flatnonzero(np.asarray(served)[:, 0] != expected[:, 0])
    if wrong.size:
        raise RuleMismatch(f"{wrong.size} rows differ from the rule, the first at row {wrong[0]}")
    return len(expected)


def build(plan: MedicationSafetyPlan) -> int:
    """Write the model and its card; returns the number of rows checked against the rule."""
    model_file = plan.model_dir / MODEL_FILE
    model_file.parent.mkdir(parents=True, exist_ok=True)
    model_file.write_bytes(onnx_bytes(plan))
    checked = check_against_rule(model_file, check_sample(plan.seed, plan.checked_rows))
    card = render_medication_model_card(plan.command, plan.seed, checked)
    (plan.model_dir / MODEL_CARD_FILE).write_text(card, encoding="utf-8")
    return checked
