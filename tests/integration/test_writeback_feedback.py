"""CDS Hooks feedback on the real broker (Tansu) and EHR (SEKMET): an entry becomes a Feedback
event on the feedback topic, and a card overridden with a reason is snoozed for that patient
on every replica, one started afterwards included, until its indicator rises."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaConsumer

from cdsflow.contracts import Feedback, FeedbackOutcome, Indicator
from tests.conftest import EhrEndpoint, KafkaEndpoint
from tests.integration.test_writeback import (
    RunningWriteback,
    create_patient,
    recommendation_for,
    started_writeback,
)
from tests.support.polling import eventually

pytestmark = pytest.mark.integration

FEEDBACK_URL = "/cds-services/cdsflow-deterioration/feedback"
SEEN_OVERRIDE = {
    "outcome": "overridden",
    "reason": "seen",
    "model_version": "deterioration-gbm/7",
    "cds_service": "cdsflow-deterioration",
}


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=30) as client:
        yield client


async def shown_indicators(
    running: RunningWriteback, http: httpx.AsyncClient, patient_id: str
) -> list[str]:
    return [card["indicator"] for card in await running.cards(http, patient_id)]


async def until_shown(
    running: RunningWriteback, http: httpx.AsyncClient, patient_id: str, expected: list[str]
) -> None:
    async def shown() -> bool:
        return await shown_indicators(running, http, patient_id) == expected

    await eventually(shown, timeout_s=60, what=f"cards {expected}")


async def ready(running: RunningWriteback, http: httpx.AsyncClient) -> None:
    async def answers_ready() -> bool:
        return (await http.get(f"{running.base_url}/readyz")).status_code == 200

    await eventually(answers_ready, timeout_s=90, what="the replica ready")


async def read_feedback(kafka: KafkaEndpoint, topic: str) -> list[Feedback]:
    """Every event on the topic, read to its end (the topic exists: one was awaited)."""
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=kafka.bootstrap,
        group_id=f"test-feedback-reader-{uuid.uuid4().hex[:8]}",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    try:
        first = await asyncio.wait_for(consumer.getone(), timeout=60)
        records = [first]
        ends = await consumer.end_offsets(list(consumer.assignment()))
        for partition, end in ends.items():
            while await consumer.position(partition) < end:
                batches = await consumer.getmany(partition, timeout_ms=1000)
                records += [record for batch in batches.values() for record in batch]
    finally:
        await consumer.stop()
    return [Feedback.FromString(record.value) for record in records if record.value is not None]


async def test_an_overridden_card_is_published_and_snoozed_on_every_replica_until_it_rises(
    kafka: KafkaEndpoint, ehr: EhrEndpoint, unique: str, pseudonym_key: str, http: httpx.AsyncClient
) -> None:
    async with started_writeback(kafka, ehr.base_url, unique, pseudonym_key) as first:
        patient_id = await create_patient(http, ehr)
        warning = recommendation_for(first, ehr.base_url, patient_id, band="medium", value=0.5)
        await first.publish(warning)
        await until_shown(first, http, patient_id, ["warning"])
        (card,) = await first.cards(http, patient_id)
        await ready(first, http)  # until then feedback is answered 503 (not recorded)

        entry: dict[str, Any] = {
            "card": card["uuid"],
            "outcome": "overridden",
            "overrideReason": {
                "reason": {"system": "http://example.org/override-reasons", "code": "seen"},
                "userComment": "not for the topic",
            },
            "outcomeTimestamp": "2099-01-01T00:00:00Z",  # the receipt time bounds it
        }
        response = await http.post(f"{first.base_url}{FEEDBACK_URL}", json={"feedback": [entry]})
        assert response.status_code == 200, response.text

        (event,) = await read_feedback(kafka, first.settings.feedback_topic)
        assert event.card_uuid == card["uuid"]
        assert event.outcome == FeedbackOutcome.FEEDBACK_OUTCOME_OVERRIDDEN
        assert event.override_reason_code == "seen"
        assert event.patient_key == warning.patient_key
        assert event.recommendation_id == warning.recommendation_id
        assert event.indicator == Indicator.INDICATOR_WARNING
        counted = first.telemetry.metrics.registry.get_sample_value(
            "cdsflow_writeback_feedback_total", SEEN_OVERRIDE
        )
        assert counted == 1

        await until_shown(first, http, patient_id, [])  # snoozed

        # a replica started now reads the snooze back with the recommendations
        async with started_writeback(kafka, ehr.base_url, unique, pseudonym_key) as second:
            await ready(second, http)
            assert await shown_indicators(second, http, patient_id) == []

            # the EHR sends the same feedback again, to the other replica: recorded once
            again = await http.post(f"{second.base_url}{FEEDBACK_URL}", json={"feedback": [entry]})
            assert again.status_code == 200, again.text
            assert len(await read_feedback(kafka, first.settings.feedback_topic)) == 1
            assert second.telemetry.metrics.registry.get_sample_value(
                "cdsflow_writeback_feedback_total", SEEN_OVERRIDE
            ) in (None, 0)

            # the risk rises: the card is shown again, on both
            critical = recommendation_for(first, ehr.base_url, patient_id, band="high")
            await first.publish(critical)
            await until_shown(first, http, patient_id, ["critical"])
            await until_shown(second, http, patient_id, ["critical"])
