"""Write-backs in patient lanes, on real parts: different patients' transactions overlap in
the EHR, up to `CDSFLOW_WRITEBACK_MAX_CONCURRENT_PATIENTS` at once, while one patient's are
sent one after the other, in the order they were published.

The EHR is SEKMET behind `tests/support/fault_proxy.py`, which holds every transaction
0.2 s (an EHR's latency) and counts how many are in flight; everything is counted there and
read back from SEKMET.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import AsyncIterator, Sequence

import httpx
import pytest
from aiokafka import AIOKafkaProducer

from cdsflow.contracts import Recommendation
from cdsflow.telemetry import PatientKeyer
from tests.conftest import EhrEndpoint, KafkaEndpoint
from tests.integration.test_writeback import create_patient, risk_assessments, started_writeback
from tests.support.fault_proxy import FaultInjectingProxy, Transaction, fault_injecting_proxy
from tests.support.recommendations import keyed_recommendation

pytestmark = pytest.mark.integration

PATIENTS = 8
PER_PATIENT = 3
LANES = 4
EHR_LATENCY_S = 0.2


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=30) as client:
        yield client


@pytest.fixture
async def slow_ehr(ehr: EhrEndpoint) -> AsyncIterator[FaultInjectingProxy]:
    async with fault_injecting_proxy(ehr.base_url) as proxy:
        proxy.transaction_delay_s = EHR_LATENCY_S
        yield proxy


async def publish_all(
    kafka: KafkaEndpoint, topic: str, recommendations: Sequence[Recommendation]
) -> None:
    producer = AIOKafkaProducer(
        bootstrap_servers=kafka.bootstrap, acks="all", enable_idempotence=False
    )
    await producer.start()
    try:
        for recommendation in recommendations:
            await producer.send_and_wait(
                topic,
                recommendation.SerializeToString(),
                key=recommendation.patient_key.encode(),
            )
    finally:
        await producer.stop()


def recommendation_ids(transaction: Transaction) -> set[str]:
    """The recommendation ids that the transaction Bundle writes (each resource is tagged)."""
    return {
        tag["code"]
        for entry in json.loads(transaction.body)["entry"]
        for tag in entry["resource"].get("meta", {}).get("tag", [])
        if tag.get("system") == "urn:cdsflow:recommendation"
    }


async def test_patients_are_written_back_at_once_and_each_patient_in_order(
    kafka: KafkaEndpoint,
    ehr: EhrEndpoint,
    slow_ehr: FaultInjectingProxy,
    http: httpx.AsyncClient,
    unique: str,
    pseudonym_key: str,
) -> None:
    keyer = PatientKeyer(pseudonym_key)
    patients = [await create_patient(http, ehr) for _ in range(PATIENTS)]
    # each patient's first, then each one's second, ...: the patients interleave on the topic
    published = [
        keyed_recommendation(keyer, slow_ehr.base_url, patient)
        for _ in range(PER_PATIENT)
        for patient in patients
    ]
    # on the topic before the writeback starts: its first batch holds them all
    await publish_all(kafka, f"test.recommendations.{unique}", published)

    async with started_writeback(
        kafka,
        slow_ehr.base_url,
        unique,
        pseudonym_key,
        writeback_max_concurrent_patients=LANES,
    ) as writeback:
        await writeback.wait_for_writebacks("written", len(published))

    # exactly one transaction per recommendation, and no more than LANES at a time, but that
    # many: sequential write-backs would never have had two in flight
    sent = [(recommendation_ids(t), t) for t in slow_ehr.transactions]
    assert sorted(next(iter(ids)) for ids, _ in sent) == sorted(
        r.recommendation_id for r in published
    )
    assert all(len(ids) == 1 for ids, _ in sent)
    assert slow_ehr.most_transactions_in_flight == LANES

    transaction_of = {next(iter(ids)): transaction for ids, transaction in sent}
    for patient in patients:
        mine = [r for r in published if r.patient_reference == f"Patient/{patient}"]
        transactions = [transaction_of[r.recommendation_id] for r in mine]
        # in the order published, and each answered before the patient's next one was sent
        for earlier, later in itertools.pairwise(transactions):
            assert earlier.answered <= later.arrived
    for recommendation in published:
        assert len(await risk_assessments(http, ehr, recommendation.recommendation_id)) == 1
