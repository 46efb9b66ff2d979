"""The shipped adapter agrees with the served model's declared tensors (both Triton
configurations), and a folder of adapters loads as one catalogue."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2

from cdsflow.models import AdapterFileError
from cdsflow.models.adapter_catalogue import load_adapters
from cdsflow.models.cds_services import discovery_entries
from cdsflow.models.tensor_specs import TensorSpec, contract_mismatches

from .adapter_fixtures import ADAPTERS, REPO_ROOT, deterioration_adapter

MODEL_DIR = REPO_ROOT / "models" / "deterioration_risk"


def _served(config_path: Path) -> tuple[list[TensorSpec], list[TensorSpec]]:
    config = model_config_pb2.ModelConfig()
    text_format.Parse(config_path.read_text(encoding="utf-8"), config)

    def spec(tensor: model_config_pb2.ModelInput | model_config_pb2.ModelOutput) -> TensorSpec:
        datatype = model_config_pb2.DataType.Name(tensor.data_type).removeprefix("TYPE_")
        return TensorSpec(tensor.name, datatype, tuple(tensor.dims))

    return [spec(t) for t in config.input], [spec(t) for t in config.output]


@pytest.mark.parametrize("config", ["config.pbtxt", "configs/cpu.pbtxt"])
def test_the_deterioration_adapter_matches_the_served_model(config: str) -> None:
    inputs, outputs = _served(MODEL_DIR / config)
    assert contract_mismatches(deterioration_adapter(), inputs, outputs) == []


def test_a_model_that_differs_is_named() -> None:
    inputs, outputs = _served(MODEL_DIR / "config.pbtxt")
    inputs = [TensorSpec(s.name, s.datatype, (14,)) if s.name == "present" else s for s in inputs]
    outputs = [s for s in outputs if s.name != "contributions"]
    assert contract_mismatches(deterioration_adapter(), inputs, outputs) == [
        "input present is BOOL [14], the adapter sends BOOL [15]",
        "the model has no output contributions",
    ]


def test_the_shipped_folder_loads_as_one_catalogue() -> None:
    catalogue = load_adapters(ADAPTERS)
    assert sorted(catalogue) == ["deterioration-risk", "medication-safety"]


def test_two_files_offering_the_same_cds_service_are_refused(tmp_path: Path) -> None:
    shutil.copy(ADAPTERS / "deterioration-risk.yaml", tmp_path / "a.yaml")
    text = (ADAPTERS / "medication-safety.yaml").read_text(encoding="utf-8")
    (tmp_path / "b.yaml").write_text(
        text.replace("id: cdsflow-medication-safety\n", "id: cdsflow-deterioration\n"),
        encoding="utf-8",
    )
    with pytest.raises(AdapterFileError, match=r"b\.yaml:1: CDS service cdsflow-deterioration"):
        load_adapters(tmp_path)


def test_discovery_lists_every_declared_hook() -> None:
    entries = discovery_entries(load_adapters(ADAPTERS).values())
    assert [(e["id"], e["hook"]) for e in entries] == [
        ("cdsflow-deterioration", "patient-view"),
        ("cdsflow-medication-safety-select", "order-select"),
        ("cdsflow-medication-safety-sign", "order-sign"),
        ("cdsflow-medication-safety", "patient-view"),
    ]
    assert entries[0]["prefetch"]["patient"] == "Patient/{{context.patientId}}"
    assert "prefetch" not in entries[3]
