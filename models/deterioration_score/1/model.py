"""Triton python backend for `deterioration_score` (numpy only).

Inputs per request (batched by Triton's dynamic batcher):
  vital_signs  FP32 [batch, 7]  in the order of `early_warning.VITAL_SIGNS`
  present      BOOL [batch, 7]  False where a vital sign is missing
Outputs:
  deterioration_score   FP32 [batch, 1]  in [0, 1]
  early_warning_points  FP32 [batch, 1]  NEWS2-style aggregate
  vital_sign_points     FP32 [batch, 7]  each vital sign's points
"""

from __future__ import annotations

import importlib.util
import pathlib
import sys

import numpy as np
import triton_python_backend_utils as pb_utils


def _load_early_warning():
    # the sibling module, loaded by path: the stub does not put the version dir on sys.path
    path = pathlib.Path(__file__).with_name("early_warning.py")
    spec = importlib.util.spec_from_file_location("deterioration_score_early_warning", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


class TritonPythonModel:
    """One instance per `instance_group` entry; `execute` gets a list of requests."""

    def initialize(self, args):
        self.early_warning = _load_early_warning()

    def execute(self, requests):
        if not requests:
            return []
        vital_signs = [
            pb_utils.get_input_tensor_by_name(r, "vital_signs").as_numpy() for r in requests
        ]
        present = [pb_utils.get_input_tensor_by_name(r, "present").as_numpy() for r in requests]
        sizes = [len(batch) for batch in vital_signs]
        # score every request of the dynamic batch in one vectorized pass
        points = self.early_warning.vital_sign_points(
            np.concatenate(vital_signs), np.concatenate(present)
        )
        aggregate = self.early_warning.early_warning_points(points)
        score = self.early_warning.deterioration_score(aggregate)
        responses = []
        start = 0
        for size in sizes:
            rows = slice(start, start + size)
            start += size
            responses.append(
                pb_utils.InferenceResponse(
                    output_tensors=[
                        pb_utils.Tensor("deterioration_score", score[rows]),
                        pb_utils.Tensor("early_warning_points", aggregate[rows]),
                        pb_utils.Tensor("vital_sign_points", points[rows]),
                    ]
                )
            )
        return responses

    def finalize(self):
        self.early_warning = None
