"""The medication-safety rule (metformin with a low eGFR) and its ONNX graph.

Not a trained model: a declared clinical rule, expressed as a model so that it is served,
versioned, run in shadow and evaluated like any other. The rule (FDA drug safety
communication, 2016; KDIGO diabetes in CKD guideline):

    metformin ordered (active or draft) and eGFR observed:
        eGFR < 30                -> 1.0  contraindicated: stop
        30 <= eGFR < 45          -> 0.5  review the dose and the benefit
        eGFR >= 45               -> 0.0
    otherwise (no metformin, or no eGFR observed) -> 0.0

An eGFR that was not observed (`present` false, or NaN) is never imputed: no eGFR, no alert.

Graph (batch dimension `batch`):

    features FP32 [batch, 2] (eGFR in mL/min/{1.73_m2}, metformin ordered 0/1),
    present BOOL [batch, 2]
      -> band = number of thresholds (30, 45) <= eGFR          0, 1 or 2
      -> risk_by_egfr = band_risk[band]                        1.0, 0.5 or 0.0
      -> medication_risk = risk_by_egfr where metformin ordered and eGFR observed, else 0
                                                               FP32 [batch, 1]

Opset 17 and IR version 8, like `deterioration_risk`, so that the onnxruntime inside the
official Triton 24.10 container (onnxruntime 1.19) and the onnxruntime here both load it.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import onnx
from onnx import TensorProto, helper, numpy_helper

from cdsflow.training.onnx_export import IR_VERSION, OPSET

MODEL_NAME = "medication_safety"
INPUTS = ("features", "present")
OUTPUTS = ("medication_risk",)
COLUMNS = ("egfr", "metformin_ordered")
COLUMN_UNITS = ("mL/min/{1.73_m2}", "1 (0 or 1)")
N_COLUMNS = len(COLUMNS)
EGFR_COLUMN, METFORMIN_COLUMN = 0, 1
# eGFR thresholds, lowest first, and the risk of each band they cut (below the first, ...)
EGFR_THRESHOLDS = (30.0, 45.0)
BAND_RISK = (1.0, 0.5, 0.0)


def rule_risk(
    features: npt.ArrayLike, present: npt.ArrayLike
) -> npt.NDArray[np.float32]:  # [batch, 1]
    """The rule in numpy, row by row: what the ONNX graph must compute."""
    values = np.asarray(features, dtype=np.float32)
    mask = np.asarray(present, dtype=np.bool_)
    egfr = values[:, EGFR_COLUMN]
    egfr_observed = mask[:, EGFR_COLUMN] & ~np.isnan(egfr)
    ordered = mask[:, METFORMIN_COLUMN] & (values[:, METFORMIN_COLUMN] > 0.5)
    with np.errstate(invalid="ignore"):
        band = (egfr[:, None] >= np.asarray(EGFR_THRESHOLDS, dtype=np.float32)).sum(axis=1)
    risk = np.asarray(BAND_RISK, dtype=np.float32)[band]
    return np.where(ordered & egfr_observed, risk, np.float32(0.0)).reshape(-1, 1)


def _constant(name: str, array: npt.NDArray[np.generic]) -> onnx.TensorProto:
    return numpy_helper.from_array(array, name)


def to_onnx(metadata: dict[str, str]) -> onnx.ModelProto:
    """The rule as a checked ONNX model; `metadata` goes into its metadata_props."""
    initializers = [
        _constant("egfr_column", np.array([EGFR_COLUMN], dtype=np.int64)),
        _constant("metformin_column", np.array([METFORMIN_COLUMN], dtype=np.int64)),
        _constant("egfr_thresholds", np.array([EGFR_THRESHOLDS], dtype=np.float32)),
        _constant("band_risk", np.array(BAND_RISK, dtype=np.float32)),
        _constant("ordered_above", np.array(0.5, dtype=np.float32)),
        _constant("no_risk", np.array(0.0, dtype=np.float32)),
        _constant("axis_bands", np.array([1], dtype=np.int64)),
    ]
    nodes = [
        helper.make_node("Gather", ["features", "egfr_column"], ["egfr"], axis=1),
        helper.make_node("Gather", ["features", "metformin_column"], ["metformin"], axis=1),
        helper.make_node("Gather", ["present", "egfr_column"], ["egfr_present"], axis=1),
        helper.make_node("Gather", ["present", "metformin_column"], ["metformin_present"], axis=1),
        helper.make_node("IsNaN", ["egfr"], ["egfr_not_a_number"]),
        helper.make_node("Not", ["egfr_not_a_number"], ["egfr_a_number"]),
        helper.make_node("And", ["egfr_present", "egfr_a_number"], ["egfr_observed"]),
        helper.make_node("Greater", ["metformin", "ordered_above"], ["metformin_flag"]),
        helper.make_node("And", ["metformin_present", "metformin_flag"], ["metformin_ordered"]),
        helper.make_node("And", ["metformin_ordered", "egfr_observed"], ["rule_applies"]),
        helper.make_node("GreaterOrEqual", ["egfr", "egfr_thresholds"], ["above_threshold"]),
        helper.make_node("Cast", ["above_threshold"], ["above_count"], to=TensorProto.FLOAT),
        helper.make_node("ReduceSum", ["above_count", "axis_bands"], ["band_number"], keepdims=1),
        helper.make_node("Cast", ["band_number"], ["band"], to=TensorProto.INT64),
        helper.make_node("Gather", ["band_risk", "band"], ["risk_by_egfr"], axis=0),
        helper.make_node("Where", ["rule_applies", "risk_by_egfr", "no_risk"], ["medication_risk"]),
    ]
    graph = helper.make_graph(
        nodes,
        MODEL_NAME,
        inputs=[
            helper.make_tensor_value_info("features", TensorProto.FLOAT, ["batch", N_COLUMNS]),
            helper.make_tensor_value_info("present", TensorProto.BOOL, ["batch", N_COLUMNS]),
        ],
        outputs=[
            helper.make_tensor_value_info("medication_risk", TensorProto.FLOAT, ["batch", 1]),
        ],
        initializer=initializers,
    )
    onnx_model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", OPSET)],
        ir_version=IR_VERSION,
        producer_name="cdsflow.training",
        doc_string="Metformin with a low eGFR, a declared rule (see MODEL_CARD.md)",
    )
    properties = {
        "columns": ",".join(COLUMNS),
        "egfr_thresholds": ",".join(f"{t:g}" for t in EGFR_THRESHOLDS),
        "band_risk": ",".join(f"{r:g}" for r in BAND_RISK),
        **metadata,
    }
    helper.set_model_props(onnx_model, properties)
    onnx.checker.check_model(onnx_model, full_check=True)
    return onnx_model
