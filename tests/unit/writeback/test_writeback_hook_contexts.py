"""Each hook's own context rules (order-select, order-sign, encounter-start), the lent
`fhirAuthorization`, and prefetch values: requests written here (the Hook Library's
examples are in tests/conformance/test_cds_hooks_hook_examples.py)."""

from __future__ import annotations

from typing import Any

import pytest

from cdsflow.writeback.domain.hook_requests import InvalidHookRequest, hook_request

DRAFT_ORDERS = {
    "resourceType": "Bundle",
    "type": "collection",
    "entry": [
        {"resource": {"resourceType": "MedicationRequest", "id": "d-1", "status": "draft"}},
        {"fullUrl": "urn:uuid:no-resource"},
    ],
}


def body(hook: str, **context: Any) -> dict[str, Any]:
    return {
        "hook": hook,
        "hookInstance": "h-1",
        "context": {"userId": "PractitionerRole/r-1", "patientId": "pat-1", **context},
    }


def test_order_select_takes_its_selections_and_the_draft_orders_resources() -> None:
    request = hook_request(
        body("order-select", selections=["MedicationRequest/d-1"], draftOrders=DRAFT_ORDERS),
        hook="order-select",
    )

    assert request.selections == ("MedicationRequest/d-1",)
    assert [r["id"] for r in request.draft_orders] == ["d-1"]


@pytest.mark.parametrize(
    ("context", "problem"),
    [
        ({"draftOrders": DRAFT_ORDERS}, "'context.selections' is required"),
        ({"selections": [], "draftOrders": DRAFT_ORDERS}, "'context.selections' is required"),
        ({"selections": ["d-1"], "draftOrders": DRAFT_ORDERS}, "'context.selections'"),
        ({"selections": ["MedicationRequest/d-1"]}, "'context.draftOrders' is required"),
        (
            {"selections": ["MedicationRequest/d-1"], "draftOrders": {"resourceType": "List"}},
            "'context.draftOrders' is required and must be a FHIR Bundle",
        ),
    ],
)
def test_order_select_without_what_it_is_about_is_refused(
    context: dict[str, Any], problem: str
) -> None:
    with pytest.raises(InvalidHookRequest, match=problem):
        hook_request(body("order-select", **context), hook="order-select")


def test_order_sign_needs_draft_orders_only() -> None:
    request = hook_request(body("order-sign", draftOrders=DRAFT_ORDERS), hook="order-sign")
    assert len(request.draft_orders) == 1

    with pytest.raises(InvalidHookRequest, match=r"'context\.draftOrders' is required"):
        hook_request(body("order-sign"), hook="order-sign")


def test_encounter_start_needs_an_encounter_id() -> None:
    request = hook_request(body("encounter-start", encounterId="enc-9"), hook="encounter-start")
    assert request.encounter_id == "enc-9"

    with pytest.raises(InvalidHookRequest, match=r"'context\.encounterId' is required"):
        hook_request(body("encounter-start"), hook="encounter-start")


def test_a_call_of_another_hook_than_the_services_is_refused() -> None:
    with pytest.raises(InvalidHookRequest, match="answers the 'order-sign' hook only"):
        hook_request(body("patient-view"), hook="order-sign")


def test_an_unknown_hook_is_refused_when_no_service_hook_is_given() -> None:
    with pytest.raises(InvalidHookRequest, match="'hook' must be one of"):
        hook_request(body("appointment-book"))


def test_the_lent_token_is_kept_for_the_fetch_and_never_shown() -> None:
    request = hook_request(
        {
            **body("patient-view"),
            "fhirServer": "https://ehr.example.org/fhir",
            "fhirAuthorization": {"access_token": "secret-token", "token_type": "bearer"},
        }
    )

    assert request.fhir_authorization is not None
    assert request.fhir_authorization.access_token == "secret-token"
    assert "secret-token" not in repr(request)


@pytest.mark.parametrize(
    ("authorization", "problem"),
    [
        ({"token_type": "Bearer"}, "access_token' is required"),
        ({"access_token": "t", "token_type": "MAC"}, "token_type' must be 'Bearer'"),
        ("t", "'fhirAuthorization' must be an object"),
    ],
)
def test_a_broken_fhir_authorization_is_refused(authorization: Any, problem: str) -> None:
    request = {
        **body("patient-view"),
        "fhirServer": "https://ehr.example.org/fhir",
        "fhirAuthorization": authorization,
    }
    with pytest.raises(InvalidHookRequest, match=problem):
        hook_request(request)


def test_prefetch_values_are_resources_or_null() -> None:
    accepted = hook_request({**body("patient-view"), "prefetch": {"a": None, "b": {"x": 1}}})
    assert accepted.prefetch == {"a": None, "b": {"x": 1}}

    with pytest.raises(InvalidHookRequest, match="each 'prefetch' value"):
        hook_request({**body("patient-view"), "prefetch": {"a": "Patient/1"}})


def test_members_of_the_3_0_ballot_and_extensions_are_accepted() -> None:
    request = {
        **body("patient-view"),
        "extension": {"org.example.anything": {"x": 1}},
        "context": {"patientId": "pat-1", "userId": "Practitioner/p", "newMember": [1, 2]},
    }

    assert hook_request(request).patient_id == "pat-1"
