"""`deterioration_risk` in the Triton model repository: one model.onnx, a GPU configuration
for the official container (onnxruntime backend) and a CPU one (python backend) that agree
with each other and with the ONNX graph, and a python model that answers each request of a
dynamic batch with its own rows."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType, SimpleNamespace
from typing import Any

import numpy as np
import numpy.typing as npt
import onnx
import onnxruntime
import pytest
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2

from cdsflow.training.evaluation_set import read_evaluation_set
from cdsflow.training.training_run import METRICS_FILE, TrainingPlan, measure_files
from tests.support.risk_model import HELD_OUT_SET, RISK_MODEL_DIR, RISK_MODEL_ONNX

from .model_files import load_module

Config = model_config_pb2.ModelConfig
ONNX_TO_TRITON = {
    onnx.TensorProto.FLOAT: model_config_pb2.DataType.TYPE_FP32,
    onnx.TensorProto.BOOL: model_config_pb2.DataType.TYPE_BOOL,
}


def _config(path: Path) -> Any:
    config = Config()
    text_format.Parse(path.read_text(), config)
    return config


@pytest.fixture(scope="module")
def gpu_config() -> Any:
    return _config(RISK_MODEL_DIR / "config.pbtxt")


@pytest.fixture(scope="module")
def cpu_config() -> Any:
    return _config(RISK_MODEL_DIR / "configs" / "cpu.pbtxt")


def _graph_tensors(values: Any) -> list[tuple[str, int, list[int]]]:
    """(name, Triton data type, dims without the batch dimension) of ONNX graph tensors."""
    tensors = []
    for value in values:
        shape = value.type.tensor_type.shape.dim
        assert shape[0].dim_param == "batch"  # the dynamic batch dimension Triton fills
        dims = [d.dim_value for d in shape[1:]]
        tensors.append((value.name, ONNX_TO_TRITON[value.type.tensor_type.elem_type], dims))
    return tensors


def _config_tensors(tensors: Any) -> list[tuple[str, int, list[int]]]:
    return [(t.name, t.data_type, list(t.dims)) for t in tensors]


def test_the_gpu_config_serves_the_onnx_file_with_onnxruntime_on_a_gpu(gpu_config: Any) -> None:
    assert gpu_config.name == RISK_MODEL_DIR.name == "deterioration_risk"
    assert gpu_config.backend == "onnxruntime"
    assert gpu_config.platform in ("", "onnxruntime_onnx")
    assert gpu_config.default_model_filename in ("", "model.onnx")
    groups = gpu_config.instance_group
    assert [g.kind for g in groups] == [model_config_pb2.ModelInstanceGroup.KIND_GPU]


def test_the_cpu_config_serves_it_with_the_python_backend(cpu_config: Any) -> None:
    assert cpu_config.name == "deterioration_risk"
    assert cpu_config.backend == "python"
    kinds = [g.kind for g in cpu_config.instance_group]
    assert kinds == [model_config_pb2.ModelInstanceGroup.KIND_CPU]
    assert (RISK_MODEL_DIR / "1" / "model.py").is_file()


@pytest.mark.parametrize("name", ["gpu_config", "cpu_config"])
def test_each_config_sheds_overload_and_serves_every_version(
    name: str, request: pytest.FixtureRequest
) -> None:
    config = request.getfixturevalue(name)
    assert config.max_batch_size >= 64
    batching = config.dynamic_batching
    assert batching.max_queue_delay_microseconds > 0
    policy = batching.default_queue_policy
    assert policy.timeout_action == model_config_pb2.ModelQueuePolicy.REJECT
    assert policy.default_timeout_microseconds > 0
    assert policy.max_queue_size > 0
    assert config.version_policy.WhichOneof("policy_choice") == "all"


def test_both_configs_declare_the_tensors_of_the_onnx_graph(
    gpu_config: Any, cpu_config: Any
) -> None:
    graph = onnx.load(str(RISK_MODEL_ONNX)).graph
    for config in (gpu_config, cpu_config):
        assert _config_tensors(config.input) == _graph_tensors(graph.input)
        assert _config_tensors(config.output) == _graph_tensors(graph.output)
    assert gpu_config.max_batch_size == cpu_config.max_batch_size
    assert gpu_config.dynamic_batching == cpu_config.dynamic_batching
    assert gpu_config.version_policy == cpu_config.version_policy


def test_the_model_is_stored_once_as_onnx() -> None:
    versions = sorted(p for p in RISK_MODEL_DIR.iterdir() if p.is_dir() and p.name.isdigit())
    assert [v.name for v in versions] == ["1"]
    files = sorted(p.name for p in versions[0].iterdir() if p.name != "__pycache__")
    assert files == ["model.onnx", "model.py"]
    model = onnx.load(str(RISK_MODEL_ONNX))
    assert model.ir_version <= 10  # onnxruntime 1.19 in the 24.10 container
    assert all(o.version <= 21 for o in model.opset_import)


def test_the_shipped_metrics_are_what_the_shipped_files_measure() -> None:
    written = json.loads((RISK_MODEL_DIR / METRICS_FILE).read_text())
    measured = measure_files(RISK_MODEL_ONNX, HELD_OUT_SET, seed=TrainingPlan.seed).as_json()
    for figure in ("patients", "deteriorated", "auroc", "news2_auroc", "mean_predicted"):
        assert measured[figure] == pytest.approx(written[figure]), figure
    card = (RISK_MODEL_DIR / "MODEL_CARD.md").read_text()
    assert f"| AUROC | {written['auroc']:.3f} " in card


class _Tensor:
    def __init__(self, name: str, array: npt.NDArray[Any]) -> None:
        self.name = name
        self.array = array

    def as_numpy(self) -> npt.NDArray[Any]:
        return self.array


@pytest.fixture
def python_model() -> Iterator[ModuleType]:
    """1/model.py with a stand-in for Triton's `triton_python_backend_utils`."""
    utils = SimpleNamespace(
        Tensor=_Tensor,
        InferenceResponse=lambda output_tensors: SimpleNamespace(outputs=output_tensors),
        get_input_tensor_by_name=lambda request, name: request[name],
    )
    sys.modules["triton_python_backend_utils"] = utils  # type: ignore[assignment]
    try:
        yield load_module("deterioration_risk_model", RISK_MODEL_DIR / "1" / "model.py")
    finally:
        del sys.modules["triton_python_backend_utils"]


def test_each_request_of_a_batch_gets_its_own_rows(python_model: ModuleType) -> None:
    rows = read_evaluation_set(HELD_OUT_SET)
    model = python_model.TritonPythonModel()
    model.initialize({"model_config": json.dumps({"parameters": {}})})
    cuts = [(0, 1), (1, 4), (4, 9)]
    requests = [
        {
            "features": _Tensor("features", rows.features[a:b]),
            "present": _Tensor("present", rows.present[a:b]),
        }
        for a, b in cuts
    ]
    responses = model.execute(requests)
    session = onnxruntime.InferenceSession(str(RISK_MODEL_ONNX), providers=["CPUExecutionProvider"])
    expected = session.run(None, {"features": rows.features[:9], "present": rows.present[:9]})
    for response, (a, b) in zip(responses, cuts, strict=True):
        outputs = {t.name: t.array for t in response.outputs}
        assert list(outputs) == ["deterioration_risk", "log_odds", "contributions"]
        for name, full in zip(outputs, expected, strict=True):
            np.testing.assert_array_equal(outputs[name], full[a:b])
    assert model.execute([]) == []
