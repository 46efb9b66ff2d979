"""The listener against the examples of the conformance pack (FHIR R4 core, the Subscriptions
Backport IG for R4 and R4B, FHIR R5)."""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from pathlib import Path

import pytest

from cdsflow.fhir import validate_resource
from cdsflow.listener.domain import (
    EMPTY,
    FULL_RESOURCE,
    ID_ONLY,
    R4_BACKPORT,
    R4B_BACKPORT,
    R5,
    NotificationRejected,
    UnusableResource,
    notification_of,
    patient_reference_of,
    read_notification_bundle,
    validate_event_resource,
)

pytestmark = pytest.mark.conformance

SUBSCRIPTIONS = Path("subscriptions")
UNIT_TEST_EHR = "http://ehr.test/fhir"


def test_the_backport_examples_encounter_is_a_patient_of_its_own_ehr_only(
    conformance_dir: Path,
) -> None:
    example = SUBSCRIPTIONS / "backport-ig/r4/Bundle-r4-notification-full-resource.json"
    bundle = json.loads((conformance_dir / example).read_text())
    encounter = bundle["entry"][1]["resource"]
    assert encounter["subject"]["reference"].startswith("https://example.org/fhir/Patient/")

    assert patient_reference_of(encounter, "https://example.org/fhir/") == (
        "Patient/1599eb66-431a-447c-a3de-6897fe9ae9a1"
    )
    with pytest.raises(UnusableResource) as refused:
        patient_reference_of(encounter, UNIT_TEST_EHR)
    assert refused.value.reason == "foreign-patient"
    assert refused.value.expression == ("subject.reference",)
    assert "example.org" not in refused.value.description


@dataclass(frozen=True)
class Described:
    """What an example notification Bundle describes: its status and its events as
    `(event number, focus, type of the resource carried or None, additional context)`."""

    shape: str
    notification_type: str
    status: str
    events_since: int
    events: tuple[tuple[int, str | None, str | None, tuple[str, ...]], ...] = ()
    payload: str = EMPTY


R4_ENCOUNTER = "https://example.org/fhir/Encounter/86009987-eabe-42bf-8c02-b112b18cb616"
R4_PATIENT = "https://example.org/fhir/Patient/1599eb66-431a-447c-a3de-6897fe9ae9a1"
R5_BASE = "http://example.org/FHIR/R5"
NO_EVENT = ((2, None, None, ()),)
FULL_ENCOUNTER = ((2, R4_ENCOUNTER, "Encounter", ()),)
ID_ONLY_ENCOUNTER = ((2, R4_ENCOUNTER, None, ()),)
MULTI_RESOURCE = ((2, R4_ENCOUNTER, "Encounter", (R4_PATIENT,)),)


def _backport(shape: str) -> dict[str, Described]:
    event = functools.partial(Described, shape, "event-notification", "active", 2)
    return {
        "empty": event(NO_EVENT),
        "empty-with-auth": event(NO_EVENT),
        "error": Described(shape, "query-status", "error", 3),
        "full-resource": event(FULL_ENCOUNTER, FULL_RESOURCE),
        "full-resource-with-query": event(FULL_ENCOUNTER, FULL_RESOURCE),
        "handshake": Described(shape, "handshake", "requested", 0),
        "heartbeat": Described(shape, "heartbeat", "active", 2),
        "id-only": event(ID_ONLY_ENCOUNTER, ID_ONLY),
        "id-only-with-auth": event(ID_ONLY_ENCOUNTER, ID_ONLY),
        "id-only-with-query": event(ID_ONLY_ENCOUNTER, ID_ONLY),
        "multi-resource": event(MULTI_RESOURCE, FULL_RESOURCE),
    }


def _r5() -> dict[str, Described]:
    event = functools.partial(Described, R5, "event-notification", "active", 2)
    encounter, patient = f"{R5_BASE}/Encounter/2", (f"{R5_BASE}/Patient/ABC",)
    return {
        "empty": event(NO_EVENT),
        "error": Described(R5, "event-notification", "error", 328, ((328, None, None, ()),)),
        "full-resource": event(((2, encounter, "Encounter", ()),), FULL_RESOURCE),
        "full-resource-with-patient": event(((2, encounter, "Encounter", patient),), FULL_RESOURCE),
        "handshake": Described(R5, "handshake", "requested", 0),
        "heartbeat": Described(R5, "heartbeat", "active", 310),
        "id-only": event(((2, encounter, None, ()),), ID_ONLY),
        "id-only-with-patient": event(((2, encounter, None, patient),), ID_ONLY),
        # a message Bundle (the messaging channel) whose focus is the notification Bundle
        "message-id-only": event(((2, encounter, "Encounter", ()),), FULL_RESOURCE),
        "query-event": Described(
            R5,
            "query-event",
            "active",
            310,
            (
                (307, f"{R5_BASE}/Encounter/307", "Encounter", patient),
                (308, f"{R5_BASE}/Encounter/308", "Encounter", patient),
            ),
            FULL_RESOURCE,
        ),
        "query-status": Described(R5, "query-status", "active", 310),
    }


EXAMPLES = {
    **{
        f"backport-ig/r4/Bundle-r4-notification-{name}.json": described
        for name, described in _backport(R4_BACKPORT).items()
    },
    **{
        f"backport-ig/r4b/Bundle-r4b-notification-{name}.json": described
        for name, described in _backport(R4B_BACKPORT).items()
    },
    **{f"r5-core/examples/Bundle-notification-{name}.json": d for name, d in _r5().items()},
}


def test_every_example_bundle_in_the_pack_is_described_here(conformance_dir: Path) -> None:
    found = {
        str(path.relative_to(conformance_dir / SUBSCRIPTIONS))
        for path in (conformance_dir / SUBSCRIPTIONS).rglob("Bundle-*.json")
    }
    assert found == set(EXAMPLES)


@pytest.mark.parametrize("example", sorted(EXAMPLES))
def test_the_example_bundle_parses_to_the_events_it_describes(
    conformance_dir: Path, example: str
) -> None:
    described = EXAMPLES[example]
    raw = (conformance_dir / SUBSCRIPTIONS / example).read_bytes()
    if described.shape == R5 and example.endswith("message-id-only.json"):
        with pytest.raises(NotificationRejected) as refused:
            read_notification_bundle(raw)
        assert (refused.value.status_code, refused.value.expression) == (400, ("Bundle.type",))
        message = json.loads(raw)
        assert message["type"] == "message"
        notification = notification_of(message["entry"][1]["resource"])
    else:
        notification = read_notification_bundle(raw)

    r4 = described.shape != R5
    assert notification.shape == described.shape
    assert notification.subscription == (
        "https://example.org/fhir/Subscription/admission" if r4 else f"{R5_BASE}/Subscription/123"
    )
    assert notification.notification_type == described.notification_type
    assert notification.status == described.status
    assert notification.events_since_subscription_start == described.events_since
    assert notification.payload == described.payload
    events = tuple(
        (
            event.event_number,
            event.focus,
            event.resource["resourceType"] if event.resource else None,
            event.additional_context,
        )
        for event in notification.events
    )
    assert events == described.events
    for event in notification.events:
        if event.resource is not None and event.focus is not None:
            assert event.focus.endswith(f"/{event.resource['resourceType']}/{event.resource['id']}")


# the additional-context resources each example carries, per event (the others carry none)
CONTEXT_CARRIED = {
    "backport-ig/r4/Bundle-r4-notification-multi-resource.json": (("Patient",),),
    "backport-ig/r4b/Bundle-r4b-notification-multi-resource.json": (("Patient",),),
    "r5-core/examples/Bundle-notification-full-resource-with-patient.json": (("Patient",),),
    "r5-core/examples/Bundle-notification-query-event.json": (("Patient",), ("Patient",)),
}


@pytest.mark.parametrize("example", sorted(EXAMPLES))
def test_the_additional_context_an_example_carries_is_found_and_valid(
    conformance_dir: Path, example: str
) -> None:
    """What the listener publishes after each focus: the context resources in the Bundle,
    each valid FHIR (they become clinical events); a context only referenced is not read."""
    raw = (conformance_dir / SUBSCRIPTIONS / example).read_bytes()
    try:
        notification = read_notification_bundle(raw)
    except NotificationRejected:  # the R5 message Bundle, checked above
        return
    carried = tuple(
        tuple(resource["resourceType"] for resource in event.context_resources)
        for event in notification.events
    )
    expected = CONTEXT_CARRIED.get(example, tuple(() for _ in notification.events))
    assert carried == expected
    for event in notification.events:
        for resource in event.context_resources:
            validate_resource(resource)


# the examples whose focus is valid FHIR R5 only (the R5 Encounter's `class` is a list)
R5_ONLY_FOCUS = {
    "r5-core/examples/Bundle-notification-full-resource.json",
    "r5-core/examples/Bundle-notification-full-resource-with-patient.json",
    "r5-core/examples/Bundle-notification-query-event.json",
}


@pytest.mark.parametrize("example", sorted(EXAMPLES))
def test_no_example_bundle_is_refused_for_its_resources(
    conformance_dir: Path, example: str
) -> None:
    """An R5 notification's resources are checked as R5: one valid in R5 only is recorded as
    `r5-only`, never refused (a refusal would switch the EHR's Subscription off)."""
    raw = (conformance_dir / SUBSCRIPTIONS / example).read_bytes()
    try:
        notification = read_notification_bundle(raw)
    except NotificationRejected:  # the R5 message Bundle, checked above
        return
    r4 = [
        validate_event_resource(event.resource, "focus", r5=notification.shape == R5)
        for event in notification.events
        if event.resource is not None
    ]
    assert (not all(r4)) == (example in R5_ONLY_FOCUS)
