"""Write-back into a real SEKMET: one transaction Bundle per recommendation, exactly once
under redelivery and two writebacks, retried through a fault-injecting proxy on 503/429,
dead-lettered at once on a refusal and after N attempts in an outage, with the breaker.

Faults come from `tests/support/fault_proxy.py` between the writeback and SEKMET; every
count is read back from SEKMET itself.
"""

from __future__ import annotations

import asyncio
import secrets
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaConsumer
from aiokafka.structs import ConsumerRecord

from cdsflow.contracts import Card, Recommendation
from tests.conftest import EhrEndpoint, KafkaEndpoint
from tests.integration.test_writeback import (
    FHIR_JSON,
    RECOMMENDATION_TAG,
    RunningWriteback,
    create_patient,
    recommendation_for,
    started_writeback,
)
from tests.support.fault_proxy import Fault, FaultInjectingProxy, fault_injecting_proxy
from tests.support.polling import eventually

pytestmark = pytest.mark.integration

WRITTEN_TYPES = ("RiskAssessment", "DetectedIssue", "Provenance", "AuditEvent")
NOTHING_WRITTEN: dict[str, list[dict[str, Any]]] = {kind: [] for kind in WRITTEN_TYPES}
MODEL_CARD = "https://models.example.org/deterioration-gbm/7"


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=30) as client:
        yield client


@pytest.fixture
async def writeback(
    kafka: KafkaEndpoint, ehr: EhrEndpoint, unique: str, pseudonym_key: str
) -> AsyncIterator[RunningWriteback]:
    async with started_writeback(kafka, ehr.base_url, unique, pseudonym_key) as running:
        yield running


@pytest.fixture
async def proxy(ehr: EhrEndpoint) -> AsyncIterator[FaultInjectingProxy]:
    async with fault_injecting_proxy(ehr.base_url) as running:
        yield running


async def tagged(
    http: httpx.AsyncClient, ehr: EhrEndpoint, resource_type: str, recommendation_id: str
) -> list[dict[str, Any]]:
    """What SEKMET holds of this type, tagged with this recommendation (read directly)."""
    response = await http.get(
        f"{ehr.base_url}/{resource_type}",
        params={"_tag": f"{RECOMMENDATION_TAG}|{recommendation_id}"},
        headers={"Accept": FHIR_JSON},
    )
    assert response.status_code == 200, response.text
    return [
        entry["resource"]
        for entry in response.json().get("entry", [])
        if entry.get("search", {}).get("mode") == "match"
    ]


async def written_for(
    http: httpx.AsyncClient, ehr: EhrEndpoint, recommendation_id: str
) -> dict[str, list[dict[str, Any]]]:
    return {kind: await tagged(http, ehr, kind, recommendation_id) for kind in WRITTEN_TYPES}


async def assert_one_bundles_worth(
    http: httpx.AsyncClient, ehr: EhrEndpoint, recommendation_id: str
) -> dict[str, dict[str, Any]]:
    written = await written_for(http, ehr, recommendation_id)
    assert {kind: len(found) for kind, found in written.items()} == dict.fromkeys(WRITTEN_TYPES, 1)
    return {kind: found[0] for kind, found in written.items()}


def attempts(writeback: RunningWriteback, result: str) -> float:
    value = writeback.telemetry.metrics.registry.get_sample_value(
        "cdsflow_writeback_ehr_write_attempts_total", {"result": result}
    )
    return value or 0.0


def sample(writeback: RunningWriteback, name: str) -> float:
    return writeback.telemetry.metrics.registry.get_sample_value(name) or 0.0


async def dead_letters(
    kafka: KafkaEndpoint, writeback: RunningWriteback, count: int
) -> list[ConsumerRecord[bytes, bytes]]:
    consumer = AIOKafkaConsumer(
        f"{writeback.settings.recommendations_topic}.dlq",
        bootstrap_servers=kafka.bootstrap,
        group_id=f"test-dlq-reader-{uuid.uuid4().hex[:8]}",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    try:
        return [await asyncio.wait_for(consumer.getone(), timeout=60) for _ in range(count)]
    finally:
        await consumer.stop()


def headers_of(record: ConsumerRecord[bytes, bytes]) -> dict[str, str]:
    return {name: value.decode() for name, value in record.headers}


def with_model_card(recommendation: Recommendation) -> Recommendation:
    recommendation.cards.append(
        Card(
            summary="High risk of clinical deterioration",
            detail="Review now",
            source_url=MODEL_CARD,
        )
    )
    return recommendation


async def test_duplicate_deliveries_write_one_bundles_worth_with_its_provenance(
    writeback: RunningWriteback, ehr: EhrEndpoint, http: httpx.AsyncClient
) -> None:
    patient_id = await create_patient(http, ehr)
    recommendation = with_model_card(recommendation_for(writeback, ehr.base_url, patient_id))
    # a model version of its own: the EHR keeps one Device per version, whoever wrote it first
    version = f"7-{uuid.uuid4().hex[:8]}"
    recommendation.model.version = version
    trace_id = secrets.randbits(128)
    traceparent = f"00-{trace_id:032x}-{secrets.randbits(64):016x}-01"

    for _ in range(3):  # delivered three times
        await writeback.publish(recommendation, traceparent)
    await writeback.wait_for_writebacks("written", 3)

    assert attempts(writeback, "created") == 1
    assert attempts(writeback, "unchanged") == 2
    written = await assert_one_bundles_worth(http, ehr, recommendation.recommendation_id)
    assessment, issue = written["RiskAssessment"], written["DetectedIssue"]
    provenance, audit = written["Provenance"], written["AuditEvent"]
    # the urn:uuid references became the ids SEKMET assigned
    assert {target["reference"] for target in provenance["target"]} == {
        f"RiskAssessment/{assessment['id']}",
        f"DetectedIssue/{issue['id']}",
    }
    assert issue["evidence"] == [{"detail": [{"reference": f"RiskAssessment/{assessment['id']}"}]}]
    assert issue["patient"] == {"reference": f"Patient/{patient_id}"}
    assert issue["severity"] == "high"
    device_reference = provenance["agent"][0]["who"]["reference"]
    assert device_reference.startswith("Device/")
    assert issue["author"] == {"reference": device_reference}
    device = (
        await http.get(f"{ehr.base_url}/{device_reference}", headers={"Accept": FHIR_JSON})
    ).json()
    assert device["deviceName"] == [{"name": "deterioration-gbm", "type": "model-name"}]
    assert device["version"] == [{"value": version}]
    assert device["identifier"] == [
        {"system": "urn:cdsflow:model", "value": f"deterioration-gbm/{version}"}
    ]
    assert device["note"] == [{"text": f"Model card: {MODEL_CARD}"}]
    traced = [
        e["what"]["identifier"]["value"] for e in provenance["entity"] if "identifier" in e["what"]
    ]
    assert traced == [f"{trace_id:032x}"]
    for resource in (assessment, issue, provenance):
        assert "AIAST" in {label["code"] for label in resource["meta"]["security"]}
    assert f"Patient/{patient_id}" in {e["what"].get("reference") for e in audit["entity"]}
    assert f"Provenance/{provenance['id']}" in {e["what"].get("reference") for e in audit["entity"]}


async def test_two_writebacks_on_the_same_recommendations_write_each_once(
    kafka: KafkaEndpoint,
    ehr: EhrEndpoint,
    unique: str,
    pseudonym_key: str,
    http: httpx.AsyncClient,
) -> None:
    # two instances in two consumer groups: both receive, and race to write, every message
    async with (
        started_writeback(kafka, ehr.base_url, unique, pseudonym_key) as first,
        started_writeback(
            kafka, ehr.base_url, unique, pseudonym_key, consumer_group=f"test-second-{unique}"
        ) as second,
    ):
        patient_id = await create_patient(http, ehr)
        recommendations = [recommendation_for(first, ehr.base_url, patient_id) for _ in range(5)]
        for recommendation in recommendations:
            await first.publish(recommendation)

        await first.wait_for_writebacks("written", 5)
        await second.wait_for_writebacks("written", 5)

        for recommendation in recommendations:
            await assert_one_bundles_worth(http, ehr, recommendation.recommendation_id)
        assert attempts(first, "created") + attempts(second, "created") == 5
        assert attempts(first, "unchanged") + attempts(second, "unchanged") == 5


async def test_503_and_429_are_retried_honouring_retry_after_then_written_once(
    kafka: KafkaEndpoint,
    ehr: EhrEndpoint,
    proxy: FaultInjectingProxy,
    unique: str,
    pseudonym_key: str,
    http: httpx.AsyncClient,
) -> None:
    async with started_writeback(
        kafka, proxy.base_url, unique, pseudonym_key, writeback_max_attempts=4
    ) as writeback:
        patient_id = await create_patient(http, ehr)
        recommendation = recommendation_for(writeback, proxy.base_url, patient_id)
        proxy.plan(
            Fault(503, retry_after="2"),  # answered by the proxy: SEKMET never sees it
            Fault(429, retry_after="1", forward=True),  # SEKMET wrote it; the answer is lost
        )

        await writeback.publish(recommendation)
        await writeback.wait_for_writebacks("written", 1)

        assert len(proxy.transaction_arrivals) == 3
        first, second, third = proxy.transaction_arrivals
        # the backoff here is at most 0.05 s: only Retry-After explains these waits
        assert second - first >= 2.0
        assert third - second >= 1.0
        assert attempts(writeback, "outage") == 2
        assert attempts(writeback, "unchanged") == 1  # the retry found the lost write
        assert writeback.writebacks("dead_lettered") == 0
        await assert_one_bundles_worth(http, ehr, recommendation.recommendation_id)


@pytest.mark.parametrize(("status", "issue_code"), [(400, "invalid"), (422, "processing")])
async def test_a_refused_write_is_dead_lettered_at_once_with_the_reason(
    kafka: KafkaEndpoint,
    ehr: EhrEndpoint,
    proxy: FaultInjectingProxy,
    unique: str,
    pseudonym_key: str,
    http: httpx.AsyncClient,
    status: int,
    issue_code: str,
) -> None:
    async with started_writeback(kafka, proxy.base_url, unique, pseudonym_key) as writeback:
        patient_id = await create_patient(http, ehr)
        recommendation = recommendation_for(writeback, proxy.base_url, patient_id)
        proxy.plan(Fault(status, issue_code=issue_code))

        await writeback.publish(recommendation)
        (record,) = await dead_letters(kafka, writeback, 1)

        headers = headers_of(record)
        assert record.value == recommendation.SerializeToString()
        assert headers["cdsflow-error-type"] == "EhrRefused"
        assert headers["cdsflow-attempts"] == "1"
        assert headers["cdsflow-ehr-status"] == str(status)
        assert f"issue codes: {issue_code}" in headers["cdsflow-error"]
        assert patient_id not in headers["cdsflow-error"]
        assert len(proxy.transaction_arrivals) == 1  # not retried
        assert attempts(writeback, "refused") == 1
        assert await written_for(http, ehr, recommendation.recommendation_id) == NOTHING_WRITTEN
        assert await writeback.cards(http, patient_id)  # the card is still shown


async def test_a_persistent_outage_dead_letters_after_n_attempts_opens_the_breaker_then_recovers(
    kafka: KafkaEndpoint,
    ehr: EhrEndpoint,
    proxy: FaultInjectingProxy,
    unique: str,
    pseudonym_key: str,
    http: httpx.AsyncClient,
) -> None:
    async with started_writeback(
        kafka,
        proxy.base_url,
        unique,
        pseudonym_key,
        writeback_max_attempts=4,
        ehr_circuit_failure_threshold=3,
        ehr_circuit_open_s=5.0,
    ) as writeback:
        patient_id = await create_patient(http, ehr)
        lost_in_outage = recommendation_for(writeback, proxy.base_url, patient_id)
        proxy.outage = True

        await writeback.publish(lost_in_outage)
        (record,) = await dead_letters(kafka, writeback, 1)

        headers = headers_of(record)
        assert record.value == lost_in_outage.SerializeToString()
        assert headers["cdsflow-error-type"] == "EhrUnavailable"
        assert headers["cdsflow-attempts"] == "4"
        assert headers["cdsflow-ehr-status"] == "503"
        # 3 outages open the breaker; the 4th try waited for its probe, which failed
        assert len(proxy.transaction_arrivals) == 4
        assert attempts(writeback, "outage") == 4
        assert sample(writeback, "cdsflow_writeback_ehr_circuit_opened_total") == 2
        ready = await http.get(f"{writeback.base_url}/readyz")
        assert ready.status_code == 503
        assert ready.json()["ehr_circuit_closed"] is False

        proxy.outage = False
        recovered = recommendation_for(writeback, proxy.base_url, patient_id)
        await writeback.publish(recovered)
        await writeback.wait_for_writebacks("written", 1)

        await assert_one_bundles_worth(http, ehr, recovered.recommendation_id)
        assert await written_for(http, ehr, lost_in_outage.recommendation_id) == NOTHING_WRITTEN
        assert sample(writeback, "cdsflow_writeback_ehr_circuit_state") == 0

        async def ready_again() -> bool:
            response = await http.get(f"{writeback.base_url}/readyz")
            return response.status_code == 200

        await eventually(ready_again, timeout_s=30, what="/readyz 200 once the EHR is back")
        assert writeback.writebacks("dead_lettered") == 1
