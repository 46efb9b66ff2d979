"""The Triton model repository: a config Triton accepts, and a python backend that answers
each request of a dynamic batch with its own rows."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from types import ModuleType, SimpleNamespace
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2

from .model_files import MODEL_DIR, VERSION_DIR, load_module


def _config() -> Any:
    config = model_config_pb2.ModelConfig()
    text_format.Parse((MODEL_DIR / "config.pbtxt").read_text(), config)
    return config


def test_config_is_a_valid_triton_model_config_for_the_python_backend() -> None:
    config = _config()
    assert config.name == MODEL_DIR.name == "deterioration_score"
    assert config.backend == "python"
    assert config.max_batch_size == 64
    assert [g.kind for g in config.instance_group] == [model_config_pb2.ModelInstanceGroup.KIND_CPU]
    assert config.dynamic_batching.max_queue_delay_microseconds == 500
    assert config.version_policy.latest.num_versions == 1


def test_config_declares_the_documented_tensors() -> None:
    config = _config()
    dtype = model_config_pb2.DataType
    assert [(i.name, i.data_type, list(i.dims)) for i in config.input] == [
        ("vital_signs", dtype.TYPE_FP32, [7]),
        ("present", dtype.TYPE_BOOL, [7]),
    ]
    assert [(o.name, o.data_type, list(o.dims)) for o in config.output] == [
        ("deterioration_score", dtype.TYPE_FP32, [1]),
        ("early_warning_points", dtype.TYPE_FP32, [1]),
        ("vital_sign_points", dtype.TYPE_FP32, [7]),
    ]


def test_there_is_one_version_with_the_python_model() -> None:
    versions = sorted(p.name for p in MODEL_DIR.iterdir() if p.is_dir() and p.name.isdigit())
    assert versions == ["1"]
    assert (MODEL_DIR / "1" / "model.py").is_file()


class _Tensor:
    def __init__(self, name: str, array: npt.NDArray[np.float32]) -> None:
        self.name = name
        self.array = array

    def as_numpy(self) -> npt.NDArray[np.float32]:
        return self.array


@pytest.fixture
def python_model() -> Iterator[ModuleType]:
    """model.py with a stand-in for Triton's `triton_python_backend_utils` (only in the stub)."""
    utils = SimpleNamespace(
        Tensor=_Tensor,
        InferenceResponse=lambda output_tensors: SimpleNamespace(outputs=output_tensors),
        get_input_tensor_by_name=lambda request, name: request[name],
    )
    sys.modules["triton_python_backend_utils"] = utils  # type: ignore[assignment]
    try:
        module = load_module("deterioration_model", VERSION_DIR / "model.py")
        yield module
    finally:
        del sys.modules["triton_python_backend_utils"]


def _request(rows: list[list[float]]) -> dict[str, _Tensor]:
    values = np.array(rows, dtype=np.float32)
    return {
        "vital_signs": _Tensor("vital_signs", values),
        "present": _Tensor("present", np.ones(values.shape, dtype=bool)),
    }


def test_each_request_of_a_batch_gets_its_own_rows(python_model: ModuleType) -> None:
    model = python_model.TritonPythonModel()
    model.initialize({})
    well = [16, 98, 21, 125, 72, 36.8, 15]
    unwell = [28, 90, 21, 88, 135, 39.5, 15]
    responses = model.execute([_request([well]), _request([unwell, well]), _request([unwell])])
    outputs = [{t.name: t.array for t in response.outputs} for response in responses]
    assert [o["early_warning_points"][:, 0].tolist() for o in outputs] == [
        [0.0],
        [14.0, 0.0],
        [14.0],
    ]
    assert [o["deterioration_score"].shape for o in outputs] == [(1, 1), (2, 1), (1, 1)]
    assert outputs[2]["vital_sign_points"].tolist() == [[3, 3, 0, 3, 3, 2, 0]]
    assert model.execute([]) == []
