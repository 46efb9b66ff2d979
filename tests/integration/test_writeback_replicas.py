"""Two writeback replicas on the real broker (Tansu) and EHR (SEKMET), one of them restarted.

Both are one consumer group (the EHR is written to once per recommendation, by whichever
replica holds its partition), while each keeps every patient's cards by reading the whole
recommendations topic itself: both answer the same cards, and so does the restarted one.
"""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from cdsflow.contracts import Mode, Recommendation
from tests.conftest import EhrEndpoint, KafkaEndpoint
from tests.integration.test_writeback import (
    RunningWriteback,
    create_patient,
    recommendation_for,
    risk_assessments,
    started_writeback,
)
from tests.support.polling import eventually

pytestmark = pytest.mark.integration

PARTITIONS = 4


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=30) as client:
        yield client


async def create_topic(kafka: KafkaEndpoint, topic: str) -> None:
    """The recommendations topic with several partitions, so that the group splits them."""
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka.bootstrap)
    await admin.start()
    try:
        await admin.create_topics(
            [NewTopic(name=topic, num_partitions=PARTITIONS, replication_factor=1)]
        )
    finally:
        await admin.close()


def held_patients(running: RunningWriteback) -> float:
    value = running.telemetry.metrics.registry.get_sample_value(
        "cdsflow_writeback_card_state_patients"
    )
    return value or 0.0


async def read_back(running: RunningWriteback, http: httpx.AsyncClient, patients: int) -> None:
    """Wait until the replica is ready (its state rebuilt) and holds `patients` patients: from
    then on, "no card" is an answer, not a lag."""

    async def ready() -> bool:
        response = await http.get(f"{running.base_url}/readyz")
        return response.status_code == 200 and held_patients(running) >= patients

    await eventually(ready, timeout_s=90, what=f"replica ready holding {patients} patients")


async def cards_by_patient(
    running: RunningWriteback, http: httpx.AsyncClient, patient_ids: list[str]
) -> dict[str, list[dict[str, Any]]]:
    return {patient_id: await running.cards(http, patient_id) for patient_id in patient_ids}


def traceparent() -> str:
    return f"00-{secrets.randbits(128):032x}-{secrets.randbits(64):016x}-01"


async def test_two_replicas_answer_the_same_cards_and_a_restarted_one_answers_them_too(
    kafka: KafkaEndpoint, ehr: EhrEndpoint, unique: str, pseudonym_key: str, http: httpx.AsyncClient
) -> None:
    await create_topic(kafka, f"test.recommendations.{unique}")
    async with contextlib.AsyncExitStack() as replicas:
        first = await replicas.enter_async_context(
            started_writeback(kafka, ehr.base_url, unique, pseudonym_key)
        )
        second_stack = contextlib.AsyncExitStack()
        second = await second_stack.enter_async_context(
            started_writeback(kafka, ehr.base_url, unique, pseudonym_key)
        )
        replicas.push_async_callback(second_stack.aclose)

        critical = [await create_patient(http, ehr) for _ in range(3)]
        superseded, shadow_only = await create_patient(http, ehr), await create_patient(http, ehr)
        patients = [*critical, superseded, shadow_only]
        active: list[Recommendation] = []
        for patient_id in critical:
            active.append(recommendation_for(first, ehr.base_url, patient_id))
        # a newer low risk replaces a high one: no card
        active.append(recommendation_for(first, ehr.base_url, superseded))
        active.append(recommendation_for(first, ehr.base_url, superseded, band="low", value=0.1))
        for recommendation in active:
            await first.publish(recommendation, traceparent())
        # shadow recommendations, newer than the active ones: never a card
        await first.publish(
            recommendation_for(first, ehr.base_url, critical[0], mode=Mode.MODE_SHADOW, band="low")
        )
        await first.publish(
            recommendation_for(first, ehr.base_url, shadow_only, mode=Mode.MODE_SHADOW)
        )

        await read_back(first, http, len(patients))
        await read_back(second, http, len(patients))
        shown = await cards_by_patient(first, http, patients)
        assert shown == await cards_by_patient(second, http, patients)
        for patient_id in critical:
            (card,) = shown[patient_id]
            assert card["indicator"] == "critical"
        assert shown[superseded] == []
        assert shown[shadow_only] == []

        # the EHR is written to once per active recommendation, across both replicas
        async def all_written() -> bool:
            written = first.writebacks("written") + second.writebacks("written")
            return written >= len(active)

        await eventually(all_written, timeout_s=90, what="every active recommendation written")
        assert first.writebacks("written") + second.writebacks("written") == len(active)
        for recommendation in active:
            assert len(await risk_assessments(http, ehr, recommendation.recommendation_id)) == 1

        # the second replica goes; meanwhile a patient's risk changes
        await second_stack.aclose()
        changed = recommendation_for(first, ehr.base_url, critical[1], band="medium", value=0.5)
        await first.publish(changed, traceparent())

        async def changed_on_first() -> bool:
            cards = await first.cards(http, critical[1])
            return [card["indicator"] for card in cards] == ["warning"]

        await eventually(changed_on_first, timeout_s=60, what="the changed card on the first")

        restarted_stack = contextlib.AsyncExitStack()
        replicas.push_async_callback(restarted_stack.aclose)
        restarted = await restarted_stack.enter_async_context(
            started_writeback(kafka, ehr.base_url, unique, pseudonym_key)
        )
        await read_back(restarted, http, len(patients))
        after_restart = await cards_by_patient(restarted, http, patients)
        assert after_restart == await cards_by_patient(first, http, patients)
        assert [card["indicator"] for card in after_restart[critical[1]]] == ["warning"]
        assert after_restart[critical[0]] == shown[critical[0]]
        assert after_restart[superseded] == []
        assert after_restart[shadow_only] == []

        # and still one write per recommendation, the one made while a replica was down included
        async def changed_written() -> bool:
            found = await risk_assessments(http, ehr, changed.recommendation_id)
            return len(found) == 1

        await eventually(changed_written, timeout_s=60, what="the changed recommendation written")
        for recommendation in [*active, changed]:
            assert len(await risk_assessments(http, ehr, recommendation.recommendation_id)) == 1
