"""One training run: cohorts from one seed, fit, export, held-out evaluation, model card.

The held-out cohort comes from its own child seed (independent of the training cohort) and
is written out first; the metrics are then measured from the written files (the exported
ONNX run by onnxruntime on the JSON-lines set), i.e. from exactly what is shipped.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import numpy.typing as npt
import onnxruntime
from sklearn.metrics import roc_auc_score

from cdsflow.training.additive_model import AdditiveRiskModel, fit_additive_model
from cdsflow.training.evaluation_set import (
    LabelledRows,
    read_evaluation_set,
    write_evaluation_set,
)
from cdsflow.training.fhir_evaluation_set import write_fhir_evaluation_set
from cdsflow.training.held_out_metrics import HeldOutMetrics, measure
from cdsflow.training.model_card import render_model_card
from cdsflow.training.model_inputs import AGE_COLUMN
from cdsflow.training.news2 import news2_points
from cdsflow.training.onnx_export import to_onnx
from cdsflow.training.synthetic_cohort import N_VITAL_SIGNS, generate_cohort

MODEL_FILE = Path("1") / "model.onnx"
EVALUATION_FILE = "heldout.jsonl"
METRICS_FILE = "held_out_metrics.json"
MODEL_CARD_FILE = "MODEL_CARD.md"


@dataclass(frozen=True)
class TrainingPlan:
    model_dir: Path  # the Triton model directory, e.g. models/deterioration_risk
    dataset_dir: Path  # where the held-out set goes, e.g. datasets/deterioration_risk
    seed: int = 20261129
    training_patients: int = 60_000
    held_out_patients: int = 3_000
    command: str = "make model"


def train(plan: TrainingPlan) -> tuple[AdditiveRiskModel, bytes]:
    """The fitted model and its ONNX bytes; the same plan gives the same bytes."""
    training_seed, _ = np.random.SeedSequence(plan.seed).spawn(2)
    cohort = generate_cohort(plan.training_patients, training_seed, "train")
    features, present = cohort.model_inputs()
    model = fit_additive_model(features, present, cohort.deteriorated)
    metadata = {
        "seed": str(plan.seed),
        "training_patients": str(plan.training_patients),
        "l2_inverse_strength": repr(model.l2_inverse_strength),
    }
    return model, to_onnx(model, metadata).SerializeToString()


def measure_files(model_file: Path, evaluation_file: Path, seed: int) -> HeldOutMetrics:
    """The metrics of an exported model on a JSON-lines evaluation set."""
    rows = read_evaluation_set(evaluation_file)
    session = onnxruntime.InferenceSession(str(model_file), providers=["CPUExecutionProvider"])
    (risk,) = session.run(
        ["deterioration_risk"], {"features": rows.features, "present": rows.present}
    )
    news2 = news2_points(rows.features[:, :N_VITAL_SIGNS], rows.present[:, :N_VITAL_SIGNS])
    return measure(
        np.asarray(risk, dtype=np.float64)[:, 0], rows.deteriorated, news2, seed, subgroups(rows)
    )


def subgroups(rows: LabelledRows) -> dict[str, npt.NDArray[np.bool_]]:
    """Age bands and sex, as masks over the rows."""
    known = rows.present[:, AGE_COLUMN]
    age = rows.features[:, AGE_COLUMN]
    sex = np.asarray(rows.sex)
    return {
        "age < 65": known & (age < 65),
        "age 65-79": known & (age >= 65) & (age < 80),
        "age >= 80": known & (age >= 80),
        "age unknown": ~known,
        "female": sex == "female",
        "male": sex == "male",
    }


def run(plan: TrainingPlan) -> HeldOutMetrics:
    """Train, write the model, the held-out set (JSON lines and FHIR), its metrics and the
    model card."""
    model, onnx_bytes = train(plan)
    model_file = plan.model_dir / MODEL_FILE
    model_file.parent.mkdir(parents=True, exist_ok=True)
    model_file.write_bytes(onnx_bytes)
    _, held_out_seed = np.random.SeedSequence(plan.seed).spawn(2)
    held_out = generate_cohort(plan.held_out_patients, held_out_seed, "heldout")
    evaluation_file = plan.dataset_dir / EVALUATION_FILE
    write_evaluation_set(held_out, evaluation_file)
    write_fhir_evaluation_set(evaluation_file, plan.dataset_dir)
    metrics = replace(
        measure_files(model_file, evaluation_file, plan.seed),
        generator_risk_auroc=float(roc_auc_score(held_out.deteriorated, held_out.latent_risk)),
    )
    (plan.model_dir / METRICS_FILE).write_text(
        json.dumps(metrics.as_json(), indent=2) + "\n", encoding="utf-8"
    )
    card = render_model_card(plan, model, metrics, evaluation_file)
    (plan.model_dir / MODEL_CARD_FILE).write_text(card, encoding="utf-8")
    return metrics
