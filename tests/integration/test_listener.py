"""The listener against the real parts: Tansu (Kafka) and SEKMET (the EHR).

Each test runs the listener in-process under uvicorn, on its own topic, and reads what it
published with its own consumer group.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaConsumer
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind
from pydantic import SecretStr

from cdsflow.contracts import ClinicalEvent, NotificationKind
from cdsflow.listener.app import create_app
from cdsflow.listener.settings import Settings
from cdsflow.runtime.parts import start_broker
from cdsflow.runtime.processes import free_port
from cdsflow.runtime.story import vital_sign_observation
from cdsflow.telemetry import PatientKeyer, Telemetry
from tests.conftest import EhrEndpoint, KafkaEndpoint
from tests.support.asgi import serve_app
from tests.support.polling import eventually
from tests.support.telemetry import recording_telemetry
from tests.support.topic_partitions import partitions_of, records_to_end

pytestmark = pytest.mark.integration

CHANNEL_SECRET = "integration-channel-secret-0123456789"
REST_HOOK = "/fhir/notifications/rest-hook"
FHIR_JSON = "application/fhir+json; charset=utf-8"
AUTHORIZED = {"Authorization": f"Bearer {CHANNEL_SECRET}", "Content-Type": FHIR_JSON}
NOTIFIED_EHR = "http://ehr.test/fhir"
EFFECTIVE = datetime(2025, 1, 2, 3, tzinfo=UTC)


def respiratory_rate(patient_id: str, resource_id: str | None = None) -> dict[str, Any]:
    """A vital-sign Observation (respiratory rate, LOINC 9279-1) about `Patient/<patient_id>`."""
    resource = vital_sign_observation(
        f"Patient/{patient_id}", EFFECTIVE, "9279-1", value=24, ucum="/min"
    )
    if resource_id is not None:
        resource["id"] = resource_id
        resource["meta"] = {"versionId": "1", "lastUpdated": "2025-01-02T03:04:05+00:00"}
    return resource


@dataclass
class RunningListener:
    base_url: str
    settings: Settings
    spans: InMemorySpanExporter
    keyer: PatientKeyer

    def client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=self.base_url, timeout=30)


def listener_settings(bootstrap: str, unique: str, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "ehr_base_url": NOTIFIED_EHR,
        "kafka_bootstrap": bootstrap,
        "kafka_idempotence": False,
        "clinical_events_topic": f"test.clinical-events.{unique}",
        **overrides,
    }
    return Settings(channel_secret=SecretStr(CHANNEL_SECRET), **values)


@pytest.fixture
def telemetry_spans(pseudonym_key: str) -> Iterator[tuple[Telemetry, InMemorySpanExporter]]:
    with recording_telemetry("listener", pseudonym_key) as recording:
        yield recording


@pytest.fixture
async def running_listener(
    kafka: KafkaEndpoint,
    unique: str,
    telemetry_spans: tuple[Telemetry, InMemorySpanExporter],
) -> AsyncIterator[RunningListener]:
    telemetry, spans = telemetry_spans
    settings = listener_settings(kafka.bootstrap, unique, max_notification_bytes=4096)
    async with serve_app(create_app(settings, telemetry=telemetry)) as base_url:
        yield RunningListener(base_url, settings, spans, telemetry.patient_keyer)


async def consume_clinical_events(
    bootstrap: str, topic: str, group: str, count: int = 1, timeout_s: float = 60
) -> list[Any]:
    """The first `count` records on `topic`, read from the beginning by a fresh group."""
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=group,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        fetch_max_wait_ms=5,
    )
    await consumer.start()
    records: list[Any] = []
    try:
        async with asyncio.timeout(timeout_s):
            while len(records) < count:
                records.append(await consumer.getone())
    finally:
        await consumer.stop()
    return records


async def records_on(bootstrap: str, topic: str) -> int:
    """How many records `topic` holds, over all its partitions, counted as read (Tansu's end
    offset is its last batch's base offset + 1: `tests/support/topic_partitions.py`)."""
    return len(await records_to_end(bootstrap, await partitions_of(bootstrap, topic)))


def outcome_issue(response: httpx.Response) -> dict[str, Any]:
    assert response.headers["content-type"].startswith("application/fhir+json")
    body = response.json()
    assert body["resourceType"] == "OperationOutcome"
    issue: dict[str, Any] = body["issue"][0]
    return issue


async def test_a_vital_sign_notification_becomes_one_clinical_event(
    running_listener: RunningListener,
    kafka: KafkaEndpoint,
    unique: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    listener = running_listener
    patient_id = f"pat-{unique}"
    resource = respiratory_rate(patient_id, resource_id=f"obs-{unique}")
    body = json.dumps(resource).encode()
    caller_trace_id, caller_span_id = uuid.uuid4().int >> 2, 0x1234ABCD5678EF01
    traceparent = f"00-{caller_trace_id:032x}-{caller_span_id:016x}-01"

    async with listener.client() as client:
        assert (await client.get("/readyz")).status_code == 200
        response = await client.put(
            f"{REST_HOOK}/Observation/{resource['id']}",
            content=body,
            headers={**AUTHORIZED, "traceparent": traceparent},
        )
        assert response.status_code == 200, response.text
        assert outcome_issue(response)["severity"] == "information"
        metrics = (await client.get("/metrics")).text

    [record] = await consume_clinical_events(
        kafka.bootstrap, listener.settings.clinical_events_topic, f"test-{unique}"
    )
    event = ClinicalEvent.FromString(record.value)
    patient_key = listener.keyer.patient_key(f"Patient/{patient_id}")
    assert record.key == patient_key.encode()
    assert event.patient_key == patient_key
    assert event.patient_reference == f"Patient/{patient_id}"
    assert (event.resource_type, event.resource_id, event.resource_version) == (
        "Observation",
        resource["id"],
        "1",
    )
    assert event.resource_json == body
    assert event.source.ehr_base_url == NOTIFIED_EHR
    assert event.source.kind == NotificationKind.NOTIFICATION_KIND_REST_HOOK_FULL_RESOURCE
    assert event.occurred_at.ToJsonString() == "2025-01-02T03:04:05Z"
    assert event.event_id in outcome_issue(response)["diagnostics"]
    assert (
        'cdsflow_listener_notifications_total{kind="rest-hook-full-resource",outcome="published"}'
        " 1.0" in metrics
    )

    # one trace: the EHR's span -> the listener's server span -> the producer span
    headers = {key: value.decode() for key, value in record.headers}
    assert headers["traceparent"].split("-")[1] == f"{caller_trace_id:032x}"
    server, producer = await eventually(
        lambda: _server_and_producer_spans(listener.spans), what="server and producer spans"
    )
    assert server.context is not None
    assert server.context.trace_id == caller_trace_id
    assert server.parent is not None
    assert server.parent.span_id == caller_span_id
    assert producer.context is not None
    assert producer.context.trace_id == caller_trace_id
    assert producer.attributes is not None
    assert producer.attributes["messaging.destination.name"] == (
        listener.settings.clinical_events_topic
    )
    assert server.attributes is not None
    # made by cdsflow.service.server_spans (the instrumentation names it `http.method`)
    assert server.attributes["http.request.method"] == "PUT"
    assert server.attributes["cdsflow.event_id"] == event.event_id
    assert server.attributes["cdsflow.patient_key"] == patient_key
    assert server.attributes["cdsflow.resource_type"] == "Observation"
    assert server.attributes["cdsflow.notification_kind"] == "rest-hook-full-resource"

    # what the log lines carry, extra fields included: no patient id, no values
    published = [r for r in caplog.records if r.getMessage() == "clinical event published"]
    assert len(published) == 1
    assert getattr(published[0], "patient_key", None) == patient_key
    for log_record in caplog.records:
        assert patient_id not in str(log_record.__dict__)


async def _server_and_producer_spans(
    spans: InMemorySpanExporter,
) -> tuple[ReadableSpan, ReadableSpan] | None:
    """The listener's server span and the producer span that is its child."""
    finished = spans.get_finished_spans()
    servers = [span for span in finished if span.kind == SpanKind.SERVER]
    if len(servers) != 1 or servers[0].context is None:
        return None
    server_span_id = servers[0].context.span_id
    children = [
        span
        for span in finished
        if span.kind == SpanKind.PRODUCER
        and span.parent is not None
        and span.parent.span_id == server_span_id
    ]
    return (servers[0], children[0]) if len(children) == 1 else None


async def test_refusals_are_operation_outcomes(running_listener: RunningListener) -> None:
    resource = respiratory_rate("pat-refused", resource_id="obs-refused")
    url = f"{REST_HOOK}/Observation/obs-refused"
    oversize = {**resource, "note": [{"text": "x" * 5000}]}
    invalid = {**resource, "valueQuantity": "Jane-Smith-1950"}
    wrong_secret = {**AUTHORIZED, "Authorization": "Bearer not-the-channel-secret"}

    async with running_listener.client() as client:
        cases = [
            (await client.put(url, json=resource, headers=wrong_secret), 401, "security"),
            (await client.put(url, json=oversize, headers=AUTHORIZED), 413, "too-costly"),
            (await client.put(url, content=b"{", headers=AUTHORIZED), 400, "structure"),
            (await client.put(url, json=invalid, headers=AUTHORIZED), 400, "invalid"),
            (await client.post(REST_HOOK, headers=wrong_secret), 401, "security"),
        ]
        ping = await client.post(REST_HOOK, headers=AUTHORIZED)
        metrics = (await client.get("/metrics")).text

    for response, status_code, issue_code in cases:
        assert (response.status_code, outcome_issue(response)["code"]) == (
            status_code,
            issue_code,
        )
    assert "valueQuantity" in cases[3][0].text
    assert "Jane-Smith-1950" not in cases[3][0].text
    assert ping.status_code == 200
    assert 'kind="rest-hook-ping",outcome="acknowledged"} 1.0' in metrics
    assert 'kind="rest-hook-full-resource",outcome="published"}' not in metrics


async def test_without_a_broker_the_ehr_is_told_to_retry_until_it_is_back(
    unique: str,
    tmp_path: Path,
    telemetry_spans: tuple[Telemetry, InMemorySpanExporter],
) -> None:
    port = free_port()  # nothing listens there yet
    telemetry, _ = telemetry_spans
    settings = listener_settings(f"127.0.0.1:{port}", unique, publish_timeout_s=2)
    resource = respiratory_rate(f"pat-{unique}", resource_id=f"obs-{unique}")
    url = f"{REST_HOOK}/Observation/{resource['id']}"

    async with (
        serve_app(create_app(settings, telemetry=telemetry)) as base_url,
        httpx.AsyncClient(base_url=base_url, timeout=30) as client,
    ):
        assert (await client.get("/healthz")).status_code == 200
        assert (await client.get("/readyz")).status_code == 503
        refused = await client.put(url, json=resource, headers=AUTHORIZED)
        assert refused.status_code == 503
        assert refused.headers["retry-after"] == str(settings.retry_after_s)
        assert outcome_issue(refused)["code"] == "transient"

        broker = await asyncio.to_thread(start_broker, tmp_path, port)
        try:
            accepted = await client.put(url, json=resource, headers=AUTHORIZED)
            assert accepted.status_code == 200, accepted.text
            assert (await client.get("/readyz")).status_code == 200
            [record] = await consume_clinical_events(
                f"127.0.0.1:{port}", settings.clinical_events_topic, f"test-{unique}"
            )
            assert ClinicalEvent.FromString(record.value).resource_id == resource["id"]
        finally:
            await asyncio.to_thread(broker.stop)

        # the broker goes away after the listener connected: no ack within the timeout
        later = respiratory_rate(f"pat-{unique}", resource_id=f"obs-later-{unique}")
        lost = await client.put(
            f"{REST_HOOK}/Observation/{later['id']}", json=later, headers=AUTHORIZED
        )
        assert lost.status_code == 503
        assert outcome_issue(lost)["code"] == "transient"
        assert (await client.get("/readyz")).status_code == 503


def subscription_for(endpoint: str, criteria: str) -> dict[str, Any]:
    """An R4 rest-hook Subscription with a full-resource payload, pointed at the listener."""
    return {
        "resourceType": "Subscription",
        "status": "requested",
        "reason": "cdsflow listener integration test",
        "criteria": criteria,
        "channel": {
            "type": "rest-hook",
            "endpoint": endpoint,
            "payload": "application/fhir+json",
            "header": [f"Authorization: Bearer {CHANNEL_SECRET}"],
        },
    }


async def test_the_ehr_notifies_and_the_event_reaches_kafka(
    kafka: KafkaEndpoint,
    ehr: EhrEndpoint,
    unique: str,
    telemetry_spans: tuple[Telemetry, InMemorySpanExporter],
) -> None:
    telemetry, _ = telemetry_spans
    settings = listener_settings(kafka.bootstrap, unique, ehr_base_url=ehr.base_url)
    headers = {"Content-Type": "application/fhir+json", "Accept": "application/fhir+json"}

    async with (
        serve_app(create_app(settings, telemetry=telemetry)) as listener_url,
        httpx.AsyncClient(base_url=ehr.base_url, headers=headers, timeout=30) as fhir,
    ):
        patient = (await fhir.post("/Patient", json={"resourceType": "Patient"})).json()
        # only this test's patient: other tests write Observations to the same EHR
        criteria = f"Observation?category=vital-signs&subject=Patient/{patient['id']}"
        subscription = subscription_for(listener_url + REST_HOOK, criteria)
        created = await fhir.post("/Subscription", json=subscription)
        assert created.status_code == 201, created.text
        subscription_id = created.json()["id"]

        async def subscription_active() -> bool | None:
            current = (await fhir.get(f"/Subscription/{subscription_id}")).json()
            assert current["status"] != "error", current.get("error")
            return current["status"] == "active" or None

        try:
            await eventually(subscription_active, what="the Subscription to be active")
            written = await fhir.post("/Observation", json=respiratory_rate(patient["id"]))
            assert written.status_code == 201, written.text
            observation = written.json()

            [record] = await consume_clinical_events(
                kafka.bootstrap, settings.clinical_events_topic, f"test-{unique}"
            )
        finally:
            current = (await fhir.get(f"/Subscription/{subscription_id}")).json()
            await fhir.put(f"/Subscription/{subscription_id}", json={**current, "status": "off"})

    event = ClinicalEvent.FromString(record.value)
    assert (event.resource_type, event.resource_id) == ("Observation", observation["id"])
    assert event.resource_version == observation["meta"]["versionId"]
    assert event.patient_reference == f"Patient/{patient['id']}"
    assert event.source.ehr_base_url == ehr.base_url
    assert json.loads(event.resource_json)["valueQuantity"]["value"] == 24


async def test_odd_resources_never_put_the_subscription_in_error(
    kafka: KafkaEndpoint,
    ehr: EhrEndpoint,
    unique: str,
    telemetry_spans: tuple[Telemetry, InMemorySpanExporter],
) -> None:
    """Issue 5, defect 0: a ward's reading (subject a Group) and another server's patient are
    written into the real EHR; each is acknowledged and recorded on the `.dlq` twin with its
    reason, the Subscription stays active, and the next patient's event still arrives."""
    telemetry, _ = telemetry_spans
    settings = listener_settings(kafka.bootstrap, unique, ehr_base_url=ehr.base_url)
    headers = {"Content-Type": "application/fhir+json", "Accept": "application/fhir+json"}
    dlq_topic = f"{settings.clinical_events_topic}.dlq"

    async with (
        serve_app(create_app(settings, telemetry=telemetry)) as listener_url,
        httpx.AsyncClient(base_url=ehr.base_url, headers=headers, timeout=30) as fhir,
    ):
        patient = (await fhir.post("/Patient", json={"resourceType": "Patient"})).json()
        group = (
            await fhir.post(
                "/Group", json={"resourceType": "Group", "type": "person", "actual": True}
            )
        ).json()
        subscription = subscription_for(
            listener_url + REST_HOOK, "Observation?category=vital-signs"
        )
        created = await fhir.post("/Subscription", json=subscription)
        assert created.status_code == 201, created.text
        subscription_id = created.json()["id"]

        async def subscription_status() -> dict[str, Any]:
            current: dict[str, Any] = (await fhir.get(f"/Subscription/{subscription_id}")).json()
            return current

        async def subscription_active() -> bool | None:
            return (await subscription_status())["status"] == "active" or None

        try:
            await eventually(subscription_active, what="the Subscription to be active")
            odd_ids = []
            for subject in (f"Group/{group['id']}", "https://other.example/fhir/Patient/P"):
                odd = respiratory_rate("placeholder")
                odd["subject"] = {"reference": subject}
                written = await fhir.post("/Observation", json=odd)
                assert written.status_code == 201, written.text
                odd_ids.append(written.json()["id"])
            recorded = await consume_clinical_events(
                kafka.bootstrap, dlq_topic, f"test-dlq-{unique}", count=2
            )

            normal = await fhir.post("/Observation", json=respiratory_rate(patient["id"]))
            assert normal.status_code == 201, normal.text
            normal_id = normal.json()["id"]

            async def normal_event_arrived() -> ClinicalEvent | None:
                records = await consume_clinical_events(
                    kafka.bootstrap,
                    settings.clinical_events_topic,
                    f"test-{unique}-{uuid.uuid4().hex[:6]}",
                    count=1,
                )
                events = [ClinicalEvent.FromString(r.value) for r in records]
                return next((e for e in events if e.resource_id == normal_id), None)

            event = await eventually(normal_event_arrived, what="the next patient's event")
            status = await subscription_status()
        finally:
            current = await subscription_status()
            await fhir.put(f"/Subscription/{subscription_id}", json={**current, "status": "off"})

    assert status["status"] == "active"
    assert "error" not in status
    assert event.patient_reference == f"Patient/{patient['id']}"
    by_id = {ClinicalEvent.FromString(r.value).resource_id: r for r in recorded}
    assert set(by_id) == set(odd_ids)
    reasons = []
    for resource_id in odd_ids:
        record = by_id[resource_id]
        assert record.key is None
        record_headers = {key: value.decode() for key, value in record.headers}
        reasons.append(record_headers["cdsflow-error-type"])
        assert "other.example" not in record_headers["cdsflow-error"]
        assert ClinicalEvent.FromString(record.value).patient_key == ""
    assert reasons == ["NoPatient", "ForeignPatient"]


SEKMET_ENCOUNTER_START = "http://sekmet.dev/fhir/SubscriptionTopic/encounter-start"
BACKPORT = "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition"


def topic_subscription(endpoint: str, topic: str, patient_id: str, content: str) -> dict[str, Any]:
    """An R4 backport topic-based Subscription (the IG's profile), for one patient's events."""
    return {
        "resourceType": "Subscription",
        "meta": {"profile": [f"{BACKPORT}/backport-subscription"]},
        "status": "requested",
        "reason": "cdsflow listener integration test",
        "criteria": topic,
        "_criteria": {
            "extension": [
                {
                    "url": f"{BACKPORT}/backport-filter-criteria",
                    "valueString": f"patient={patient_id}",
                }
            ]
        },
        "channel": {
            "type": "rest-hook",
            "endpoint": endpoint,
            "payload": "application/fhir+json",
            "_payload": {
                "extension": [{"url": f"{BACKPORT}/backport-payload-content", "valueCode": content}]
            },
            "header": [f"Authorization: Bearer {CHANNEL_SECRET}"],
        },
    }


async def test_the_ehrs_topic_notifications_reach_kafka_id_only_and_full_resource(
    kafka: KafkaEndpoint,
    ehr: EhrEndpoint,
    unique: str,
    telemetry_spans: tuple[Telemetry, InMemorySpanExporter],
) -> None:
    """SEKMET's built-in encounter-start topic (R4 backport): each Subscription is activated by
    the listener's answer to its handshake; the Encounter then arrives on Kafka once through
    the id-only Subscription (read back from SEKMET) and once through the full-resource one:
    the same change (the same event id), so it is published once and the later notification
    is acknowledged as already published."""
    telemetry, _ = telemetry_spans
    settings = listener_settings(kafka.bootstrap, unique, ehr_base_url=ehr.base_url)
    headers = {"Content-Type": "application/fhir+json", "Accept": "application/fhir+json"}

    async with (
        serve_app(create_app(settings, telemetry=telemetry)) as listener_url,
        httpx.AsyncClient(base_url=ehr.base_url, headers=headers, timeout=30) as fhir,
    ):
        patient = (await fhir.post("/Patient", json={"resourceType": "Patient"})).json()
        subscription_ids = []
        for content in ("id-only", "full-resource"):
            subscription = topic_subscription(
                listener_url + REST_HOOK, SEKMET_ENCOUNTER_START, patient["id"], content
            )
            created = await fhir.post("/Subscription", json=subscription)
            assert created.status_code == 201, created.text
            subscription_ids.append(created.json()["id"])

        async def all_active() -> bool | None:
            for subscription_id in subscription_ids:
                current = (await fhir.get(f"/Subscription/{subscription_id}")).json()
                assert current["status"] != "error", current.get("error")
                if current["status"] != "active":
                    return None
            return True

        try:
            await eventually(all_active, what="the handshakes to activate both Subscriptions")
            encounter = {
                "resourceType": "Encounter",
                "status": "in-progress",
                "class": {
                    "system": "http://terminology.hl7.org/CodeSystem/v3-ActCode",
                    "code": "IMP",
                },
                "subject": {"reference": f"Patient/{patient['id']}"},
            }
            written = await fhir.post("/Encounter", json=encounter)
            assert written.status_code == 201, written.text
            encounter = written.json()

            registry = telemetry.metrics.registry

            def answered(outcome: str) -> float:
                value = registry.get_sample_value(
                    "cdsflow_listener_notifications_total",
                    {"kind": "topic-event-notification", "outcome": outcome},
                )
                return value or 0.0

            async def both_answered() -> bool:
                return answered("published") == 1 and answered("already-published") == 1

            await eventually(both_answered, what="both notifications of the encounter")
            [record] = await consume_clinical_events(
                kafka.bootstrap, settings.clinical_events_topic, f"test-{unique}"
            )
            assert await records_on(kafka.bootstrap, settings.clinical_events_topic) == 1
        finally:
            for subscription_id in subscription_ids:
                current = (await fhir.get(f"/Subscription/{subscription_id}")).json()
                await fhir.put(
                    f"/Subscription/{subscription_id}", json={**current, "status": "off"}
                )

    event = ClinicalEvent.FromString(record.value)
    assert event.source.kind in {
        NotificationKind.NOTIFICATION_KIND_TOPIC_ID_ONLY,
        NotificationKind.NOTIFICATION_KIND_TOPIC_FULL_RESOURCE,
    }
    assert (event.resource_type, event.resource_id) == ("Encounter", encounter["id"])
    assert event.resource_version == encounter["meta"]["versionId"]
    assert event.patient_reference == f"Patient/{patient['id']}"
    assert event.source.ehr_base_url == ehr.base_url
    handshakes = registry.get_sample_value(
        "cdsflow_listener_notifications_total",
        {"kind": "topic-handshake", "outcome": "acknowledged"},
    )
    assert handshakes == 2


async def test_a_redelivery_to_another_replica_or_after_a_restart_publishes_nothing(
    kafka: KafkaEndpoint, unique: str, pseudonym_key: str
) -> None:
    """The dedupe memory is the topic itself: replica B, running beside A, learns what A
    published; a replica started later reads it back before it takes notifications."""
    settings = listener_settings(kafka.bootstrap, unique)
    resource = respiratory_rate(f"pat-{unique}", resource_id=f"obs-{unique}")
    url = f"{REST_HOOK}/Observation/{resource['id']}"

    def remembered(metrics: str) -> float:
        [line] = [
            line
            for line in metrics.splitlines()
            if line.startswith("cdsflow_listener_published_events_remembered ")
        ]
        return float(line.split()[1])

    with (
        recording_telemetry("listener", pseudonym_key) as (telemetry_a, _),
        recording_telemetry("listener", pseudonym_key) as (telemetry_b, _),
    ):
        async with (
            serve_app(create_app(settings, telemetry=telemetry_a)) as replica_a,
            serve_app(create_app(settings, telemetry=telemetry_b)) as replica_b,
            httpx.AsyncClient(timeout=30) as client,
        ):
            first = await client.put(replica_a + url, json=resource, headers=AUTHORIZED)
            assert first.status_code == 200, first.text
            event_id = outcome_issue(first)["diagnostics"].split()[2]

            async def replica_b_knows_it() -> bool:
                return remembered((await client.get(f"{replica_b}/metrics")).text) == 1

            await eventually(replica_b_knows_it, what="replica B to read A's event back")
            redelivered = await client.put(replica_b + url, json=resource, headers=AUTHORIZED)
            assert redelivered.status_code == 200
            assert outcome_issue(redelivered)["diagnostics"] == (
                f"clinical event {event_id} already published"
            )

    with recording_telemetry("listener", pseudonym_key) as (telemetry_c, _):
        async with (
            serve_app(create_app(settings, telemetry=telemetry_c)) as restarted,
            httpx.AsyncClient(base_url=restarted, timeout=30) as client,
        ):
            assert (await client.get("/readyz")).status_code == 200
            again = await client.put(url, json=resource, headers=AUTHORIZED)
            assert again.status_code == 200
            assert "already published" in outcome_issue(again)["diagnostics"]
            resource["meta"]["versionId"] = "2"
            changed = await client.put(url, json=resource, headers=AUTHORIZED)
            assert "already" not in outcome_issue(changed)["diagnostics"]

    assert await records_on(kafka.bootstrap, settings.clinical_events_topic) == 2


def event_notification(
    subscription: str, event_number: int, resource: dict[str, Any]
) -> dict[str, Any]:
    """An R4 backport event-notification Bundle (as SEKMET sends): one full-resource event."""
    focus = f"{NOTIFIED_EHR}/{resource['resourceType']}/{resource['id']}"
    status = {
        "resourceType": "Parameters",
        "parameter": [
            {"name": "subscription", "valueReference": {"reference": subscription}},
            {"name": "topic", "valueCanonical": SEKMET_ENCOUNTER_START},
            {"name": "status", "valueCode": "active"},
            {"name": "type", "valueCode": "event-notification"},
            {"name": "events-since-subscription-start", "valueString": str(event_number)},
            {
                "name": "notification-event",
                "part": [
                    {"name": "event-number", "valueString": str(event_number)},
                    {"name": "focus", "valueReference": {"reference": focus}},
                ],
            },
        ],
    }
    return {
        "resourceType": "Bundle",
        "type": "history",
        "entry": [
            {"fullUrl": f"urn:uuid:{uuid.uuid4()}", "resource": status},
            {"fullUrl": focus, "resource": resource},
        ],
    }


async def test_a_redelivered_event_number_publishes_nothing_after_a_restart(
    kafka: KafkaEndpoint, unique: str, pseudonym_key: str
) -> None:
    """The (Subscription, event number) index is read back from the topic too: a listener
    restarted after publishing event 5 refuses event 5 again even when the EHR rebuilt its
    payload with the resource's later version, and publishes event 6."""
    settings = listener_settings(kafka.bootstrap, unique)
    subscription = f"{NOTIFIED_EHR}/Subscription/sub-{unique}"
    resource = respiratory_rate(f"pat-{unique}", resource_id=f"obs-{unique}")
    later = {**resource, "meta": {**resource["meta"], "versionId": "2"}}

    with recording_telemetry("listener", pseudonym_key) as (telemetry, _):
        async with (
            serve_app(create_app(settings, telemetry=telemetry)) as first_run,
            httpx.AsyncClient(base_url=first_run, timeout=30) as client,
        ):
            first = await client.post(
                REST_HOOK, json=event_notification(subscription, 5, resource), headers=AUTHORIZED
            )
            assert first.status_code == 200, first.text
            assert "published" in outcome_issue(first)["diagnostics"]

    with recording_telemetry("listener", pseudonym_key) as (telemetry, _):
        async with (
            serve_app(create_app(settings, telemetry=telemetry)) as restarted,
            httpx.AsyncClient(base_url=restarted, timeout=30) as client,
        ):
            assert (await client.get("/readyz")).status_code == 200
            again = await client.post(
                REST_HOOK, json=event_notification(subscription, 5, later), headers=AUTHORIZED
            )
            assert again.status_code == 200
            assert outcome_issue(again)["diagnostics"] == (
                "notification events 5 of the Subscription already published"
            )
            following = await client.post(
                REST_HOOK, json=event_notification(subscription, 6, later), headers=AUTHORIZED
            )
            assert "already" not in outcome_issue(following)["diagnostics"]

    records = await consume_clinical_events(
        kafka.bootstrap, settings.clinical_events_topic, f"test-{unique}", count=2
    )
    events = [ClinicalEvent.FromString(record.value) for record in records]
    assert [(e.source.event_number, e.resource_version) for e in events] == [(5, "1"), (6, "2")]
    assert {e.source.subscription_id for e in events} == {f"sub-{unique}"}
    assert await records_on(kafka.bootstrap, settings.clinical_events_topic) == 2
