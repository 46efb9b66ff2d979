"""Triton python backend for `deterioration_risk` on a CPU (configs/cpu.pbtxt).

Runs the `model.onnx` beside this file with onnxruntime: the same file that the onnxruntime
backend serves on a GPU (config.pbtxt). Every request of a dynamic batch is scored in one
onnxruntime call and answered with its own rows. The python stub uses the interpreter of the
virtual environment first on PATH, so onnxruntime comes from that environment.
"""

from __future__ import annotations

import json
import pathlib

import numpy as np
import onnxruntime
import triton_python_backend_utils as pb_utils

INPUTS = ("features", "present")
OUTPUTS = ("deterioration_risk", "log_odds", "contributions")


def _threads(model_config):
    parameter = model_config.get("parameters", {}).get("intra_op_num_threads", {})
    return int(parameter.get("string_value", "1"))


class TritonPythonModel:
    """One instance per `instance_group` entry; `execute` gets a list of requests."""

    def initialize(self, args):
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = _threads(json.loads(args["model_config"]))
        options.inter_op_num_threads = 1
        model_file = pathlib.Path(__file__).with_name("model.onnx")
        self.session = onnxruntime.InferenceSession(
            str(model_file), options, providers=["CPUExecutionProvider"]
        )

    def execute(self, requests):
        if not requests:
            return []
        inputs = {
            name: [pb_utils.get_input_tensor_by_name(r, name).as_numpy() for r in requests]
            for name in INPUTS
        }
        sizes = [len(rows) for rows in inputs["features"]]
        feed = {
            "features": np.concatenate(inputs["features"]).astype(np.float32, copy=False),
            "present": np.concatenate(inputs["present"]).astype(np.bool_, copy=False),
        }
        outputs = dict(zip(OUTPUTS, self.session.run(list(OUTPUTS), feed), strict=True))
        responses = []
        start = 0
        for size in sizes:
            rows = slice(start, start + size)
            start += size
            responses.append(
                pb_utils.InferenceResponse(
                    output_tensors=[pb_utils.Tensor(name, outputs[name][rows]) for name in OUTPUTS]
                )
            )
        return responses

    def finalize(self):
        self.session = None
