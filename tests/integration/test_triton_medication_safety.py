"""`medication_safety` served by the real Triton binary here (the CPU configuration: the
python backend running model.onnx with onnxruntime), driven through its adapter from FHIR
resources to CDS Hooks cards; and its GPU configuration read by Triton 2.51 itself."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from tritonclient.grpc import InferInput, InferRequestedOutput
from tritonclient.grpc.aio import InferenceServerClient

from cdsflow.models import CardRendering, build_model_inputs, interpret_outputs, render_cards
from cdsflow.runtime.parts import start_triton
from cdsflow.runtime.processes import ProcessFailed
from tests.conftest import REPO_ROOT
from tests.unit.model_adapters.adapter_fixtures import (
    AS_OF,
    medication_adapter,
    medication_request,
    observation,
)

pytestmark = pytest.mark.integration

MODEL = "medication_safety"
MODEL_DIR = REPO_ROOT / "models" / MODEL
ADAPTER = medication_adapter()
RENDERING = CardRendering(model_version="1", patient_reference="Patient/p-1", card_id_seed="t")


def _egfr(value: float) -> dict[str, Any]:
    # CKD-EPI 2021 (LOINC 98979-8), three days before the prediction
    return observation("egfr-1", "98979-8", value, "mL/min/{1.73_m2}", hours_before=72)


async def _assessed(
    client: InferenceServerClient, resources: list[dict[str, Any]]
) -> tuple[Any, list[dict[str, Any]]]:
    """The adapter's result and CDS Hooks cards for one patient's resources, scored by Triton."""
    inputs = build_model_inputs(ADAPTER, resources, AS_OF)
    tensors = []
    for name, array in inputs.tensors.items():
        datatype = "BOOL" if array.dtype == np.bool_ else "FP32"
        tensor = InferInput(name, list(array.shape), datatype)
        tensor.set_data_from_numpy(array)
        tensors.append(tensor)
    answer = await client.infer(
        ADAPTER.model.triton_name,
        inputs=tensors,
        outputs=[InferRequestedOutput(ADAPTER.outputs.score.tensor)],  # type: ignore[union-attr]
        client_timeout=30,
    )
    outputs = {"medication_risk": answer.as_numpy("medication_risk")}
    result = interpret_outputs(ADAPTER, inputs, outputs)
    cards = render_cards(ADAPTER, inputs, result, RENDERING)
    return result, [card.as_cds_hooks() for card in cards]


async def test_the_cpu_configuration_is_loaded_with_the_adapters_tensors(
    triton_client: InferenceServerClient,
) -> None:
    assert await triton_client.is_model_ready(MODEL)
    metadata: dict[str, Any] = await triton_client.get_model_metadata(MODEL, as_json=True)
    assert metadata["versions"] == ["1"]
    assert [(t["name"], t["datatype"], t["shape"]) for t in metadata["inputs"]] == [
        ("features", "FP32", ["-1", "2"]),
        ("present", "BOOL", ["-1", "2"]),
    ]
    assert [(t["name"], t["shape"]) for t in metadata["outputs"]] == [
        ("medication_risk", ["-1", "1"])
    ]
    config: dict[str, Any] = await triton_client.get_model_config(MODEL, as_json=True)
    assert config["config"]["backend"] == "python"  # configs/cpu.pbtxt, not config.pbtxt


async def test_a_low_egfr_with_metformin_gets_a_card_to_stop_it(
    triton_client: InferenceServerClient,
) -> None:
    result, cards = await _assessed(triton_client, [medication_request("met-1"), _egfr(25.0)])
    assert result.score == 1.0
    assert result.band is not None
    assert result.band.name == "contraindicated"
    (card,) = cards
    assert card["indicator"] == "critical"
    assert "eGFR 25" in card["summary"]
    (suggestion,) = card["suggestions"]
    assert suggestion["label"] == "Stop metformin"
    (action,) = suggestion["actions"]
    assert action["type"] == "delete"
    assert action["resourceId"] == ["MedicationRequest/met-1"]


async def test_an_egfr_between_30_and_45_asks_for_a_review(
    triton_client: InferenceServerClient,
) -> None:
    result, cards = await _assessed(triton_client, [medication_request("met-1"), _egfr(38.0)])
    assert result.score == 0.5
    assert result.band is not None
    assert result.band.name == "review"
    assert [card["indicator"] for card in cards] == ["warning"]
    assert "suggestions" not in cards[0]


@pytest.mark.parametrize(
    "resources",
    [
        pytest.param([medication_request("met-1"), _egfr(80.0)], id="normal-egfr-on-metformin"),
        pytest.param([_egfr(25.0)], id="low-egfr-without-metformin"),
        pytest.param([medication_request("met-1")], id="metformin-without-an-egfr"),
        pytest.param(
            [medication_request("met-1", status="completed"), _egfr(25.0)],
            id="low-egfr-after-metformin-stopped",
        ),
    ],
)
async def test_no_card_otherwise(
    triton_client: InferenceServerClient, resources: list[dict[str, Any]]
) -> None:
    result, cards = await _assessed(triton_client, resources)
    assert result.score == 0.0
    assert result.band is not None
    assert result.band.name == "no_concern"
    assert cards == []


async def test_triton_2_51_reads_the_gpu_configuration_up_to_its_backend(tmp_path: Path) -> None:
    # the binary here has no onnxruntime backend and no GPU; with config.pbtxt it must get
    # as far as looking for the backend (so Triton 2.51 parsed and accepted the file)
    model = tmp_path / "models" / MODEL
    (model / "1").mkdir(parents=True)
    shutil.copy(MODEL_DIR / "config.pbtxt", model / "config.pbtxt")
    shutil.copy(MODEL_DIR / "1" / "model.onnx", model / "1" / "model.onnx")
    with pytest.raises(ProcessFailed):
        await asyncio.to_thread(start_triton, tmp_path / "models", tmp_path, None, 60, None)
    log = (tmp_path / "triton.log").read_text()
    assert "unable to find backend library for backend 'onnxruntime'" in log
    assert "failed to parse" not in log.lower()
