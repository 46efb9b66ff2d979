"""The medication-safety adapter against the model it declares (`medication_safety`,
specified in libs/models/README.md, shipped in models/medication_safety): a stand-in written
from that specification shows that its outputs and the adapter's bands and cards fit together."""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

from cdsflow.models import CardRendering, build_model_inputs, interpret_outputs, render_cards
from cdsflow.models.tensor_specs import TensorSpec, contract_mismatches

from .adapter_fixtures import AS_OF, medication_adapter, medication_request, observation

ADAPTER = medication_adapter()
RENDERING = CardRendering(model_version="1", patient_reference="Patient/p-1", card_id_seed="m")


def specified_model(
    features: npt.NDArray[np.float32], present: npt.NDArray[np.bool_]
) -> dict[str, npt.NDArray[np.float32]]:
    """The README's specification of `medication_safety`, row by row."""
    egfr, ordered = features[:, 0], features[:, 1] > 0.5
    known = present[:, 0]
    risk = np.where(ordered & known & (egfr < 30), 1.0, 0.0)
    risk = np.where(ordered & known & (egfr >= 30) & (egfr < 45), 0.5, risk)
    return {"medication_risk": risk.astype(np.float32).reshape(-1, 1)}


def test_the_adapter_matches_the_specified_tensors() -> None:
    served_inputs = [TensorSpec("features", "FP32", (2,)), TensorSpec("present", "BOOL", (2,))]
    served_outputs = [TensorSpec("medication_risk", "FP32", (1,))]
    assert contract_mismatches(ADAPTER, served_inputs, served_outputs) == []


def _cards(resources: list[dict[str, Any]]) -> list[dict[str, Any]]:
    inputs = build_model_inputs(ADAPTER, resources, AS_OF)
    outputs = specified_model(inputs.tensors["features"], inputs.tensors["present"])
    result = interpret_outputs(ADAPTER, inputs, outputs)
    return [card.as_cds_hooks() for card in render_cards(ADAPTER, inputs, result, RENDERING)]


def _egfr(value: float) -> dict[str, Any]:
    return observation("egfr-1", "62238-1", value, "mL/min/{1.73_m2}", hours_before=72)


@pytest.mark.parametrize(
    ("egfr", "indicator"),
    [(12.0, "critical"), (29.9, "critical"), (30.0, "warning"), (44.0, "warning"), (45.0, None)],
)
def test_metformin_by_egfr(egfr: float, indicator: str | None) -> None:
    cards = _cards([medication_request("met-1"), _egfr(egfr)])
    assert [card["indicator"] for card in cards] == ([indicator] if indicator else [])
    assert all(len(card["summary"]) < 140 for card in cards)


def test_no_card_without_metformin_or_without_an_egfr() -> None:
    assert _cards([_egfr(20.0)]) == []
    assert _cards([medication_request("met-1")]) == []
    assert _cards([medication_request("met-1", status="completed"), _egfr(20.0)]) == []


def test_a_draft_order_being_signed_is_flagged_and_its_removal_suggested() -> None:
    (card,) = _cards([medication_request("draft-7", status="draft"), _egfr(22.0)])
    (action,) = card["suggestions"][0]["actions"]
    assert action["resourceId"] == ["MedicationRequest/draft-7"]


def test_a_draft_order_without_an_id_gets_the_card_but_no_delete_suggestion() -> None:
    draft = medication_request("x", status="draft")
    del draft["id"]
    (card,) = _cards([draft, _egfr(22.0)])
    assert card["indicator"] == "critical"
    assert "suggestions" not in card
    assert "selectionBehavior" not in card
