"""A training run: the same seed gives the same model file; it writes the model, the
held-out set, its metrics and the card, and the figures are those the files measure."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from cdsflow.training.evaluation_set import read_evaluation_set, write_evaluation_set
from cdsflow.training.synthetic_cohort import generate_cohort
from cdsflow.training.training_run import (
    EVALUATION_FILE,
    METRICS_FILE,
    MODEL_CARD_FILE,
    MODEL_FILE,
    TrainingPlan,
    measure_files,
    run,
    train,
)


def _plan(tmp_path: Path, seed: int) -> TrainingPlan:
    return TrainingPlan(
        model_dir=tmp_path / "model",
        dataset_dir=tmp_path / "dataset",
        seed=seed,
        training_patients=3000,
        held_out_patients=800,
        command="test",
    )


def test_the_same_seed_trains_the_same_model_file(tmp_path: Path) -> None:
    _, first = train(_plan(tmp_path, 5))
    _, again = train(_plan(tmp_path, 5))
    _, other = train(_plan(tmp_path, 6))
    assert first == again
    assert first != other


def test_a_run_writes_model_held_out_set_metrics_and_card(tmp_path: Path) -> None:
    plan = _plan(tmp_path, 5)
    metrics = run(plan)
    written = json.loads((plan.model_dir / METRICS_FILE).read_text())
    assert written == json.loads(json.dumps(metrics.as_json()))
    assert metrics.patients == 800
    assert 0.5 < metrics.auroc <= 1.0
    assert metrics.generator_risk_auroc is not None
    # what the shipped files measure again is what was written (the ceiling needs the cohort)
    again = measure_files(plan.model_dir / MODEL_FILE, plan.dataset_dir / EVALUATION_FILE, 5)
    assert again.auroc == metrics.auroc
    assert again.calibration_slope == pytest.approx(metrics.calibration_slope)
    # the age bands, and the sexes, each partition the patients
    counts = {g.subgroup: (g.patients, g.deteriorated) for g in metrics.subgroups}
    for parts in (("age < 65", "age 65-79", "age >= 80", "age unknown"), ("female", "male")):
        assert sum(counts[p][0] for p in parts) == metrics.patients
        assert sum(counts[p][1] for p in parts) == metrics.deteriorated
    card = (plan.model_dir / MODEL_CARD_FILE).read_text()
    assert f"| AUROC | {metrics.auroc:.3f} " in card
    assert "Not clinically validated" in card


def test_the_evaluation_set_gives_back_the_cohort_model_inputs(tmp_path: Path) -> None:
    cohort = generate_cohort(400, seed=9, id_prefix="heldout")
    path = tmp_path / "heldout.jsonl"
    write_evaluation_set(cohort, path)
    rows = read_evaluation_set(path)
    features, present = cohort.model_inputs()
    assert rows.patient_ids == cohort.patient_ids
    assert rows.sex == cohort.sex
    np.testing.assert_array_equal(rows.present, present)
    np.testing.assert_allclose(rows.features, features, atol=1e-4)
    np.testing.assert_array_equal(rows.deteriorated, cohort.deteriorated)
    first = json.loads(path.read_text().splitlines()[0])
    assert set(first) == {"patient", "age", "sex", "observations", "deteriorated_within_24h"}
