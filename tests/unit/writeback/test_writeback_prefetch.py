"""Prefetch: which templates the EHR satisfied, token resolution, and the resources in what
it sent."""

from __future__ import annotations

from typing import Any

import pytest

from cdsflow.writeback.domain.hook_requests import HookRequest
from cdsflow.writeback.domain.prefetch import (
    bounded,
    is_on_server,
    is_provided,
    next_page,
    prefetch_plan,
    resources_of,
    with_page,
)
from cdsflow.writeback.domain.prefetch_tokens import UnresolvableToken, resolved_template

TEMPLATES = {
    "patient": "Patient/{{context.patientId}}",
    "vitals": "Observation?patient={{context.patientId}}&category=vital-signs",
    "user": "Practitioner/{{userPractitionerId}}",
}


def request(**fields: Any) -> HookRequest:
    return HookRequest(hook_instance="h-1", patient_id="pat-1", **fields)


def test_tokens_are_resolved_from_the_context_and_the_user() -> None:
    call = request(user_id="Practitioner/pr-9", encounter_id="enc-3")

    assert resolved_template(TEMPLATES["vitals"], call) == (
        "Observation?patient=pat-1&category=vital-signs"
    )
    assert resolved_template(TEMPLATES["user"], call) == "Practitioner/pr-9"
    assert resolved_template("Encounter/{{ context.encounterId }}", call) == "Encounter/enc-3"


@pytest.mark.parametrize(
    ("template", "user_id"),
    [
        ("Practitioner/{{userPractitionerId}}", "PractitionerRole/r-1"),
        ("Encounter/{{context.encounterId}}", None),
        ("Observation?date=ge{{today( - 90 days}}", None),
        ("Observation?code={{'a&_count=1000'}}", None),
        ("Practitioner/{{context.userId}}", "Practitioner/x&_count=1000"),
    ],
)
def test_a_token_that_cannot_be_resolved_is_refused_without_its_value(
    template: str, user_id: str | None
) -> None:
    with pytest.raises(UnresolvableToken) as refused:
        resolved_template(template, request(user_id=user_id))

    assert "x&" not in str(refused.value)
    assert "a&" not in str(refused.value)


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
    assert not plan.unresolvable
    assert plan.incomplete == ()
    assert not is_provided(None)
    assert not is_provided(outcome)


def test_a_missing_template_without_its_token_is_unresolvable() -> None:
    plan = prefetch_plan(TEMPLATES, request())

    assert plan.unresolvable is not None
    assert list(plan.unresolvable) == ["user"]
    assert "userPractitionerId" in plan.unresolvable["user"]


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


def test_a_template_reading_a_key_declared_after_it_is_unresolvable() -> None:
    templates = {
        "practitioners": "Practitioner?_id={{%roles.entry.resource.practitioner.resolve().id}}",
        "roles": "PractitionerRole?practitioner={{userPractitionerId}}",
    }

    plan = prefetch_plan(templates, request(user_id="Practitioner/pr-9"))

    assert plan.unresolvable is not None
    assert list(plan.unresolvable) == ["practitioners"]
    assert plan.to_fetch == {"roles": "PractitionerRole?practitioner=pr-9"}


def test_a_template_reading_an_earlier_key_waits_for_it() -> None:
    templates = {
        "roles": "PractitionerRole?practitioner={{userPractitionerId}}",
        "practitioners": "Practitioner?_id={{%roles.entry.resource.practitioner.resolve().id}}",
    }

    plan = prefetch_plan(templates, request(user_id="Practitioner/pr-9"))

    assert plan.dependent == ("practitioners",)
    assert not plan.unresolvable


def test_a_provided_searchset_with_a_next_page_is_incomplete() -> None:
    page = {
        "resourceType": "Bundle",
        "type": "searchset",
        "entry": [{"resource": {"resourceType": "Observation", "id": "o-1"}}],
        "link": [{"relation": "next", "url": "https://ehr.example.org/fhir/Observation?p=2"}],
    }

    plan = prefetch_plan(TEMPLATES, request(prefetch={"vitals": page}))

    assert plan.incomplete == ("vitals",)
    assert next_page(page) == "https://ehr.example.org/fhir/Observation?p=2"
    assert next_page({"resourceType": "Patient"}) is None


def test_pages_are_merged_and_bounded() -> None:
    first = {
        "resourceType": "Bundle",
        "type": "searchset",
        "entry": [{"resource": {"resourceType": "Observation", "id": "o-1"}}],
        "link": [{"relation": "next", "url": "https://ehr.example.org/fhir/x?p=2"}],
    }
    second = {
        "resourceType": "Bundle",
        "entry": [
            {"resource": {"resourceType": "Observation", "id": "o-2"}},
            {"resource": {"resourceType": "Observation", "id": "o-3"}},
        ],
        "link": [{"relation": "self", "url": "https://ehr.example.org/fhir/x?p=2"}],
    }

    merged = with_page(first, second)

    assert [r["id"] for r in resources_of(merged)] == ["o-1", "o-2", "o-3"]
    assert next_page(merged) is None
    assert [r["id"] for r in resources_of(bounded(merged, 2))] == ["o-1", "o-2"]
    assert "link" not in bounded(merged, 2)


@pytest.mark.parametrize(
    ("url", "on_server"),
    [
        ("https://ehr.example.org/fhir/Observation?patient=1&_page=2", True),
        ("https://ehr.example.org/fhir?_getpages=abc&_offset=10", True),
        ("https://ehr.example.org/fhirother/Observation?_page=2", False),
        ("https://elsewhere.example.org/fhir/Observation?_page=2", False),
        ("http://ehr.example.org/fhir/Observation?_page=2", False),
        ("https://ehr.example.org:8443/fhir/Observation?_page=2", False),
        ("https://user@ehr.example.org/fhir/Observation?_page=2", False),
        ("not a url", False),
    ],
)
def test_a_next_page_must_be_on_the_fhir_server(url: str, on_server: bool) -> None:
    assert is_on_server(url, "https://ehr.example.org/fhir") is on_server
