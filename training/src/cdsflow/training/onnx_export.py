"""The additive model as an ONNX graph: the one file Triton serves, on a GPU and here.

Graph (batch dimension `batch`):

    features FP32 [batch, 15], present BOOL [batch, 15]
      -> slot = number of bin edges <= value, or the "not observed" slot where
         present is false or the value is NaN
      -> contributions = table[input, slot]                  FP32 [batch, 15]
      -> log_odds = intercept + sum(contributions)           FP32 [batch, 1]
      -> deterioration_risk = sigmoid(log_odds)              FP32 [batch, 1]

Opset 17 and IR version 8, so that the onnxruntime inside the official Triton 24.10
container (onnxruntime 1.19) and the onnxruntime here both load it.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from cdsflow.training.additive_model import MISSING_SLOT, N_EDGES, N_SLOTS, AdditiveRiskModel
from cdsflow.training.model_inputs import INPUT_NAMES, MODEL_NAME, N_INPUTS

OPSET = 17
IR_VERSION = 8
INPUTS = ("features", "present")
OUTPUTS = ("deterioration_risk", "log_odds", "contributions")


def _constant(name: str, array: np.ndarray) -> onnx.TensorProto:  # type: ignore[type-arg]
    return numpy_helper.from_array(array, name)


def to_onnx(model: AdditiveRiskModel, metadata: dict[str, str]) -> onnx.ModelProto:
    """A checked ONNX model; `metadata` goes into its metadata_props beside the intercept."""
    initializers = [
        _constant("bin_edges", model.edges.reshape(1, N_INPUTS, N_EDGES).astype(np.float32)),
        _constant("slot_table", model.table.reshape(-1).astype(np.float32)),
        _constant("slot_offsets", (np.arange(N_INPUTS) * N_SLOTS).astype(np.float32)),
        _constant("missing_slot", np.array(MISSING_SLOT, dtype=np.float32)),
        _constant("intercept", np.array([model.intercept], dtype=np.float32)),
        _constant("axis_values", np.array([2], dtype=np.int64)),
        _constant("axis_edges", np.array([2], dtype=np.int64)),
        _constant("axis_inputs", np.array([1], dtype=np.int64)),
    ]
    nodes = [
        helper.make_node("Unsqueeze", ["features", "axis_values"], ["value_column"]),
        helper.make_node("GreaterOrEqual", ["value_column", "bin_edges"], ["above_edge"]),
        helper.make_node("Cast", ["above_edge"], ["above_edge_count"], to=TensorProto.FLOAT),
        helper.make_node(
            "ReduceSum", ["above_edge_count", "axis_edges"], ["value_bin"], keepdims=0
        ),
        helper.make_node("IsNaN", ["features"], ["not_a_number"]),
        helper.make_node("Not", ["not_a_number"], ["a_number"]),
        helper.make_node("And", ["present", "a_number"], ["observed"]),
        helper.make_node("Where", ["observed", "value_bin", "missing_slot"], ["slot"]),
        helper.make_node("Add", ["slot", "slot_offsets"], ["table_position"]),
        helper.make_node("Cast", ["table_position"], ["table_index"], to=TensorProto.INT64),
        helper.make_node("Gather", ["slot_table", "table_index"], ["contributions"], axis=0),
        helper.make_node("ReduceSum", ["contributions", "axis_inputs"], ["sum"], keepdims=1),
        helper.make_node("Add", ["sum", "intercept"], ["log_odds"]),
        helper.make_node("Sigmoid", ["log_odds"], ["deterioration_risk"]),
    ]
    graph = helper.make_graph(
        nodes,
        MODEL_NAME,
        inputs=[
            helper.make_tensor_value_info("features", TensorProto.FLOAT, ["batch", N_INPUTS]),
            helper.make_tensor_value_info("present", TensorProto.BOOL, ["batch", N_INPUTS]),
        ],
        outputs=[
            helper.make_tensor_value_info("deterioration_risk", TensorProto.FLOAT, ["batch", 1]),
            helper.make_tensor_value_info("log_odds", TensorProto.FLOAT, ["batch", 1]),
            helper.make_tensor_value_info("contributions", TensorProto.FLOAT, ["batch", N_INPUTS]),
        ],
        initializer=initializers,
    )
    onnx_model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", OPSET)],
        ir_version=IR_VERSION,
        producer_name="cdsflow.training",
        doc_string="Additive logistic deterioration-risk model (synthetic data; see MODEL_CARD.md)",
    )
    properties = {
        "intercept": repr(model.intercept),
        "inputs": ",".join(INPUT_NAMES),
        **metadata,
    }
    helper.set_model_props(onnx_model, properties)
    onnx.checker.check_model(onnx_model, full_check=True)
    return onnx_model
