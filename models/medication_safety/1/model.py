"""Triton python backend for `medication_safety` on a CPU (configs/cpu.pbtxt).

Runs the `model.onnx` beside this file with onnxruntime: the same file that the onnxruntime
backend serves on a GPU (config.pbtxt). The input and output names come from the model's
configuration. Every request of a dynamic batch is scored in one onnxruntime call and
answered with its own rows. The python stub uses the interpreter of the virtual environment
first on PATH, so onnxruntime comes from that environment.
"""

from __future__ import annotations

import json
import pathlib

import numpy as np
import onnxruntime
import triton_python_backend_utils as pb_utils

# Triton's configuration data types, as numpy types for the onnxruntime feed
NUMPY_TYPES = {"TYPE_FP32": np.float32, "TYPE_BOOL": np.bool_}


def _threads(model_config):
    parameter = model_config.get("parameters", {}).get("intra_op_num_threads", {})
    return int(parameter.get("string_value", "1"))


class TritonPythonModel:
    """One instance per `instance_group` entry; `execute` gets a list of requests."""

    def initialize(self, args):
        model_config = json.loads(args["model_config"])
        self.inputs = [(t["name"], NUMPY_TYPES[t["data_type"]]) for t in model_config["input"]]
        self.outputs = [t["name"] for t in model_config["output"]]
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = _threads(model_config)
        options.inter_op_num_threads = 1
        model_file = pathlib.Path(__file__).with_name("model.onnx")
        self.session = onnxruntime.InferenceSession(
            str(model_file), options, providers=["CPUExecutionProvider"]
        )

    def execute(self, requests):
        if not requests:
            return []
        feed = {}
        sizes = None
        for name, numpy_type in self.inputs:
            parts = [pb_utils.get_input_tensor_by_name(r, name).as_numpy() for r in requests]
            if sizes is None:
                sizes = [len(rows) for rows in parts]
            feed[name] = np.concatenate(parts).astype(numpy_type, copy=False)
        outputs = dict(zip(self.outputs, self.session.run(self.outputs, feed), strict=True))
        responses = []
        start = 0
        for size in sizes:
            rows = slice(start, start + size)
            start += size
            responses.append(
                pb_utils.InferenceResponse(
                    output_tensors=[pb_utils.Tensor(n, outputs[n][rows]) for n in self.outputs]
                )
            )
        return responses

    def finalize(self):
        self.session = None
