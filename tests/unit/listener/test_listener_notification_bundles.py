"""Reading topic-based notification Bundles (R4 backport, R4B, R5) into one value."""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from typing import Any

import pytest

from cdsflow.listener.domain import (
    EMPTY,
    FULL_RESOURCE,
    ID_ONLY,
    R4_BACKPORT,
    R4B_BACKPORT,
    R5,
    NotificationRejected,
    notification_of,
    read_notification_bundle,
)

from .notification_bundles import (
    SUBSCRIPTION,
    TOPIC,
    full_url_entry,
    r4_backport,
    subscription_status_bundle,
)
from .vital_signs import EHR_BASE_URL, PATIENT_NAME, respiratory_rate

OBSERVATION = f"{EHR_BASE_URL}/Observation/obs-rr-1"
PATIENT = f"{EHR_BASE_URL}/Patient/pat-1"

SHAPES: dict[str, Callable[..., dict[str, Any]]] = {
    R4_BACKPORT: r4_backport,
    R4B_BACKPORT: subscription_status_bundle,
    R5: functools.partial(subscription_status_bundle, r5=True),
}


def rejected(bundle: Any) -> NotificationRejected:
    with pytest.raises(NotificationRejected) as refused:
        read_notification_bundle(json.dumps(bundle).encode())
    assert refused.value.status_code == 400
    assert PATIENT_NAME not in refused.value.description
    return refused.value


@pytest.mark.parametrize("shape", SHAPES)
def test_a_handshake_in_every_shape(shape: str) -> None:
    notification = notification_of(SHAPES[shape]("handshake", since=0))

    assert notification.shape == shape
    assert notification.subscription == SUBSCRIPTION
    assert notification.topic == TOPIC
    assert notification.notification_type == "handshake"
    assert notification.events_since_subscription_start == 0
    assert notification.events == ()
    assert notification.payload == EMPTY


@pytest.mark.parametrize("shape", SHAPES)
def test_a_full_resource_event_carries_its_resource_and_context(shape: str) -> None:
    resource = respiratory_rate()
    bundle = SHAPES[shape]("event-notification", [(7, OBSERVATION, (PATIENT,))], [resource])

    notification = notification_of(bundle)

    [event] = notification.events
    assert (event.event_number, event.focus, event.resource) == (7, OBSERVATION, resource)
    assert event.additional_context == (PATIENT,)
    assert notification.events_since_subscription_start == 7
    assert notification.payload == FULL_RESOURCE


@pytest.mark.parametrize("shape", SHAPES)
def test_several_events_in_one_bundle(shape: str) -> None:
    first, second = respiratory_rate("obs-a"), respiratory_rate("obs-b")
    bundle = SHAPES[shape](
        "query-event",
        [(3, f"{EHR_BASE_URL}/Observation/obs-a", ()), (4, "Observation/obs-b", ())],
        [second, first],
    )

    events = notification_of(bundle).events

    assert [(e.event_number, e.resource) for e in events] == [(3, first), (4, second)]


def test_the_focus_finds_its_entry_by_type_and_id_when_the_urls_differ() -> None:
    resource = respiratory_rate()
    bundle = subscription_status_bundle(
        "event-notification", [(2, "https://other.base/R5/Observation/obs-rr-1", ())], [resource]
    )
    assert notification_of(bundle).events[0].resource == resource


def test_id_only_names_the_focus_without_a_resource() -> None:
    notification = notification_of(r4_backport("event-notification", [(2, OBSERVATION, ())]))

    [event] = notification.events
    assert (event.focus, event.resource, event.payload) == (OBSERVATION, None, ID_ONLY)
    assert notification.payload == ID_ONLY


def test_id_only_may_name_the_resource_by_an_entry_with_only_a_full_url() -> None:
    bundle = subscription_status_bundle(
        "event-notification", [(2, None, ())], [full_url_entry(OBSERVATION)], r5=True
    )
    [event] = notification_of(bundle).events
    assert (event.focus, event.resource) == (OBSERVATION, None)


def test_an_empty_payload_has_events_without_focus() -> None:
    notification = notification_of(r4_backport("event-notification", [(5, None, ())]))
    assert [(e.event_number, e.focus) for e in notification.events] == [(5, None)]
    assert notification.payload == EMPTY


def test_counters_may_be_json_integers() -> None:
    bundle = subscription_status_bundle("event-notification", [(2, None, ())], r5=True)
    status = bundle["entry"][0]["resource"]
    status["eventsSinceSubscriptionStart"] = 9
    status["notificationEvent"][0]["eventNumber"] = 9
    notification = notification_of(bundle)
    assert notification.events_since_subscription_start == 9
    assert notification.events[0].event_number == 9


@pytest.mark.parametrize(
    ("bundle", "reason", "expression"),
    [
        ({"resourceType": "Observation"}, "not-a-notification", "resourceType"),
        ({"no": "resourceType"}, "not-fhir", None),
        ({"resourceType": "Bundle", "type": "message", "entry": []}, "not-a-notification", None),
        ({"resourceType": "Bundle", "type": "history"}, "no-subscription-status", None),
        (
            {"resourceType": "Bundle", "type": "history", "entry": [{"resource": {}}]},
            "no-subscription-status",
            "Bundle.entry[0].resource",
        ),
    ],
)
def test_what_is_not_a_notification_bundle_is_refused(
    bundle: dict[str, Any], reason: str, expression: str | None
) -> None:
    refusal = rejected(bundle)
    assert refusal.reason == reason
    if expression is not None:
        assert refusal.expression[0] == expression


def test_an_r5_bundle_must_start_with_a_subscription_status() -> None:
    bundle = r4_backport("handshake")
    bundle["type"] = "subscription-notification"
    assert rejected(bundle).reason == "no-subscription-status"


@pytest.mark.parametrize(
    ("damage", "path"),
    [
        (lambda p: p.pop(0), "Bundle.entry[0].resource"),  # no subscription
        (lambda p: p[3].update(valueCode="bogus"), "Bundle.entry[0].resource.parameter[3]"),
        (lambda p: p[4].update(valueString="-1"), "Bundle.entry[0].resource.parameter[4]"),
        (lambda p: p[5]["part"][0].update(valueString="two"), "parameter[5].part[0]"),
        (lambda p: p[5]["part"][2].update(valueReference={}), "parameter[5].part[2]"),
        (lambda p: p.append({"value": "no name"}), "Bundle.entry[0].resource.parameter[6]"),
    ],
)
def test_a_malformed_r4_status_is_refused_with_its_path(damage: Any, path: str) -> None:
    bundle = r4_backport("event-notification", [(2, OBSERVATION, ())])
    damage(bundle["entry"][0]["resource"]["parameter"])

    refusal = rejected(bundle)

    assert refusal.reason == "invalid"
    assert refusal.expression[0].endswith(path)
    assert refusal.expression[0] in refusal.description


@pytest.mark.parametrize(
    ("element", "value", "path"),
    [
        ("subscription", {"display": PATIENT_NAME}, "subscription"),
        ("type", PATIENT_NAME, "type"),
        ("eventsSinceSubscriptionStart", PATIENT_NAME, "eventsSinceSubscriptionStart"),
        ("notificationEvent", [{"eventNumber": PATIENT_NAME}], "notificationEvent[0].eventNumber"),
        ("notificationEvent", [{"eventNumber": "1", "focus": "x"}], "notificationEvent[0].focus"),
        ("topic", {"url": PATIENT_NAME}, "topic"),
    ],
)
def test_a_malformed_subscription_status_is_refused_without_its_values(
    element: str, value: Any, path: str
) -> None:
    bundle = subscription_status_bundle("heartbeat")
    bundle["entry"][0]["resource"][element] = value

    refusal = rejected(bundle)

    assert refusal.expression == (f"Bundle.entry[0].resource.{path}",)


def test_an_event_notification_without_events_is_refused() -> None:
    refusal = rejected(subscription_status_bundle("event-notification", r5=True))
    assert refusal.expression == ("Bundle.entry[0].resource",)


def test_an_entry_resource_that_is_not_a_resource_is_refused() -> None:
    bundle = r4_backport("event-notification", [(2, OBSERVATION, ())])
    bundle["entry"].append({"fullUrl": OBSERVATION, "resource": ["not", "a", "resource"]})
    assert rejected(bundle).expression == ("Bundle.entry[1].resource",)


@pytest.mark.parametrize(("raw", "reason"), [(b"{", "not-json"), (b"\xff", "not-utf8")])
def test_a_body_that_is_not_json_is_refused(raw: bytes, reason: str) -> None:
    with pytest.raises(NotificationRejected) as refused:
        read_notification_bundle(raw)
    assert (refused.value.status_code, refused.value.reason) == (400, reason)
