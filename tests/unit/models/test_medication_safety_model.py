"""`medication_safety` in the Triton model repository: the rule's ONNX file as the build
writes it, a GPU configuration for the official container and a CPU one that agree with each
other, with the ONNX graph and with the adapter, and a python model that answers each request
of a dynamic batch with its own rows."""

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

from cdsflow.models import load_adapter
from cdsflow.models.tensor_specs import TensorSpec, contract_mismatches
from cdsflow.training.__main__ import main as training_main
from cdsflow.training.medication_rule import rule_risk
from cdsflow.training.medication_safety_build import (
    MODEL_CARD_FILE,
    MODEL_FILE,
    CheckSample,
    MedicationSafetyPlan,
    RuleMismatch,
    check_against_rule,
    check_sample,
)

from .model_files import load_module

REPO_ROOT = Path(__file__).resolve().parents[3]
MODEL_DIR = REPO_ROOT / "models" / "medication_safety"
MODEL_ONNX = MODEL_DIR / MODEL_FILE
ADAPTER = load_adapter(REPO_ROOT / "adapters" / "medication-safety.yaml")
CONFIGS = ["config.pbtxt", "configs/cpu.pbtxt"]
ONNX_TO_TRITON = {
    onnx.TensorProto.FLOAT: model_config_pb2.DataType.TYPE_FP32,
    onnx.TensorProto.BOOL: model_config_pb2.DataType.TYPE_BOOL,
}


def _config(name: str) -> Any:
    config = model_config_pb2.ModelConfig()
    text_format.Parse((MODEL_DIR / name).read_text(encoding="utf-8"), config)
    return config


def _specs(tensors: Any) -> list[TensorSpec]:
    return [
        TensorSpec(
            t.name,
            model_config_pb2.DataType.Name(t.data_type).removeprefix("TYPE_"),
            tuple(t.dims),
        )
        for t in tensors
    ]


def _session() -> onnxruntime.InferenceSession:
    return onnxruntime.InferenceSession(str(MODEL_ONNX), providers=["CPUExecutionProvider"])


def _served(features: npt.ArrayLike, present: npt.ArrayLike) -> npt.NDArray[np.float32]:
    (risk,) = _session().run(
        ["medication_risk"],
        {
            "features": np.asarray(features, dtype=np.float32),
            "present": np.asarray(present, dtype=np.bool_),
        },
    )
    return np.asarray(risk)


@pytest.mark.parametrize("name", CONFIGS)
def test_the_adapter_matches_each_configuration(name: str) -> None:
    config = _config(name)
    assert config.name == MODEL_DIR.name == ADAPTER.model.triton_name
    assert contract_mismatches(ADAPTER, _specs(config.input), _specs(config.output)) == []


def test_the_gpu_config_serves_the_onnx_file_with_onnxruntime_on_a_gpu() -> None:
    config = _config("config.pbtxt")
    assert config.backend == "onnxruntime"
    assert config.default_model_filename in ("", "model.onnx")
    kinds = [g.kind for g in config.instance_group]
    assert kinds == [model_config_pb2.ModelInstanceGroup.KIND_GPU]


def test_the_cpu_config_serves_it_with_the_python_backend() -> None:
    config = _config("configs/cpu.pbtxt")
    assert config.backend == "python"
    kinds = [g.kind for g in config.instance_group]
    assert kinds == [model_config_pb2.ModelInstanceGroup.KIND_CPU]


@pytest.mark.parametrize("name", CONFIGS)
def test_each_config_sheds_overload_and_serves_every_version(name: str) -> None:
    config = _config(name)
    assert config.max_batch_size >= 64
    assert config.dynamic_batching.max_queue_delay_microseconds > 0
    policy = config.dynamic_batching.default_queue_policy
    assert policy.timeout_action == model_config_pb2.ModelQueuePolicy.REJECT
    assert policy.default_timeout_microseconds > 0
    assert policy.max_queue_size > 0
    assert config.version_policy.WhichOneof("policy_choice") == "all"


def _graph_tensors(values: Any) -> list[tuple[str, int, list[int]]]:
    tensors = []
    for value in values:
        shape = value.type.tensor_type.shape.dim
        assert shape[0].dim_param == "batch"
        dims = [d.dim_value for d in shape[1:]]
        tensors.append((value.name, ONNX_TO_TRITON[value.type.tensor_type.elem_type], dims))
    return tensors


def test_both_configs_declare_the_tensors_of_the_onnx_graph() -> None:
    graph = onnx.load(str(MODEL_ONNX)).graph
    gpu, cpu = (_config(name) for name in CONFIGS)
    for config in (gpu, cpu):
        assert [(t.name, t.data_type, list(t.dims)) for t in config.input] == _graph_tensors(
            graph.input
        )
        assert [(t.name, t.data_type, list(t.dims)) for t in config.output] == _graph_tensors(
            graph.output
        )
    assert gpu.max_batch_size == cpu.max_batch_size
    assert gpu.dynamic_batching == cpu.dynamic_batching
    assert gpu.version_policy == cpu.version_policy


def test_the_model_is_stored_once_as_onnx_loadable_by_the_24_10_container() -> None:
    versions = sorted(p for p in MODEL_DIR.iterdir() if p.is_dir() and p.name.isdigit())
    assert [v.name for v in versions] == ["1"]
    files = sorted(p.name for p in versions[0].iterdir() if p.name != "__pycache__")
    assert files == ["model.onnx", "model.py"]
    model = onnx.load(str(MODEL_ONNX))
    assert model.ir_version <= 10  # onnxruntime 1.19 in the 24.10 container
    assert all(o.version <= 21 for o in model.opset_import)


@pytest.mark.parametrize(
    ("egfr", "metformin", "egfr_present", "risk"),
    [
        (12.0, 1.0, True, 1.0),
        (29.9, 1.0, True, 1.0),
        (30.0, 1.0, True, 0.5),
        (44.9, 1.0, True, 0.5),
        (45.0, 1.0, True, 0.0),
        (80.0, 1.0, True, 0.0),
        (25.0, 0.0, True, 0.0),  # no metformin
        (0.0, 1.0, False, 0.0),  # no eGFR: no alert, not an eGFR of 0
        (25.0, 1.0, False, 0.0),  # a value sent as absent is ignored
        (float("nan"), 1.0, True, 0.0),  # NaN counts as not observed
    ],
)
def test_the_shipped_model_computes_the_declared_rule(
    egfr: float, metformin: float, egfr_present: bool, risk: float
) -> None:
    served = _served([[egfr, metformin]], [[egfr_present, True]])
    assert served.shape == (1, 1)
    assert served[0, 0] == risk


def test_it_agrees_with_the_rule_on_a_seeded_sample() -> None:
    sample = check_sample(seed=7, rows=5_000)
    assert np.isnan(sample.features[:, 0]).any()
    assert not sample.present.all()
    assert check_against_rule(MODEL_ONNX, sample) == len(sample.features)


def test_the_check_catches_a_graph_that_breaks_the_rule(tmp_path: Path) -> None:
    # the same graph with the review band's risk turned from 0.5 into 0.4
    model = onnx.load(str(MODEL_ONNX))
    band_risk = next(t for t in model.graph.initializer if t.name == "band_risk")
    band_risk.CopyFrom(
        onnx.numpy_helper.from_array(np.array([1.0, 0.4, 0.0], np.float32), "band_risk")
    )
    broken = tmp_path / "broken.onnx"
    onnx.save(model, str(broken))
    sample = CheckSample(
        np.array([[35.0, 1.0]], dtype=np.float32), np.array([[True, True]], dtype=np.bool_)
    )
    with pytest.raises(RuleMismatch, match="1 rows differ"):
        check_against_rule(broken, sample)
    assert rule_risk(sample.features, sample.present)[0, 0] == 0.5


def test_the_build_command_writes_the_shipped_files(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model_dir = tmp_path / "medication_safety"
    assert training_main(["medication-safety", "--model-dir", str(model_dir)]) == 0
    assert json.loads(capsys.readouterr().out)["rows_checked"] == (
        MedicationSafetyPlan.checked_rows + 6
    )
    assert (model_dir / MODEL_FILE).read_bytes() == MODEL_ONNX.read_bytes()
    card = (model_dir / MODEL_CARD_FILE).read_text(encoding="utf-8")
    assert card == (MODEL_DIR / MODEL_CARD_FILE).read_text(encoding="utf-8")
    assert "Not clinically validated" in card


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
        yield load_module("medication_safety_model", MODEL_DIR / "1" / "model.py")
    finally:
        del sys.modules["triton_python_backend_utils"]


def _config_json() -> str:
    """The CPU configuration as Triton hands it to the python model (as JSON)."""
    config = _config("configs/cpu.pbtxt")
    return json.dumps(
        {
            "input": [
                {"name": t.name, "data_type": model_config_pb2.DataType.Name(t.data_type)}
                for t in config.input
            ],
            "output": [{"name": t.name} for t in config.output],
            "parameters": {"intra_op_num_threads": {"string_value": "1"}},
        }
    )


def test_each_request_of_a_batch_gets_its_own_rows(python_model: ModuleType) -> None:
    sample = check_sample(seed=11, rows=9)
    model = python_model.TritonPythonModel()
    model.initialize({"model_config": _config_json()})
    cuts = [(0, 1), (1, 4), (4, 9)]
    requests = [
        {
            "features": _Tensor("features", sample.features[a:b]),
            "present": _Tensor("present", sample.present[a:b]),
        }
        for a, b in cuts
    ]
    responses = model.execute(requests)
    expected = rule_risk(sample.features[:9], sample.present[:9])
    for response, (a, b) in zip(responses, cuts, strict=True):
        outputs = {t.name: t.array for t in response.outputs}
        assert list(outputs) == ["medication_risk"]
        np.testing.assert_array_equal(outputs["medication_risk"], expected[a:b])
    assert model.execute([]) == []
