"""`make bench-card-state`: what the writeback's card state costs — memory per patient held,
and how long a replica takes to read the recommendations topic back on start.

Memory: the growth of this process's resident set while `--patients` typical recommendations
(one score, one card, three basis references) are kept, divided by the patients. Read-back:
Tansu started here, `--records` recommendations over `--patients` patients published, then a
fresh `RecommendationsTail` timed from its start until its store is rebuilt.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import platform
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaProducer
from google.protobuf.timestamp_pb2 import Timestamp

from cdsflow.contracts import (
    Basis,
    Card,
    Indicator,
    Mode,
    ModelRef,
    Recommendation,
    Score,
)
from cdsflow.runtime.parts import start_broker
from cdsflow.service import KafkaConnection
from cdsflow.telemetry import PatientKeyer
from cdsflow.writeback.domain.latest_recommendations import LatestRecommendations, stored
from cdsflow.writeback.recommendations_tail import RecommendationsTail

REPO = Path(__file__).resolve().parent.parent
EHR_BASE_URL = "http://ehr.bench.invalid/fhir"
KEYER = PatientKeyer("bench-pseudonym-key-not-secret-0123")


def typical_recommendation(patient: int, produced: datetime) -> Recommendation:
    reference = f"Patient/bench-{patient}"
    stamp = Timestamp()
    stamp.FromDatetime(produced)
    return Recommendation(
        recommendation_id=f"rec-{uuid.uuid4().hex}",
        event_id=f"event-{uuid.uuid4().hex}",
        patient_key=KEYER.patient_key(reference),
        patient_reference=reference,
        scores=[Score(name="deterioration_risk", value=0.83, band="high")],
        cards=[
            Card(
                uuid=str(uuid.uuid4()),
                summary="High risk of clinical deterioration in the next 12 hours (score 0.83)",
                detail="Respiratory rate 28/min, heart rate 118/min, SpO2 89 % (measured "
                "10:30). Model deterioration-gbm version 7.",
                indicator=Indicator.INDICATOR_CRITICAL,
                source_label="cdsflow deterioration model",
                source_url="https://models.example.org/deterioration-gbm/7",
            )
        ],
        basis=Basis(
            resource_references=["Observation/rr-1", "Observation/hr-1", "Observation/spo2-1"]
        ),
        model=ModelRef(name="deterioration-gbm", version="7"),
        adapter_id="deterioration-risk",
        mode=Mode.MODE_ACTIVE,
        produced_at=stamp,
        ehr_base_url=EHR_BASE_URL,
    )


def _resident_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def memory_per_patient(patients: int) -> dict[str, Any]:
    now = datetime.now(UTC)
    samples = [typical_recommendation(patient, now) for patient in range(patients)]
    encoded = sum(len(sample.SerializeToString()) for sample in samples) / patients
    del samples
    gc.collect()
    before = _resident_bytes()
    store = LatestRecommendations(max_patients=patients, max_age=timedelta(days=1))
    for patient in range(patients):
        store.keep(stored(typical_recommendation(patient, now)))
    gc.collect()
    grown = _resident_bytes() - before
    assert len(store) == patients
    return {
        "patients": patients,
        "resident_growth_bytes": grown,
        "bytes_per_patient": round(grown / patients),
        "encoded_recommendation_bytes": round(encoded),
    }


async def read_back_time(bootstrap: str, records: int, patients: int) -> dict[str, Any]:
    topic = f"bench.recommendations.{uuid.uuid4().hex[:8]}"
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, acks="all", enable_idempotence=False, linger_ms=5
    )
    await producer.start()
    try:
        now = datetime.now(UTC) - timedelta(hours=1)
        sends = []
        for index in range(records):
            recommendation = typical_recommendation(
                index % patients, now + timedelta(milliseconds=index)
            )
            sends.append(
                await producer.send(
                    topic,
                    recommendation.SerializeToString(),
                    key=recommendation.patient_key.encode(),
                )
            )
        await asyncio.gather(*sends)
    finally:
        await producer.stop()
    store = LatestRecommendations(max_patients=patients, max_age=timedelta(days=1))
    tail = RecommendationsTail(
        store,
        KafkaConnection(bootstrap),
        topic,
        ehr_base_url=EHR_BASE_URL,
        max_age=timedelta(days=1),
    )
    started = time.perf_counter()
    tail.start()
    try:
        while True:  # polled: the store has no event to wait on
            if store.rebuilt:
                break
            await asyncio.sleep(0.01)
        elapsed = time.perf_counter() - started
    finally:
        await tail.stop()
    assert len(store) == patients
    return {
        "records": records,
        "patients": patients,
        "seconds": round(elapsed, 3),
        "records_per_s": round(records / elapsed),
    }


async def run(args: argparse.Namespace) -> dict[str, Any]:
    memory = memory_per_patient(args.memory_patients)
    with tempfile.TemporaryDirectory(prefix="cdsflow-bench-card-state-") as logs:
        broker = await asyncio.to_thread(start_broker, Path(logs))
        try:
            read_back = await read_back_time(
                broker.endpoints["broker"], args.records, args.patients
            )
        finally:
            await asyncio.to_thread(broker.stop)
    return {
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": "python -m bench.card_state",
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "memory": memory,
        "read_back": read_back,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--output", type=Path, default=REPO / "bench" / "card_state.json")
    parser.add_argument("--memory-patients", type=int, default=50_000)
    parser.add_argument("--records", type=int, default=20_000)
    parser.add_argument("--patients", type=int, default=5_000)
    args = parser.parse_args()
    results = asyncio.run(run(args))
    args.output.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
