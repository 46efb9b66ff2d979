"""The files of the `deterioration_risk` model and its held-out set, for the tests."""

from __future__ import annotations

from pathlib import Path

import onnx

REPO_ROOT = Path(__file__).resolve().parents[2]
RISK_MODEL_DIR = REPO_ROOT / "models" / "deterioration_risk"
RISK_MODEL_ONNX = RISK_MODEL_DIR / "1" / "model.onnx"
HELD_OUT_SET = REPO_ROOT / "datasets" / "deterioration_risk" / "heldout.jsonl"


def onnx_intercept(path: Path = RISK_MODEL_ONNX) -> float:
    """The model's intercept, as the training run recorded it in the ONNX metadata."""
    properties = {p.key: p.value for p in onnx.load(str(path)).metadata_props}
    return float(properties["intercept"])
