"""What the EHR says about its Subscriptions: the operations it offers, and `$status`."""

from __future__ import annotations

from typing import Any

import pytest

from cdsflow.listener.domain import NotificationRejected
from cdsflow.listener.domain.subscription_queries import status_from_query, subscription_operations

from .notification_bundles import r4_backport, subscription_status_bundle


def capability(resource: dict[str, Any]) -> dict[str, Any]:
    return {
        "resourceType": "CapabilityStatement",
        "rest": [{"mode": "server", "resource": [resource]}],
    }


@pytest.mark.parametrize(
    ("operation", "expected"),
    [
        # SEKMET: a name, and the backport's definition
        (
            {
                "name": "status",
                "definition": "http://hl7.org/fhir/uv/subscriptions-backport/OperationDefinition/backport-subscription-status",
            },
            {"status"},
        ),
        # R5: only the definition says which
        (
            {
                "name": "get-events",
                "definition": "http://hl7.org/fhir/OperationDefinition/Subscription-events",
            },
            {"events"},
        ),
        ({"name": "$events"}, {"events"}),
        ({"name": "validate"}, set()),
    ],
)
def test_the_subscription_operations_the_ehr_declares(
    operation: dict[str, Any], expected: set[str]
) -> None:
    declared = capability({"type": "Subscription", "operation": [operation]})
    assert subscription_operations(declared) == expected


def test_operations_of_other_types_or_odd_statements_count_for_nothing() -> None:
    assert (
        subscription_operations(
            capability({"type": "Observation", "operation": [{"name": "events"}]})
        )
        == set()
    )
    assert subscription_operations({"resourceType": "CapabilityStatement", "rest": "x"}) == set()


@pytest.mark.parametrize(
    "status",
    [
        r4_backport("query-status", since=7)["entry"][0]["resource"],
        subscription_status_bundle("query-status", since=7)["entry"][0]["resource"],
    ],
)
def test_status_reads_the_count_in_either_shape(status: dict[str, Any]) -> None:
    answer = {"resourceType": "Bundle", "type": "searchset", "entry": [{"resource": status}]}
    assert status_from_query(answer).events_since_subscription_start == 7


@pytest.mark.parametrize(
    "answer",
    [
        {"resourceType": "OperationOutcome"},
        {"resourceType": "Bundle", "type": "searchset", "entry": []},
        {
            "resourceType": "Bundle",
            "entry": [{"resource": {"resourceType": "Parameters", "parameter": []}}],
        },
    ],
)
def test_a_status_answer_without_a_readable_status_is_refused(answer: dict[str, Any]) -> None:
    with pytest.raises(NotificationRejected):
        status_from_query(answer)
