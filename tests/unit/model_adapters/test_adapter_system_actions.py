"""`system_actions` in an adapter file: validated with the line named, rendered only for the
bands declared, carried on the Recommendation and answered only for an active one."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import numpy as np
import pytest

from cdsflow.contracts import Recommendation
from cdsflow.models import AdapterFileError, build_model_inputs, interpret_outputs, parse_adapter
from cdsflow.models.recommendation_messages import (
    RecommendationSubject,
    recommendation_message,
    system_actions_json,
)

from .adapter_fixtures import (
    AS_OF,
    DETERIORATION,
    FLAG_SYSTEM_ACTION,
    deterioration_adapter,
    flagging_deterioration_adapter,
    flagging_deterioration_text,
    observation,
)

SUBJECT = RecommendationSubject(
    event_id="event-1",
    patient_key="pk-1",
    patient_reference="Patient/p1",
    ehr_base_url="http://ehr.test/fhir",
    produced_at=datetime(2026, 11, 29, 18, 1, tzinfo=UTC),
)


def refused(system_actions: str) -> AdapterFileError:
    with pytest.raises(AdapterFileError) as raised:
        parse_adapter(flagging_deterioration_text(system_actions), DETERIORATION)
    return raised.value


def line_of(text: str, needle: str) -> int:
    return next(n for n, line in enumerate(text.splitlines(), start=1) if needle in line)


def scored(score: float, mode: str = "active") -> Recommendation:
    adapter = flagging_deterioration_adapter()
    inputs = build_model_inputs(adapter, [observation("rr", "9279-1", 30, "/min")], AS_OF)
    outputs = {
        "deterioration_risk": np.array([[score]], dtype=np.float32),
        "log_odds": np.array([[0.0]], dtype=np.float32),
        "contributions": np.zeros((1, 15), dtype=np.float32),
    }
    result = interpret_outputs(adapter, inputs, outputs)
    return recommendation_message(
        adapter, inputs, result, model_version="1", mode=mode, subject=SUBJECT
    )


def test_a_declared_system_action_loads() -> None:
    adapter = flagging_deterioration_adapter()

    [action] = adapter.system_actions
    assert (action.type, action.bands) == ("create", ["high"])
    assert action.resource["resourceType"] == "Flag"
    assert deterioration_adapter().system_actions == []  # the shipped adapter declares none


def test_a_delete_system_action_is_refused_naming_its_line() -> None:
    block = FLAG_SYSTEM_ACTION.replace("type: create", "type: delete")
    error = refused(block)

    line = line_of(flagging_deterioration_text(block), "type: delete")
    assert f":{line}: system_actions[0].type: Input should be 'create' or 'update'" in str(error)


@pytest.mark.parametrize(
    ("change", "needle", "path", "why"),
    [
        ("bands: [high]", "bands: [severe]", "system_actions[0].bands[0]", "not a declared"),
        ("{score:.0%}", "{probability}", "system_actions[0].description", "unknown field"),
        ("type: create", "type: update", "system_actions[0].resource", "its id included"),
        ("resourceType: Flag", "resourceType: flag", "system_actions[0].resource", "resourceType"),
    ],
)
def test_a_wrong_system_action_is_refused_naming_the_member(
    change: str, needle: str, path: str, why: str
) -> None:
    error = refused(FLAG_SYSTEM_ACTION.replace(change, needle))

    assert any(p.path == path and why in p.message for p in error.problems), str(error)


def test_a_system_action_without_a_resource_is_refused() -> None:
    block = FLAG_SYSTEM_ACTION.split("    resource:")[0]
    error = refused(block)

    assert any(p.path == "system_actions[0].resource" for p in error.problems), str(error)


def test_a_high_result_carries_its_system_action_rendered() -> None:
    message = scored(0.6)

    [action] = system_actions_json(message)
    assert action["type"] == "create"
    assert action["description"] == "Flag the chart: deterioration risk 60% within 24 h"
    assert action["resource"]["subject"] == {"reference": "Patient/p1"}
    assert action["resource"]["code"]["text"] == (
        "High deterioration risk (deterioration_risk v1, AI-generated)"
    )
    assert json.loads(message.system_actions[0].resource_json) == action["resource"]


def test_outside_its_bands_or_in_shadow_there_is_none() -> None:
    assert system_actions_json(scored(0.05)) == []
    assert scored(0.05).system_actions == []
    shadow = scored(0.6, mode="shadow")
    assert len(shadow.system_actions) == 1  # recorded with the shadow result ...
    assert system_actions_json(shadow) == []  # ... never answered
