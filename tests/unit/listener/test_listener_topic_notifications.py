"""Topic-based notification Bundles posted to the rest-hook endpoint, in-process: what each
kind answers, what reaches the (recording) broker, what is read from the (recording) EHR."""

from __future__ import annotations

import httpx
import pytest

from cdsflow.contracts import NotificationKind

from .in_process import (
    AUTHORIZED,
    ENDPOINT,
    LIMIT_BYTES,
    Listener,
    RecordingEhr,
    RecordingPublisher,
    only_issue,
    post_bundle,
    put_resource,
)
from .notification_bundles import TOPIC, r4_backport, subscription_status_bundle
from .vital_signs import CHANNEL_SECRET, EHR_BASE_URL, PATIENT_NAME, respiratory_rate

OBSERVATION = f"{EHR_BASE_URL}/Observation/obs-rr-1"


@pytest.mark.parametrize("notification_type", ["handshake", "heartbeat", "query-status"])
async def test_status_notifications_are_acknowledged_and_counted(
    listener: Listener, publisher: RecordingPublisher, notification_type: str
) -> None:
    for bundle in (
        r4_backport(notification_type),
        subscription_status_bundle(notification_type),
        subscription_status_bundle(notification_type, r5=True),
    ):
        response = await post_bundle(listener, bundle)
        assert response.status_code == 200
        assert only_issue(response)["severity"] == "information"

    assert listener.count(f"topic-{notification_type}", "acknowledged") == 3
    assert publisher.events == []
    assert listener.count("rest-hook-ping", "acknowledged") == 0


async def test_a_full_resource_event_is_published_with_the_event_id_of_a_put(
    listener: Listener, publisher: RecordingPublisher
) -> None:
    resource = respiratory_rate(patient_id="pat-42")
    bundle = r4_backport("event-notification", [(1, OBSERVATION, ())], [resource])

    response = await post_bundle(listener, bundle)
    put = await put_resource(listener, resource)

    assert response.status_code == put.status_code == 200
    # the same change through the other flavour is the same event: not published twice
    [topic_event] = publisher.events
    assert f"{topic_event.event_id} already published" in only_issue(put)["diagnostics"]
    assert topic_event.event_id in only_issue(response)["diagnostics"]
    assert topic_event.source.kind == NotificationKind.NOTIFICATION_KIND_TOPIC_FULL_RESOURCE
    assert topic_event.patient_reference == "Patient/pat-42"
    assert topic_event.patient_key == listener.keyer.patient_key("Patient/pat-42")
    assert listener.count("topic-event-notification", "published") == 1
    assert listener.ehr.reads == []


async def test_every_event_of_a_bundle_is_published_before_the_answer(
    listener: Listener, publisher: RecordingPublisher
) -> None:
    resources = [respiratory_rate(f"obs-{n}", patient_id=f"pat-{n}") for n in range(3)]
    events = [(n + 1, f"Observation/obs-{n}", ()) for n in range(3)]
    bundle = subscription_status_bundle("event-notification", events, resources, r5=True)

    response = await post_bundle(listener, bundle)

    assert response.status_code == 200
    assert [e.resource_id for e in publisher.events] == ["obs-0", "obs-1", "obs-2"]


async def test_a_resource_without_a_patient_is_recorded_not_refused(
    listener: Listener, publisher: RecordingPublisher
) -> None:
    usable, ward = respiratory_rate("obs-1"), respiratory_rate("obs-2")
    ward["subject"] = {"reference": "Group/ward-3"}
    events = [(1, "Observation/obs-1", ()), (2, "Observation/obs-2", ())]

    response = await post_bundle(
        listener, r4_backport("event-notification", events, [usable, ward])
    )

    assert response.status_code == 200
    assert [e.resource_id for e in publisher.events] == ["obs-1"]
    [(recorded, unusable)] = publisher.unusable
    assert (recorded.resource_id, unusable.reason) == ("obs-2", "no-patient")
    assert listener.unusable_count("no-patient") == 1


@pytest.mark.parametrize("read_back", [True, False])
async def test_an_invalid_resource_refuses_the_bundle_and_publishes_nothing(
    listener: Listener, publisher: RecordingPublisher, read_back: bool
) -> None:
    """Refused at once, even while the events topic is not read back (the dedupe memory is
    asked only about a well-formed Bundle)."""
    listener.published.caught_up = read_back
    valid, invalid = respiratory_rate("obs-1"), respiratory_rate("obs-2")
    invalid["valueQuantity"]["value"] = PATIENT_NAME
    events = [(1, "Observation/obs-1", ()), (2, "Observation/obs-2", ())]

    response = await post_bundle(
        listener, r4_backport("event-notification", events, [valid, invalid])
    )

    assert response.status_code == 400
    issue = only_issue(response)
    assert issue["expression"] == ["notificationEvent[1].focus resource"]
    assert PATIENT_NAME not in response.text
    assert publisher.events == []
    assert publisher.unusable == []
    assert listener.count("topic-event-notification", "invalid") == 1


async def test_an_id_only_event_is_read_from_the_ehr_then_published(
    listener: Listener, publisher: RecordingPublisher
) -> None:
    resource = respiratory_rate(patient_id="pat-7")
    listener.ehr.add(resource)

    response = await post_bundle(
        listener, r4_backport("event-notification", [(4, OBSERVATION, ())])
    )
    put = await put_resource(listener, resource)

    assert response.status_code == put.status_code == 200
    [fetched] = publisher.events
    assert listener.ehr.reads == [OBSERVATION]
    assert f"{fetched.event_id} already published" in only_issue(put)["diagnostics"]
    assert fetched.source.kind == NotificationKind.NOTIFICATION_KIND_TOPIC_ID_ONLY
    assert fetched.patient_reference == "Patient/pat-7"


@pytest.mark.parametrize(
    "focus",
    [
        "https://other.example/fhir/Observation/obs-rr-1",
        "//other.example/fhir/Observation/obs-rr-1",
        f"{EHR_BASE_URL}/../evil/Observation/obs-rr-1",
        f"{EHR_BASE_URL}/Observation/obs-rr-1?_format=xml",
        "urn:uuid:0d6a1c2e-0000-4000-8000-000000000001",
        "a/b/Observation/obs-rr-1",
    ],
)
async def test_a_focus_off_the_ehr_is_recorded_and_never_read(
    listener: Listener, publisher: RecordingPublisher, focus: str
) -> None:
    listener.ehr.add(respiratory_rate())

    response = await post_bundle(listener, r4_backport("event-notification", [(1, focus, ())]))

    assert response.status_code == 200
    assert listener.ehr.reads == []
    assert publisher.events == []
    [(_, unusable)] = publisher.unusable
    assert unusable.reason == "foreign-focus"
    assert "other.example" not in response.text
    assert listener.count("topic-event-notification", "recorded-unusable") == 1


async def test_a_focus_the_ehr_no_longer_has_is_recorded(
    listener: Listener, publisher: RecordingPublisher
) -> None:
    response = await post_bundle(
        listener, r4_backport("event-notification", [(1, OBSERVATION, ())])
    )

    assert response.status_code == 200
    assert only_issue(response)["severity"] == "warning"
    [(recorded, unusable)] = publisher.unusable
    assert unusable.reason == "focus-not-found"
    assert (recorded.resource_type, recorded.resource_id) == ("Observation", "obs-rr-1")


@pytest.mark.parametrize(
    "answer",
    [
        httpx.Response(302, headers={"Location": "https://other.example/Observation/obs-rr-1"}),
        httpx.Response(200, json={"resourceType": "Observation", "id": "another-id"}),
        httpx.Response(200, content=b"x" * (LIMIT_BYTES + 1)),
        httpx.Response(200, json={"resourceType": "Observation", "id": "obs-rr-1", "note": "x"}),
    ],
    ids=["redirect", "another-resource", "too-large", "invalid"],
)
async def test_an_ehr_answer_that_is_not_the_focus_is_recorded_and_not_followed(
    publisher: RecordingPublisher, pseudonym_key: str, answer: httpx.Response
) -> None:
    ehr = RecordingEhr()
    ehr.answer = answer
    listener = Listener(publisher, pseudonym_key, ehr=ehr)

    response = await post_bundle(
        listener, r4_backport("event-notification", [(1, OBSERVATION, ())])
    )

    assert response.status_code == 200
    assert ehr.reads == [OBSERVATION]
    assert publisher.events == []
    [(_, unusable)] = publisher.unusable
    assert unusable.reason == "unreadable-focus"


@pytest.mark.parametrize("outage", ["unreachable", "503"])
async def test_an_ehr_that_cannot_be_read_is_asked_to_retry(
    publisher: RecordingPublisher, pseudonym_key: str, outage: str
) -> None:
    ehr = RecordingEhr()
    ehr.unreachable = outage == "unreachable"
    if outage == "503":
        ehr.answer = httpx.Response(503)
    listener = Listener(publisher, pseudonym_key, ehr=ehr)

    response = await post_bundle(
        listener, r4_backport("event-notification", [(1, OBSERVATION, ())])
    )

    assert response.status_code == 503
    assert response.headers["retry-after"] == "7"
    assert only_issue(response)["code"] == "transient"
    assert publisher.events == []
    assert publisher.unusable == []
    assert len(ehr.reads) == 2  # one retry
    assert listener.count("topic-event-notification", "ehr-unavailable") == 1


@pytest.mark.parametrize("status", [401, 403])
async def test_a_listener_the_ehr_does_not_let_in_asks_for_the_notification_again(
    publisher: RecordingPublisher, pseudonym_key: str, status: int
) -> None:
    """Credentials to fix, not a focus to give up on: acknowledging would lose the event."""
    ehr = RecordingEhr()
    ehr.answer = httpx.Response(status, json={"resourceType": "OperationOutcome"})
    listener = Listener(publisher, pseudonym_key, ehr=ehr)

    response = await post_bundle(
        listener, r4_backport("event-notification", [(1, OBSERVATION, ())])
    )

    assert response.status_code == 503
    assert publisher.events == []
    assert publisher.unusable == []


async def test_an_empty_payload_is_acknowledged_and_counted(
    listener: Listener, publisher: RecordingPublisher
) -> None:
    response = await post_bundle(listener, r4_backport("event-notification", [(3, None, ())]))

    assert response.status_code == 200
    assert publisher.events == []
    assert listener.ehr.reads == []
    assert listener.count("topic-event-notification", "acknowledged-empty") == 1


async def test_an_unavailable_broker_asks_the_ehr_to_retry(pseudonym_key: str) -> None:
    listener = Listener(RecordingPublisher(unavailable=True), pseudonym_key)
    bundle = r4_backport("event-notification", [(1, OBSERVATION, ())], [respiratory_rate()])

    response = await post_bundle(listener, bundle)

    assert response.status_code == 503
    assert listener.count("topic-event-notification", "unavailable") == 1


async def test_a_malformed_bundle_is_refused_and_counted(
    listener: Listener, publisher: RecordingPublisher
) -> None:
    bundle = r4_backport("event-notification", [(1, OBSERVATION, ())])
    del bundle["entry"][0]

    response = await post_bundle(listener, bundle)

    assert response.status_code == 400
    assert only_issue(response)["code"] == "structure"
    assert listener.count("topic-notification", "no-subscription-status") == 1
    assert publisher.events == []


async def test_a_bundle_needs_the_channel_secret(
    listener: Listener, publisher: RecordingPublisher
) -> None:
    bundle = r4_backport("event-notification", [(1, OBSERVATION, ())], [respiratory_rate()])
    headers = {**AUTHORIZED, "Authorization": f"Bearer {CHANNEL_SECRET[:-1]}x"}

    response = await post_bundle(listener, bundle, headers)

    assert response.status_code == 401
    assert publisher.events == []


async def test_a_bundle_over_the_limit_is_refused(
    listener: Listener, publisher: RecordingPublisher
) -> None:
    resource = respiratory_rate()
    resource["note"] = [{"text": "x" * LIMIT_BYTES}]
    async with listener.client() as client:
        response = await client.post(
            ENDPOINT,
            content=str(r4_backport("event-notification", [(1, OBSERVATION, ())], [resource])),
            headers=AUTHORIZED,
        )
    assert response.status_code == 413
    assert publisher.events == []


async def test_a_topic_event_carries_its_subscription_and_event_number(
    listener: Listener, publisher: RecordingPublisher
) -> None:
    bundle = r4_backport("event-notification", [(5, OBSERVATION, ())], [respiratory_rate()])

    assert (await post_bundle(listener, bundle)).status_code == 200

    [event] = publisher.events
    assert (event.source.subscription_id, event.source.event_number) == ("sub-1", 5)
    assert event.source.topic == TOPIC


async def test_a_redelivered_event_number_publishes_nothing_whatever_it_carries(
    listener: Listener, publisher: RecordingPublisher
) -> None:
    """An EHR that builds the payload anew on each attempt: the retry of event 5 carries the
    resource's later version. That version is event 6's to publish, not event 5's."""
    first = r4_backport("event-notification", [(5, OBSERVATION, ())], [respiratory_rate()])
    later_version = respiratory_rate(version_id="4")
    retried = r4_backport("event-notification", [(5, OBSERVATION, ())], [later_version])
    next_event = r4_backport("event-notification", [(6, OBSERVATION, ())], [later_version])

    assert (await post_bundle(listener, first)).status_code == 200
    again = await post_bundle(listener, retried)
    assert again.status_code == 200
    assert only_issue(again)["diagnostics"] == (
        "notification events 5 of the Subscription already published"
    )
    assert listener.count("topic-event-notification", "already-published") == 1
    assert listener.duplicate_count() == 1
    assert [e.resource_version for e in publisher.events] == ["3"]

    assert (await post_bundle(listener, next_event)).status_code == 200
    assert [e.source.event_number for e in publisher.events] == [5, 6]


async def test_a_redelivered_id_only_event_is_not_read_again(
    listener: Listener, publisher: RecordingPublisher
) -> None:
    listener.ehr.add(respiratory_rate(patient_id="pat-7"))
    bundle = r4_backport("event-notification", [(4, OBSERVATION, ())])

    for _ in range(2):
        assert (await post_bundle(listener, bundle)).status_code == 200

    assert listener.ehr.reads == [OBSERVATION]
    assert len(publisher.events) == 1


async def test_only_the_new_events_of_a_bundle_are_published(
    listener: Listener, publisher: RecordingPublisher
) -> None:
    resources = [respiratory_rate(f"obs-{n}", patient_id=f"pat-{n}") for n in range(3)]
    events = [(n + 1, f"Observation/obs-{n}", ()) for n in range(3)]
    await post_bundle(
        listener, subscription_status_bundle("event-notification", events[:1], resources[:1])
    )

    response = await post_bundle(
        listener, subscription_status_bundle("event-notification", events, resources)
    )

    assert response.status_code == 200
    assert [e.source.event_number for e in publisher.events] == [1, 2, 3]


def _context_count(listener: Listener, outcome: str) -> float:
    value = listener.metrics_registry.registry.get_sample_value(
        "cdsflow_listener_additional_context_total", {"outcome": outcome}
    )
    return value or 0.0


PATIENT = f"{EHR_BASE_URL}/Patient/pat-1"


async def test_carried_additional_context_is_published_after_the_focus(
    listener: Listener, publisher: RecordingPublisher
) -> None:
    patient = {"resourceType": "Patient", "id": "pat-1", "meta": {"versionId": "2"}}
    bundle = r4_backport(
        "event-notification", [(3, OBSERVATION, (PATIENT,))], [respiratory_rate(), patient]
    )

    for _ in range(2):  # the second time: a redelivery, nothing published
        assert (await post_bundle(listener, bundle)).status_code == 200

    assert [(e.resource_type, e.source.event_number) for e in publisher.events] == [
        ("Observation", 3),
        ("Patient", 0),
    ]
    context = publisher.events[1]
    assert context.patient_reference == "Patient/pat-1"
    assert context.source.subscription_id == "sub-1"
    assert _context_count(listener, "carried") == 1


async def test_additional_context_that_cannot_be_used_never_fails_the_notification(
    listener: Listener, publisher: RecordingPublisher
) -> None:
    """Context that is not valid FHIR, names no patient, or is only referenced: skipped and
    counted; the focus is published all the same."""
    invalid = {"resourceType": "Patient", "id": "pat-1", "birthDate": "not a date"}
    ward = {"resourceType": "Location", "id": "ward-1", "name": "4 West"}
    referenced = f"{EHR_BASE_URL}/Encounter/enc-1"
    bundle = r4_backport(
        "event-notification",
        [(1, OBSERVATION, (PATIENT, f"{EHR_BASE_URL}/Location/ward-1", referenced))],
        [respiratory_rate(), invalid, ward],
    )

    response = await post_bundle(listener, bundle)

    assert response.status_code == 200
    assert [e.resource_type for e in publisher.events] == ["Observation"]
    assert publisher.unusable == []
    assert listener.ehr.reads == []  # the referenced Encounter is not read
    assert [_context_count(listener, o) for o in ("invalid", "unusable", "not-carried")] == [
        1,
        1,
        1,
    ]


async def test_id_only_additional_context_is_not_read(
    listener: Listener, publisher: RecordingPublisher
) -> None:
    listener.ehr.add(respiratory_rate(patient_id="pat-1"))
    bundle = subscription_status_bundle("event-notification", [(1, OBSERVATION, (PATIENT,))])

    assert (await post_bundle(listener, bundle)).status_code == 200

    assert listener.ehr.reads == [OBSERVATION]
    assert [e.resource_type for e in publisher.events] == ["Observation"]
    assert _context_count(listener, "not-carried") == 1


R5_ENCOUNTER: dict[str, object] = {
    "resourceType": "Encounter",
    "id": "enc-2",
    "status": "in-progress",
    "class": [
        {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "VR"}]}
    ],
    "subject": {"reference": "Patient/pat-1"},
}


async def test_an_r5_only_resource_in_an_r5_bundle_is_recorded_not_refused(
    listener: Listener, publisher: RecordingPublisher
) -> None:
    """An R5 EHR's Encounter (`class` a list): valid FHIR R5, so the notification is
    acknowledged; cdsflow reads R4, so it is recorded on the `.dlq` twin, not published."""
    encounter = f"{EHR_BASE_URL}/Encounter/enc-2"
    events = [(1, encounter, ()), (2, OBSERVATION, ())]
    resources = [dict(R5_ENCOUNTER), respiratory_rate()]

    r5 = await post_bundle(
        listener, subscription_status_bundle("event-notification", events, resources, r5=True)
    )
    r4b = await post_bundle(
        listener, subscription_status_bundle("event-notification", events, resources)
    )

    assert r5.status_code == 200
    assert [e.resource_type for e in publisher.events] == ["Observation"]
    [(recorded, unusable)] = publisher.unusable
    assert (recorded.resource_type, unusable.reason) == ("Encounter", "r5-only")
    assert listener.unusable_count("r5-only", "Encounter") == 1
    # an R4B Bundle is R4: the same Encounter is not valid there
    assert r4b.status_code == 400
