"""Prefetch tokens: 2.0 tokens from the hook's context, and 3.0 tokens with FHIRPath evaluated
on the context and on the prefetch at hand, each item checked before it goes into a query.
(The writeback's use of them with a parsed request: test_writeback_prefetch.py.)"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from cdsflow.fhir.prefetch_tokens import (
    UnresolvableToken,
    is_fhirpath_token,
    prefetch_keys_used,
    resolved_template,
    simple_token_values,
)

DRAFT_ORDERS = {
    "resourceType": "Bundle",
    "type": "collection",
    "entry": [
        {
            "resource": {
                "resourceType": "MedicationRequest",
                "id": "draft-1",
                "status": "draft",
                "medicationReference": {"reference": "Medication/med-1"},
                "requester": {"reference": "Practitioner/pr-1"},
            }
        },
        {
            "resource": {
                "resourceType": "ServiceRequest",
                "id": "draft-2",
                "reasonReference": [
                    {"reference": "Condition/c-1"},
                    {"reference": "Observation/o-1"},
                ],
                "requester": {"reference": "https://ehr.example.org/fhir/PractitionerRole/r-1"},
            }
        },
    ],
}


def order_sign(**members: Any) -> dict[str, Any]:
    """An order-sign hook's context."""
    return {
        "userId": "Practitioner/pr-9",
        "patientId": "pat-1",
        "draftOrders": DRAFT_ORDERS,
        **members,
    }


def today_utc() -> str:
    return datetime.now(UTC).date().isoformat()


def test_relative_dates() -> None:
    before = datetime.now(UTC).date()
    query = resolved_template(
        "Observation?patient={{context.patientId}}&date=gt{{today() - 90 days}}", order_sign()
    )
    after = datetime.now(UTC).date()

    assert query in {
        f"Observation?patient=pat-1&date=gt{day - timedelta(days=90)}" for day in (before, after)
    }


def test_path_traversal_of_of_type_and_resolve_over_the_draft_orders() -> None:
    call = order_sign()

    meds = resolved_template(
        "Medication?_id={{context.draftOrders.entry.resource.ofType(MedicationRequest)"
        ".medication.resolve().id}}",
        call,
    )
    conditions = resolved_template(
        "Condition?_id={{context.draftOrders.entry.resource.ofType(ServiceRequest)"
        ".reasonReference.resolve().ofType(Condition).id}}",
        call,
    )
    requesters = resolved_template(
        "PractitionerRole?_id={{%context.draftOrders.entry.resource.requester.resolve()"
        ".ofType(PractitionerRole).id}}",
        call,
    )

    assert meds == "Medication?_id=med-1"
    assert conditions == "Condition?_id=c-1"
    assert requesters == "PractitionerRole?_id=r-1"


def test_a_collection_is_a_comma_separated_list_and_a_union_joins() -> None:
    query = resolved_template(
        "Practitioner?_id={{context.draftOrders.entry.resource.requester.resolve().id"
        " | context.patientId}}",
        order_sign(),
    )

    assert query == "Practitioner?_id=pr-1,r-1,pat-1"


def test_another_keys_prefetch_is_a_variable() -> None:
    conditions = {
        "resourceType": "Bundle",
        "type": "searchset",
        "entry": [
            {
                "resource": {
                    "resourceType": "Condition",
                    "id": "c-1",
                    "asserter": {"reference": "PractitionerRole/r-7"},
                }
            }
        ],
    }
    template = (
        "PractitionerRole?_id={{%serviceConditions.entry.resource.asserter.resolve()"
        ".ofType(PractitionerRole).id}}"
    )

    assert prefetch_keys_used(template) == {"serviceConditions"}
    assert resolved_template(template, order_sign(), {"serviceConditions": conditions}) == (
        "PractitionerRole?_id=r-7"
    )
    with pytest.raises(UnresolvableToken, match="serviceConditions"):
        resolved_template(template, order_sign(), {})


def test_a_fhirpath_token_yielding_nothing_matches_nothing() -> None:
    template = (
        "Medication?_id={{context.draftOrders.entry.resource.ofType(MedicationRequest)"
        ".medication.resolve().id}}"
    )
    call = order_sign()
    without_orders = {"patientId": "pat-1"}

    assert resolved_template(template, call) is not None
    assert resolved_template(template, without_orders) is None


@pytest.mark.parametrize(
    "token",
    [
        "context.draftOrders.entry.resource.id.foo(",  # not FHIRPath
        "context.draftOrders.entry.resource.nosuchfunction()",
        "%undeclared.entry.resource.id",
        "context.draftOrders.entry.resource.ofType(MedicationRequest).status + '&x=1'",
        "now() | 'a b'",
    ],
)
def test_an_unresolvable_fhirpath_token_is_refused(token: str) -> None:
    with pytest.raises(UnresolvableToken) as refused:
        resolved_template("MedicationRequest?_id={{" + token + "}}", order_sign())

    assert "&x=1" not in str(refused.value)


def test_dates_with_a_zone_are_percent_encoded() -> None:
    query = resolved_template("Observation?date=lt{{now()}}", order_sign())

    assert query is not None
    assert query.startswith(f"Observation?date=lt{today_utc()[:4]}")
    assert "+" not in query


def test_two_point_zero_tokens_are_not_fhirpath() -> None:
    assert not is_fhirpath_token("context.patientId")
    assert not is_fhirpath_token("userPractitionerId")
    assert is_fhirpath_token("today()")
    assert is_fhirpath_token("context.draftOrders.entry.resource.id")


def test_two_point_zero_tokens_take_only_ids_from_the_context() -> None:
    values = simple_token_values(
        order_sign(encounterId="enc-3", userId="PractitionerRole/role-2", other="x")
    )

    assert values == {
        "context.patientId": "pat-1",
        "context.encounterId": "enc-3",
        "context.userId": "PractitionerRole/role-2",
        "userPractitionerRoleId": "role-2",
    }
    assert simple_token_values({"patientId": "pat-1&_id=x", "encounterId": 7}) == {}
    with pytest.raises(UnresolvableToken, match=r"context\.encounterId"):
        resolved_template("Encounter/{{context.encounterId}}", order_sign())
