"""Prefetch: which templates the EHR satisfied, token resolution, and the resources in what
it sent."""

from __future__ import annotations

from typing import Any

import pytest

from cdsflow.writeback.domain.hook_requests import HookRequest
from cdsflow.writeback.domain.prefetch import (
    is_provided,
    prefetch_plan,
    resolved_query,
    resources_of,
)

TEMPLATES = {
    "patient": "Patient/{{context.patientId}}",
    "vitals": "Observation?patient={{context.patientId}}&category=vital-signs",
    "user": "Practitioner/{{userPractitionerId}}",
}


def request(**fields: Any) -> HookRequest:
    return HookRequest(hook_instance="h-1", patient_id="pat-1", **fields)


def test_tokens_are_resolved_from_the_context_and_the_user() -> None:
    call = request(user_id="Practitioner/pr-9", encounter_id="enc-3")

    assert resolved_query(TEMPLATES["vitals"], call) == (
        "Observation?patient=pat-1&category=vital-signs"
    )
    assert resolved_query(TEMPLATES["user"], call) == "Practitioner/pr-9"
    assert resolved_query("Encounter/{{ context.encounterId }}", call) == "Encounter/enc-3"


@pytest.mark.parametrize(
    ("template", "user_id"),
    [
        ("Practitioner/{{userPractitionerId}}", "PractitionerRole/r-1"),
        ("Encounter/{{context.encounterId}}", None),
        ("Observation?date=ge{{today() - 90 days}}", None),
        ("Practitioner/{{context.userId}}", "Practitioner/x&_count=1000"),
    ],
)
def test_a_token_that_cannot_be_resolved_leaves_the_template_unresolved(
    template: str, user_id: str | None
) -> None:
    assert resolved_query(template, request(user_id=user_id)) is None


def test_null_and_operation_outcomes_are_not_provided() -> None:
    outcome = {"resourceType": "OperationOutcome", "issue": []}
    call = request(
        user_id="Practitioner/pr-9",
        prefetch={"patient": {"resourceType": "Patient", "id": "pat-1"}, "vitals": outcome},
    )

    plan = prefetch_plan(TEMPLATES, call)

    assert list(plan.provided) == ["patient"]
    assert plan.to_fetch == {
        "vitals": "Observation?patient=pat-1&category=vital-signs",
        "user": "Practitioner/pr-9",
    }
    assert plan.unresolvable == ()
    assert not is_provided(None)
    assert not is_provided(outcome)


def test_a_missing_template_without_its_token_is_unresolvable() -> None:
    plan = prefetch_plan(TEMPLATES, request())

    assert plan.unresolvable == ("user",)


def test_a_searchset_gives_its_matches_without_outcome_entries() -> None:
    bundle = {
        "resourceType": "Bundle",
        "type": "searchset",
        "entry": [
            {"resource": {"resourceType": "Observation", "id": "o-1"}},
            {"resource": {"resourceType": "OperationOutcome"}, "search": {"mode": "outcome"}},
            {"fullUrl": "x"},
        ],
        "link": [{"relation": "next", "url": "https://ehr.example.org/fhir?page=2"}],
    }

    assert [r["id"] for r in resources_of(bundle)] == ["o-1"]
    assert resources_of({"resourceType": "Patient", "id": "p"}) == [
        {"resourceType": "Patient", "id": "p"}
    ]
