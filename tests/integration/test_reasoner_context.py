"""The patient's context comes from the event stream, and survives a restart and a rebalance:
restored from the changelog on the real broker, never searched on the EHR again.

The readings of the first events exist only on Kafka (their Observations are never written to
the EHR), so a later recommendation that is based on them proves where its context came from.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx
import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from cdsflow.contracts import ClinicalEvent, Recommendation
from cdsflow.fhir import EhrClient
from tests.conftest import EhrEndpoint, KafkaEndpoint, TritonEndpoint
from tests.integration.test_reasoner import (
    RunningReasoner,
    Topics,
    read_until,
    reasoner_settings,
    sample_value,
    serve_reasoner,
)
from tests.integration.test_reasoner_batches import heart_rate_event, observation_event
from tests.support.polling import eventually
from tests.support.telemetry import recording_telemetry

pytestmark = pytest.mark.integration

CONTEXTS = "cdsflow_reasoner_patient_contexts_total"
RESTORED = "cdsflow_reasoner_restored_patient_contexts_total"


async def new_patients(ehr: EhrEndpoint, count: int) -> list[str]:
    """Patients on the EHR with no Observation at all."""
    async with httpx.AsyncClient(timeout=30) as http:
        client = EhrClient(ehr.base_url, http)
        return [
            f"Patient/{(await client.create({'resourceType': 'Patient'}))['id']}"
            for _ in range(count)
        ]


async def produce(bootstrap: str, topic: str, events: list[tuple[ClinicalEvent, int]]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        for event, partition in events:
            await producer.send_and_wait(
                topic,
                event.SerializeToString(),
                key=event.patient_key.encode(),
                partition=partition,
            )
    finally:
        await producer.stop()


async def answers(
    bootstrap: str, topics: Topics, events: list[ClinicalEvent]
) -> dict[str, Recommendation]:
    wanted = {event.event_id for event in events}
    records = await read_until(
        bootstrap,
        topics.recommendations,
        lambda got: wanted <= {Recommendation.FromString(r.value).event_id for r in got},
        timeout_s=90,
    )
    found = (Recommendation.FromString(record.value) for record in records)
    return {r.event_id: r for r in found if r.event_id in wanted}


def basis(recommendation: Recommendation) -> dict[str, tuple[float, str]]:
    return {i.name: (i.value, i.resource_reference) for i in recommendation.basis.inputs}


async def count(reasoner: RunningReasoner, name: str, **labels: str) -> float:
    return sample_value(await reasoner.metrics(), name, labels)


async def test_a_restarted_reasoner_restores_the_context_instead_of_asking_the_ehr(
    kafka: KafkaEndpoint,
    triton: TritonEndpoint,
    ehr: EhrEndpoint,
    unique: str,
    pseudonym_key: str,
) -> None:
    [patient] = await new_patients(ehr, 1)
    settings = reasoner_settings(kafka, triton.grpc_url, ehr, unique)
    earlier = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=10)

    with recording_telemetry("reasoner", pseudonym_key) as (telemetry, spans):
        async with serve_reasoner(settings, telemetry, spans) as first:
            heart_rate = heart_rate_event(patient, 131, earlier, first, ehr.base_url)
            await produce(kafka.bootstrap, first.topics.clinical_events, [(heart_rate, 0)])
            await answers(kafka.bootstrap, first.topics, [heart_rate])
            assert await first.metric(CONTEXTS, at_least=1, source="ehr") == 1

    with recording_telemetry("reasoner", pseudonym_key) as (telemetry, spans):
        async with serve_reasoner(settings, telemetry, spans) as second:
            later = earlier + timedelta(minutes=5)
            rate = observation_event(patient, "9279-1", 27, later, second, ehr.base_url)
            await produce(kafka.bootstrap, second.topics.clinical_events, [(rate, 0)])
            found = await answers(kafka.bootstrap, second.topics, [rate])

            # the heart rate is only on Kafka: the restored context is the basis
            assert basis(found[rate.event_id])["heart_rate"] == (
                131.0,
                f"Observation/{heart_rate.resource_id}",
            )
            assert await second.metric(RESTORED, at_least=1) >= 1
            assert await second.metric(CONTEXTS, at_least=1, source="events") == 1
            assert await count(second, CONTEXTS, source="ehr") == 0


async def test_after_a_rebalance_the_new_owner_restores_its_partition_from_the_changelog(
    kafka: KafkaEndpoint,
    triton: TritonEndpoint,
    ehr: EhrEndpoint,
    unique: str,
    pseudonym_key: str,
) -> None:
    patients = await new_patients(ehr, 4)
    settings = reasoner_settings(kafka, triton.grpc_url, ehr, unique)
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka.bootstrap)
    await admin.start()
    try:  # two partitions, so that a second reasoner in the group gets one
        await admin.create_topics([NewTopic(settings.clinical_events_topic, 2, 1)])
    finally:
        await admin.close()
    earlier = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=10)

    with (
        recording_telemetry("reasoner", pseudonym_key) as (telemetry_a, spans_a),
        recording_telemetry("reasoner", pseudonym_key) as (telemetry_b, spans_b),
    ):
        async with serve_reasoner(settings, telemetry_a, spans_a) as first:
            heart_rates = [
                (heart_rate_event(p, 121 + n, earlier, first, ehr.base_url), n % 2)
                for n, p in enumerate(patients)
            ]
            await produce(kafka.bootstrap, first.topics.clinical_events, heart_rates)
            await answers(kafka.bootstrap, first.topics, [e for e, _ in heart_rates])
            assert await first.metric(CONTEXTS, at_least=4, source="ehr") == 4

            async with serve_reasoner(settings, telemetry_b, spans_b) as second:
                # the group rebalances: the second reasoner takes one partition over
                await second.metric(RESTORED, at_least=1, timeout_s=60)
                later = earlier + timedelta(minutes=5)
                rates = [
                    (observation_event(p, "9279-1", 25, later, first, ehr.base_url), n % 2)
                    for n, p in enumerate(patients)
                ]
                await produce(kafka.bootstrap, first.topics.clinical_events, rates)
                found = await answers(kafka.bootstrap, first.topics, [e for e, _ in rates])

                for n, ((heart_rate, _), (rate, _)) in enumerate(
                    zip(heart_rates, rates, strict=True)
                ):
                    assert basis(found[rate.event_id])["heart_rate"] == (
                        float(121 + n),
                        f"Observation/{heart_rate.resource_id}",
                    )

                async def both_answered() -> bool:
                    from_events = await count(first, CONTEXTS, source="events") + await count(
                        second, CONTEXTS, source="events"
                    )
                    return from_events == 4

                await eventually(both_answered, timeout_s=10, what="4 contexts from events")
                assert await count(second, CONTEXTS, source="events") >= 1
                # the EHR was searched once per patient, before the rebalance, never again
                assert await count(first, CONTEXTS, source="ehr") == 4
                assert await count(second, CONTEXTS, source="ehr") == 0
