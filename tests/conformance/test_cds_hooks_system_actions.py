"""Our `systemActions` against the pack: the response logical model (each system action is
a `cards.suggestions.actions` element, by its `contentReference`), the CDSActionType code
system, and the spec's 2.0.1 example response."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from cdsflow.models import build_model_inputs
from cdsflow.models.recommendation_messages import (
    RecommendationSubject,
    system_actions_json,
)
from cdsflow.writeback.domain.cards import cards_for
from tests.conformance.test_cds_hooks_hook_examples import (
    LOGICAL_MODELS,
    example,
    logical_model,
    missing_required,
)
from tests.support.risk_model import scored_recommendation
from tests.unit.model_adapters.adapter_fixtures import (
    AS_OF,
    flagging_deterioration_adapter,
    observation,
)

pytestmark = pytest.mark.conformance

ACTION = "CDSHooksResponse.cards.suggestions.actions"


def flagged_response() -> dict[str, Any]:
    """The answer for a high-risk result of the test adapter that declares a system action."""
    adapter = flagging_deterioration_adapter()
    inputs = build_model_inputs(adapter, [observation("rr", "9279-1", 30, "/min")], AS_OF)
    recommendation = scored_recommendation(
        adapter,
        inputs,
        0.6,
        0.4,
        RecommendationSubject(
            event_id="hook-instance-1",
            patient_key="k",
            patient_reference="Patient/p-1",
            ehr_base_url="https://ehr.example.org/fhir",
            produced_at=AS_OF,
        ),
    )
    return {
        "cards": cards_for(recommendation),
        "systemActions": system_actions_json(recommendation),
    }


def action_elements(model: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The members of an Action in the response model: name -> element."""
    elements = model["differential"]["element"]
    return {
        element["path"].removeprefix(ACTION + "."): element
        for element in elements
        if element["path"].startswith(ACTION + ".")
    }


def action_types(conformance_dir: Path) -> set[str]:
    xml = (conformance_dir / LOGICAL_MODELS / "codesystem-CDSActionType.xml").read_text()
    return set(re.findall(r'<code value="([a-z-]+)"', xml))


def test_our_system_actions_are_actions_of_the_response_model(conformance_dir: Path) -> None:
    model = logical_model(conformance_dir, "CDSHooksResponse")
    [system_actions] = [
        e for e in model["differential"]["element"] if e["path"] == "CDSHooksResponse.systemActions"
    ]
    assert system_actions["contentReference"] == f"#{ACTION}"
    members = action_elements(model)
    response = flagged_response()

    assert missing_required(model, response) == []
    assert response["systemActions"]
    for action in response["systemActions"]:
        assert set(action) <= set(members)  # no member the model does not know
        for name, element in members.items():
            if element.get("min", 0) >= 1:
                assert name in action, name
        assert action["type"] in action_types(conformance_dir)
        assert action["type"] in {"create", "update"}  # never a deletion without a clinician
        assert action["description"]  # required in 2.0.1
        assert action["resource"]["resourceType"] == "Flag"
        # no empty value (checklist 1)
        assert all(value not in ("", [], {}, None) for value in action.values())


def test_our_answer_has_the_shape_of_the_spec_example(conformance_dir: Path) -> None:
    spec = example(conformance_dir, "spec-2.0.1/response-system-actions.json")
    ours = flagged_response()

    assert set(spec) == set(ours) == {"cards", "systemActions"}
    [spec_action] = spec["systemActions"]
    [our_action] = ours["systemActions"]
    assert set(spec_action) - {"description"} <= set(our_action)
    assert isinstance(our_action["resource"], dict)
    assert isinstance(spec_action["resource"], dict)
