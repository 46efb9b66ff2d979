"""The listener keeps its own Subscriptions on a real EHR (SEKMET): it creates them at start,
completes the topic handshake, re-activates one the EHR switched off, adopts them again after
a restart, and shows them at `GET /subscriptions`."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from cdsflow.contracts import ClinicalEvent, NotificationKind
from cdsflow.listener.app import create_app
from cdsflow.listener.settings import Settings
from cdsflow.runtime.parts import start_ehr
from cdsflow.runtime.processes import free_port
from tests.conftest import EhrEndpoint, KafkaEndpoint
from tests.integration.test_listener import (
    SEKMET_ENCOUNTER_START,
    consume_clinical_events,
    listener_settings,
    records_on,
    respiratory_rate,
)
from tests.support.asgi import serve_app
from tests.support.notification_proxy import DroppingProxy
from tests.support.polling import eventually
from tests.support.telemetry import recording_telemetry

pytestmark = pytest.mark.integration

REST_HOOK = "/fhir/notifications/rest-hook"
FHIR = {"Content-Type": "application/fhir+json", "Accept": "application/fhir+json"}


@asynccontextmanager
async def managing_listener(
    settings_for: Any, pseudonym_key: str
) -> AsyncIterator[tuple[str, Settings]]:
    """A listener that knows its own public URL (it tells the EHR where to notify)."""
    port = free_port()
    settings: Settings = settings_for(f"http://127.0.0.1:{port}{REST_HOOK}")
    with recording_telemetry("listener", pseudonym_key) as (telemetry, _):
        async with serve_app(create_app(settings, telemetry=telemetry), port=port) as url:
            yield url, settings


async def shown(url: str) -> dict[str, dict[str, Any]]:
    async with httpx.AsyncClient(timeout=10) as client:
        answer = await client.get(f"{url}/subscriptions")
    assert answer.status_code == 200
    return {state["channel"]: state for state in answer.json()}


async def active_subscription_id(url: str, name: str, *, settled: bool = False) -> str:
    """The id of channel `name`'s Subscription once the EHR reports it active (`settled`:
    and nothing left to recover)."""

    async def probe() -> str | None:
        state = (await shown(url))[name]
        ready = state["status"] == "active" and not (settled and state["recovery_pending"])
        return str(state["id"]) if ready else None

    return await eventually(probe, what=f"channel {name} active")


async def wait_until_the_ehr_gives_up(
    fhir: httpx.AsyncClient, subscription_id: str, url: str, name: str
) -> None:
    """Until the EHR has set channel `name`'s Subscription to `error` (it dropped a
    notification). The listener, looking every `subscription_check_interval_s`, re-activates a
    Subscription it finds in error, and may do so between two of these looks: its count of
    re-activations says so then."""

    async def gave_up() -> bool:
        current = (await fhir.get(f"/Subscription/{subscription_id}")).json()
        if current["status"] == "error":
            return True
        return bool((await shown(url))[name]["reactivations"] >= 1)

    await eventually(gave_up, timeout_s=60, what="the EHR to give up")


def tagged_encounter(patient_id: str, unique: str) -> dict[str, Any]:
    """An in-progress Encounter (it starts SEKMET's encounter-start topic), tagged for this
    test's searches."""
    return {
        "resourceType": "Encounter",
        "status": "in-progress",
        "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "IMP"},
        "subject": {"reference": f"Patient/{patient_id}"},
        "meta": {"tag": [{"system": "urn:test", "code": unique}]},
    }


async def switch_off(fhir: httpx.AsyncClient, subscription_id: str) -> None:
    current = (await fhir.get(f"/Subscription/{subscription_id}")).json()
    await fhir.put(f"/Subscription/{subscription_id}", json={**current, "status": "off"})


async def test_the_listener_keeps_its_subscriptions_active_on_the_ehr(
    kafka: KafkaEndpoint, ehr: EhrEndpoint, unique: str, pseudonym_key: str
) -> None:
    vitals, encounters = f"vitals-{unique}", f"encounters-{unique}"
    channels = [
        {"name": vitals, "criteria": f"Observation?code=9279-1&_tag=urn:test|{unique}"},
        {"name": encounters, "topic": SEKMET_ENCOUNTER_START, "payload": "id-only"},
    ]

    def settings_for(endpoint: str) -> Settings:
        return listener_settings(
            kafka.bootstrap,
            unique,
            ehr_base_url=ehr.base_url,
            channels=channels,
            notification_endpoint=endpoint,
            subscription_check_interval_s=0.5,
        )

    async with httpx.AsyncClient(base_url=ehr.base_url, headers=FHIR, timeout=30) as fhir:
        async with managing_listener(settings_for, pseudonym_key) as (url, settings):

            async def both_active() -> dict[str, dict[str, Any]] | None:
                states = await shown(url)
                return states if all(s["status"] == "active" for s in states.values()) else None

            states = await eventually(both_active, what="both channels' Subscriptions active")
            assert states[vitals]["criteria"] == channels[0]["criteria"]
            assert states[encounters]["topic"] == SEKMET_ENCOUNTER_START
            ids = {name: state["id"] for name, state in states.items()}

            # the Subscription carries the channel's own secret, which the listener accepts
            vitals_subscription = (await fhir.get(f"/Subscription/{ids[vitals]}")).json()
            [header] = vitals_subscription["channel"]["header"]
            assert header.startswith("Authorization: Bearer ")
            assert settings.channel_secret.get_secret_value() not in header

            # a change the criteria match arrives on Kafka through the managed Subscription
            patient = (await fhir.post("/Patient", json={"resourceType": "Patient"})).json()
            observation = respiratory_rate(patient["id"])
            observation["meta"] = {"tag": [{"system": "urn:test", "code": unique}]}
            written = await fhir.post("/Observation", json=observation)
            assert written.status_code == 201, written.text
            [record] = await consume_clinical_events(
                kafka.bootstrap, settings.clinical_events_topic, f"test-{unique}"
            )
            event = ClinicalEvent.FromString(record.value)
            assert event.resource_id == written.json()["id"]
            assert (await shown(url))[vitals]["last_notification_at"] is not None

            # the EHR (or someone) switches one off: the listener asks for it again
            await switch_off(fhir, ids[vitals])

            async def reactivated() -> bool:
                state = (await shown(url))[vitals]
                return bool(state["status"] == "active" and state["reactivations"] >= 1)

            await eventually(reactivated, what="the switched-off Subscription re-activated")
            async with httpx.AsyncClient(timeout=10) as client:
                metrics = (await client.get(f"{url}/metrics")).text
            assert (
                f'cdsflow_listener_subscription_reactivations_total{{channel="{vitals}"}}'
                in metrics
            )
            assert (
                f'cdsflow_listener_subscription_status{{channel="{encounters}",status="active"}}'
                " 1.0" in metrics
            )

        # a restart adopts the same Subscriptions (found by their tag), it creates none
        try:
            async with managing_listener(settings_for, pseudonym_key) as (url, _):
                states = await eventually(both_active, what="the adopted Subscriptions active")
                assert {name: state["id"] for name, state in states.items()} == ids
            tagged = (
                await fhir.get("/Subscription", params={"_tag": f"urn:cdsflow:channel|{vitals}"})
            ).json()
            assert [entry["resource"]["id"] for entry in tagged["entry"]] == [ids[vitals]]
        finally:
            for subscription_id in ids.values():
                await switch_off(fhir, subscription_id)


async def test_a_bundle_naming_another_subscription_is_refused(
    kafka: KafkaEndpoint, ehr: EhrEndpoint, unique: str, pseudonym_key: str
) -> None:
    name = f"encounters-{unique}"

    def settings_for(endpoint: str) -> Settings:
        return listener_settings(
            kafka.bootstrap,
            unique,
            ehr_base_url=ehr.base_url,
            channels=[{"name": name, "topic": SEKMET_ENCOUNTER_START}],
            notification_endpoint=endpoint,
            subscription_check_interval_s=0.5,
        )

    async with (
        httpx.AsyncClient(base_url=ehr.base_url, headers=FHIR, timeout=30) as fhir,
        managing_listener(settings_for, pseudonym_key) as (url, _),
    ):
        subscription_id = await active_subscription_id(url, name)
        try:
            subscription = (await fhir.get(f"/Subscription/{subscription_id}")).json()
            [header] = subscription["channel"]["header"]
            heartbeat = heartbeat_bundle(f"{ehr.base_url}/Subscription/other-{unique}")
            async with httpx.AsyncClient(timeout=10) as client:
                answer = await client.post(
                    url + REST_HOOK,
                    content=json.dumps(heartbeat),
                    headers={
                        "Authorization": header.removeprefix("Authorization: "),
                        "Content-Type": "application/fhir+json",
                    },
                )
            assert answer.status_code == 400
            assert answer.json()["issue"][0]["code"] == "invalid"
        finally:
            await switch_off(fhir, subscription_id)


def heartbeat_bundle(subscription: str) -> dict[str, Any]:
    """An R4 backport heartbeat that names `subscription`."""
    return {
        "resourceType": "Bundle",
        "type": "history",
        "entry": [
            {
                "fullUrl": "urn:uuid:6d1c8f5e-0b6a-4c36-9f7e-1b2a3c4d5e6f",
                "resource": {
                    "resourceType": "Parameters",
                    "parameter": [
                        {"name": "subscription", "valueReference": {"reference": subscription}},
                        {"name": "topic", "valueCanonical": SEKMET_ENCOUNTER_START},
                        {"name": "status", "valueCode": "active"},
                        {"name": "type", "valueCode": "heartbeat"},
                        {"name": "events-since-subscription-start", "valueString": "0"},
                    ],
                },
                "request": {"method": "GET", "url": "Subscription/x/$status"},
                "response": {"status": "200"},
            }
        ],
    }


async def test_a_ping_is_answered_by_a_search_for_what_changed(
    kafka: KafkaEndpoint, ehr: EhrEndpoint, unique: str, pseudonym_key: str
) -> None:
    """An R4 criteria channel without a payload: SEKMET sends an empty POST; the listener
    searches what changed since its checkpoint and publishes each change once."""
    name = f"pings-{unique}"
    criteria = f"Observation?code=9279-1&_tag=urn:test|{unique}"

    def settings_for(endpoint: str) -> Settings:
        return listener_settings(
            kafka.bootstrap,
            unique,
            ehr_base_url=ehr.base_url,
            channels=[{"name": name, "criteria": criteria, "payload": "empty"}],
            notification_endpoint=endpoint,
            subscription_check_interval_s=0.5,
        )

    async with (
        httpx.AsyncClient(base_url=ehr.base_url, headers=FHIR, timeout=30) as fhir,
        managing_listener(settings_for, pseudonym_key) as (url, settings),
    ):
        subscription_id = await active_subscription_id(url, name)
        try:
            subscription = (await fhir.get(f"/Subscription/{subscription_id}")).json()
            assert "payload" not in subscription["channel"]
            patient = (await fhir.post("/Patient", json={"resourceType": "Patient"})).json()
            written_ids = []
            for _ in range(2):
                observation = respiratory_rate(patient["id"])
                observation["meta"] = {"tag": [{"system": "urn:test", "code": unique}]}
                written = await fhir.post("/Observation", json=observation)
                assert written.status_code == 201, written.text
                written_ids.append(written.json()["id"])

            records = await consume_clinical_events(
                kafka.bootstrap, settings.clinical_events_topic, f"test-{unique}", count=2
            )
            events = [ClinicalEvent.FromString(record.value) for record in records]
            assert sorted(event.resource_id for event in events) == sorted(written_ids)
            assert {event.source.kind for event in events} == {
                NotificationKind.NOTIFICATION_KIND_REST_HOOK_PING
            }
            assert (await shown(url))[name]["checkpoint"] is not None
        finally:
            await switch_off(fhir, subscription_id)
    # each change once, whatever the later ping's search found again
    assert await records_on(kafka.bootstrap, settings.clinical_events_topic) == 2


async def test_what_the_ehr_failed_to_deliver_is_recovered(
    kafka: KafkaEndpoint, ehr: EhrEndpoint, unique: str, pseudonym_key: str
) -> None:
    """An Encounter whose notification never reached the listener (the EHR gave up and set
    the Subscription to error) is found by the recovery search and published, once."""
    name = f"encounters-{unique}"
    proxy_port = free_port()
    settings = listener_settings(
        kafka.bootstrap,
        unique,
        ehr_base_url=ehr.base_url,
        channels=[
            {
                "name": name,
                "topic": SEKMET_ENCOUNTER_START,
                "recovery_search": f"Encounter?_tag=urn:test|{unique}",
            }
        ],
        notification_endpoint=f"http://127.0.0.1:{proxy_port}{REST_HOOK}",
        subscription_check_interval_s=0.5,
    )
    with recording_telemetry("listener", pseudonym_key) as (telemetry, _):
        async with (
            serve_app(create_app(settings, telemetry=telemetry)) as url,
            httpx.AsyncClient(timeout=30) as http,
            httpx.AsyncClient(base_url=ehr.base_url, headers=FHIR, timeout=30) as fhir,
        ):
            proxy = DroppingProxy(url)
            async with serve_app(proxy.app(http), port=proxy_port):
                subscription_id = await active_subscription_id(url, name, settled=True)
                try:
                    patient = (await fhir.post("/Patient", json={"resourceType": "Patient"})).json()
                    encounter = tagged_encounter(patient["id"], unique)
                    first = (await fhir.post("/Encounter", json=encounter)).json()
                    await consume_clinical_events(
                        kafka.bootstrap, settings.clinical_events_topic, f"first-{unique}"
                    )

                    proxy.dropping = True
                    missed = (await fhir.post("/Encounter", json=encounter)).json()

                    await wait_until_the_ehr_gives_up(fhir, subscription_id, url, name)
                    proxy.dropping = False

                    async def recovered() -> bool:
                        state = (await shown(url))[name]
                        return bool(state["gaps_recovered"] >= 1 and state["status"] == "active")

                    await eventually(recovered, what="the missed notification recovered")
                    records = await consume_clinical_events(
                        kafka.bootstrap, settings.clinical_events_topic, f"all-{unique}", count=2
                    )
                finally:
                    await switch_off(fhir, subscription_id)
                metrics = (await http.get(f"{url}/metrics")).text

    assert proxy.dropped >= 1
    events = {ClinicalEvent.FromString(r.value).resource_id: r for r in records}
    assert set(events) == {first["id"], missed["id"]}
    recovered_event = ClinicalEvent.FromString(events[missed["id"]].value)
    assert recovered_event.source.kind == NotificationKind.NOTIFICATION_KIND_GAP_RECOVERY
    assert recovered_event.patient_reference == f"Patient/{patient['id']}"
    assert await records_on(kafka.bootstrap, settings.clinical_events_topic) == 2
    assert f'cdsflow_listener_recovered_events_total{{channel="{name}"}} 1.0' in metrics


async def test_an_ehr_that_posts_the_resource_to_the_endpoint_is_heard(
    kafka: KafkaEndpoint, unique: str, pseudonym_key: str, tmp_path: Path
) -> None:
    """SEKMET's other R4 rest-hook form: `POST {endpoint}` with the changed resource."""
    ehr_part = await asyncio.to_thread(
        start_ehr, tmp_path, subscription_settings={"notify_method": "post-endpoint"}
    )
    ehr_base_url = ehr_part.endpoints["ehr"]
    name = f"posted-{unique}"
    try:

        def settings_for(endpoint: str) -> Settings:
            return listener_settings(
                kafka.bootstrap,
                unique,
                ehr_base_url=ehr_base_url,
                channels=[{"name": name, "criteria": "Observation?code=9279-1"}],
                notification_endpoint=endpoint,
                subscription_check_interval_s=0.5,
            )

        async with (
            httpx.AsyncClient(base_url=ehr_base_url, headers=FHIR, timeout=30) as fhir,
            managing_listener(settings_for, pseudonym_key) as (url, settings),
        ):
            await active_subscription_id(url, name)
            patient = (await fhir.post("/Patient", json={"resourceType": "Patient"})).json()
            written = await fhir.post("/Observation", json=respiratory_rate(patient["id"]))
            assert written.status_code == 201, written.text
            [record] = await consume_clinical_events(
                kafka.bootstrap, settings.clinical_events_topic, f"test-{unique}"
            )
            async with httpx.AsyncClient(timeout=10) as client:
                metrics = (await client.get(f"{url}/metrics")).text
    finally:
        await asyncio.to_thread(ehr_part.stop)

    event = ClinicalEvent.FromString(record.value)
    assert event.resource_id == written.json()["id"]
    assert event.source.kind == NotificationKind.NOTIFICATION_KIND_REST_HOOK_FULL_RESOURCE
    assert (
        'cdsflow_listener_notifications_total{kind="rest-hook-full-resource",outcome="published"}'
        in metrics
    )


async def test_an_empty_topic_notification_is_answered_by_a_search(
    kafka: KafkaEndpoint, ehr: EhrEndpoint, unique: str, pseudonym_key: str
) -> None:
    """A topic channel with an `empty` payload: the Bundle names nothing, so the channel's
    `recovery_search` finds what changed, and it is published."""
    name = f"empty-{unique}"

    def settings_for(endpoint: str) -> Settings:
        return listener_settings(
            kafka.bootstrap,
            unique,
            ehr_base_url=ehr.base_url,
            channels=[
                {
                    "name": name,
                    "topic": SEKMET_ENCOUNTER_START,
                    "payload": "empty",
                    "recovery_search": f"Encounter?_tag=urn:test|{unique}",
                }
            ],
            notification_endpoint=endpoint,
            subscription_check_interval_s=0.5,
        )

    async with (
        httpx.AsyncClient(base_url=ehr.base_url, headers=FHIR, timeout=30) as fhir,
        managing_listener(settings_for, pseudonym_key) as (url, settings),
    ):
        subscription_id = await active_subscription_id(url, name)
        try:
            patient = (await fhir.post("/Patient", json={"resourceType": "Patient"})).json()
            encounter = tagged_encounter(patient["id"], unique)
            written = (await fhir.post("/Encounter", json=encounter)).json()
            [record] = await consume_clinical_events(
                kafka.bootstrap, settings.clinical_events_topic, f"test-{unique}"
            )
        finally:
            await switch_off(fhir, subscription_id)

    event = ClinicalEvent.FromString(record.value)
    assert event.resource_id == written["id"]
    assert event.source.kind == NotificationKind.NOTIFICATION_KIND_TOPIC_EMPTY
    assert event.patient_reference == f"Patient/{patient['id']}"
