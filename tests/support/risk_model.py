"""The files of the `deterioration_risk` model and its held-out set, and Recommendations
as it would score them, for the tests."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import numpy.typing as npt
import onnx

from cdsflow.contracts import Recommendation
from cdsflow.models import ModelAdapter, ModelInputs, interpret_outputs
from cdsflow.models.recommendation_messages import RecommendationSubject, recommendation_message

REPO_ROOT = Path(__file__).resolve().parents[2]
RISK_MODEL_DIR = REPO_ROOT / "models" / "deterioration_risk"
RISK_MODEL_ONNX = RISK_MODEL_DIR / "1" / "model.onnx"
HELD_OUT_SET = REPO_ROOT / "datasets" / "deterioration_risk" / "heldout.jsonl"


def onnx_intercept(path: Path = RISK_MODEL_ONNX) -> float:
    """The model's intercept, as the training run recorded it in the ONNX metadata."""
    properties = {p.key: p.value for p in onnx.load(str(path)).metadata_props}
    return float(properties["intercept"])


def risk_model_repository(tmp_path: Path, versions: tuple[str, ...], cpu: bool = True) -> Path:
    """A model repository under `tmp_path` serving `deterioration_risk` as each of
    `versions` (the shipped model.onnx in every version directory); with `cpu`, its CPU
    configuration too. Both configurations serve every version directory."""
    model = tmp_path / "models" / RISK_MODEL_DIR.name
    model.mkdir(parents=True)
    shutil.copy(RISK_MODEL_DIR / "config.pbtxt", model / "config.pbtxt")
    if cpu:
        shutil.copytree(RISK_MODEL_DIR / "configs", model / "configs")
    for version in versions:
        (model / version).mkdir()
        for name in ("model.onnx", "model.py"):
            shutil.copy(RISK_MODEL_DIR / "1" / name, model / version / name)
    return tmp_path / "models"


def risk_outputs(risk: float, log_odds: float) -> dict[str, npt.NDArray[np.float32]]:
    """`deterioration_risk`'s three outputs for one row scored `risk` (no input contributing)."""
    return {
        "deterioration_risk": np.array([[risk]], dtype=np.float32),
        "log_odds": np.array([[log_odds]], dtype=np.float32),
        "contributions": np.zeros((1, 15), dtype=np.float32),
    }


def scored_recommendation(
    adapter: ModelAdapter,
    inputs: ModelInputs,
    risk: float,
    log_odds: float,
    subject: RecommendationSubject,
    *,
    mode: str = "active",
) -> Recommendation:
    """The Recommendation the reasoner builds for one row of `inputs` that version 1 of the
    model scored `risk`, without Triton."""
    return recommendation_message(
        adapter,
        inputs,
        interpret_outputs(adapter, inputs, risk_outputs(risk, log_odds)),
        model_version="1",
        mode=mode,
        subject=subject,
    )
