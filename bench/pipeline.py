"""`make bench`: the skeleton's end-to-end events/s when saturated and its latency at a fixed
offered rate, beside bare baselines (broker alone, Triton alone), all in one run.

End to end means: the EHR's rest-hook notification (PUT to the listener) until the
Recommendation for that change is on `cdsflow.recommendations.v1` — listener, Kafka, reasoner
(EHR history fetch + Triton) and Kafka again. The writeback's completion is reported for the
saturated run too (RiskAssessments visible in the EHR).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from aiokafka import AIOKafkaConsumer

from bench.baselines import kafka_round_trip, triton_direct
from bench.consumers import wait_for_assignment
from bench.measures import latency_summary, rate
from bench.stages import settled_spans, stage_durations
from cdsflow.contracts import CLINICAL_EVENTS, RECOMMENDATIONS, ClinicalEvent, Recommendation
from cdsflow.fhir import EhrClient
from cdsflow.runtime.stack import Stack, StackOptions
from cdsflow.runtime.story import DETERIORATING, patient_resource, round_observations

REPO = Path(__file__).resolve().parent.parent


class RecommendationWatch:
    """Stamps when each event's recommendation arrived, and which resource each event is."""

    def __init__(self, bootstrap: str) -> None:
        self.arrived: dict[str, float] = {}
        self.event_ids: dict[str, str] = {}  # resource id -> event id
        self._consumer = AIOKafkaConsumer(
            CLINICAL_EVENTS,
            RECOMMENDATIONS,
            bootstrap_servers=bootstrap,
            group_id=f"bench-watch-{uuid.uuid4().hex[:8]}",
            auto_offset_reset="earliest",
            fetch_max_wait_ms=5,
        )
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await self._consumer.start()
        self._task = asyncio.create_task(self._run())
        await wait_for_assignment(self._consumer)

    async def _run(self) -> None:
        async for record in self._consumer:
            if record.topic == CLINICAL_EVENTS:
                event = ClinicalEvent.FromString(record.value or b"")
                self.event_ids.setdefault(event.resource_id, event.event_id)
                continue
            recommendation = Recommendation.FromString(record.value or b"")
            self.arrived.setdefault(recommendation.event_id, time.perf_counter())

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
        await self._consumer.stop()


async def _prepare_patients(ehr: EhrClient, count: int) -> list[str]:
    """Patients with one round of vital signs in the EHR, so the reasoner finds history."""
    references = []
    now = datetime.now(UTC).replace(microsecond=0)
    for _ in range(count):
        created = await ehr.create(patient_resource(DETERIORATING))
        reference = f"Patient/{created['id']}"
        for observation in round_observations(reference, DETERIORATING.rounds[0], now):
            await ehr.create(observation)
        references.append(reference)
    return references


def _notification(patient_reference: str, index: int) -> dict[str, Any]:
    vitals = DETERIORATING.rounds[index % len(DETERIORATING.rounds)]
    observation = round_observations(patient_reference, vitals, datetime.now(UTC))[0]
    observation["id"] = f"bench-{uuid.uuid4().hex}"
    observation["meta"] = {"versionId": "1"}
    return observation


class Notifier:
    """PUTs rest-hook notifications to the listener as the EHR would; returns event ids."""

    def __init__(self, http: httpx.AsyncClient, listener: str, secret: str) -> None:
        self._http = http
        self._listener = listener
        self._headers = {
            "Authorization": f"Bearer {secret}",
            "Content-Type": "application/fhir+json",
        }
        self.failures = 0

    async def send(self, observation: dict[str, Any]) -> tuple[str, float] | None:
        started = time.perf_counter()
        response = await self._http.put(
            f"{self._listener}/Observation/{observation['id']}",
            content=json.dumps(observation),
            headers=self._headers,
        )
        if not response.is_success:
            self.failures += 1
            return None
        return observation["id"], started


async def _await_all(watch: RecommendationWatch, ids: list[str], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while any(event_id not in watch.arrived for event_id in ids):
        if time.monotonic() > deadline:
            raise TimeoutError(f"{sum(i not in watch.arrived for i in ids)} never arrived")
        await asyncio.sleep(0.05)


async def saturated(
    notifier: Notifier,
    watch: RecommendationWatch,
    patients: list[str],
    events: int,
    concurrency: int,
) -> dict[str, Any]:
    gate = asyncio.Semaphore(concurrency)
    sent: list[tuple[str, float]] = []

    async def one(index: int) -> None:
        async with gate:
            result = await notifier.send(_notification(patients[index % len(patients)], index))
            if result:
                sent.append(result)

    began = time.perf_counter()
    await asyncio.gather(*(one(i) for i in range(events)))
    accepted = time.perf_counter() - began
    await _await_matched(watch, [rid for rid, _ in sent], timeout_s=300)
    finished = max(watch.arrived[watch.event_ids[rid]] for rid, _ in sent)
    return {
        "events": len(sent),
        "rejected": notifier.failures,
        "concurrency": concurrency,
        "accepted_per_s": rate(len(sent), accepted),
        "events_per_s": rate(len(sent), finished - began),
    }


async def fixed_rate(
    notifier: Notifier,
    watch: RecommendationWatch,
    patients: list[str],
    per_s: float,
    seconds: float,
) -> dict[str, Any]:
    total = int(per_s * seconds)
    sent: list[tuple[str, float]] = []
    tasks = []
    began = time.perf_counter()

    async def one(index: int) -> None:
        result = await notifier.send(_notification(patients[index % len(patients)], index))
        if result:
            sent.append(result)

    for index in range(total):
        due = began + index / per_s
        await asyncio.sleep(max(0.0, due - time.perf_counter()))
        tasks.append(asyncio.create_task(one(index)))
    await asyncio.gather(*tasks)
    await _await_matched(watch, [rid for rid, _ in sent], timeout_s=120)
    latencies = [watch.arrived[watch.event_ids[rid]] - started for rid, started in sent]
    return {
        "offered_per_s": per_s,
        "events": len(sent),
        "latency": latency_summary(latencies),
    }


async def _await_matched(
    watch: RecommendationWatch, resource_ids: list[str], timeout_s: float
) -> None:
    """Wait until every notified Observation has its event and that event its recommendation."""
    deadline = time.monotonic() + timeout_s
    while any(rid not in watch.event_ids for rid in resource_ids):
        if time.monotonic() > deadline:
            raise TimeoutError("clinical events missing for some notifications")
        await asyncio.sleep(0.05)
    await _await_all(watch, [watch.event_ids[rid] for rid in resource_ids], timeout_s)


async def _writebacks_done(ehr: EhrClient, expected: int, timeout_s: float) -> float | None:
    """Seconds until the EHR holds `expected` RiskAssessments, or None at the deadline."""
    began = time.perf_counter()
    while time.perf_counter() - began < timeout_s:
        bundle = await ehr.search_count("RiskAssessment")
        if bundle >= expected:
            return time.perf_counter()
        await asyncio.sleep(0.25)
    return None


async def run(args: argparse.Namespace) -> dict[str, Any]:
    work_dir = Path(tempfile.mkdtemp(prefix="cdsflow-bench-"))
    # no Subscription: the bench notifies the listener itself, and its setup writes to the
    # EHR must not become events
    options = StackOptions(
        work_dir=work_dir, model_repository=REPO / "models", with_ehr=True, channels=()
    )
    stack = Stack(options)
    endpoints = stack.start()
    try:
        baseline_kafka = await kafka_round_trip(endpoints["broker"], args.events, args.concurrency)
        baseline_triton = await triton_direct(
            endpoints["triton_grpc"], "deterioration_risk", args.events, args.concurrency
        )
        async with httpx.AsyncClient(timeout=30) as http:
            ehr = EhrClient(endpoints["ehr"], http)
            patients = await _prepare_patients(ehr, args.patients)
            watch = RecommendationWatch(endpoints["broker"])
            await watch.start()
            notifier = Notifier(http, endpoints["listener"], stack.options.channel_secret)
            try:
                # warm-up: connections, consumer groups, the model's first inference
                await fixed_rate(notifier, watch, patients, per_s=10, seconds=1)
                written_before = await ehr.search_count("RiskAssessment")
                began = time.perf_counter()
                pipeline_saturated = await saturated(
                    notifier, watch, patients, args.events, args.concurrency
                )
                done = await _writebacks_done(
                    ehr, written_before + pipeline_saturated["events"], timeout_s=300
                )
                pipeline_saturated["written_back_per_s"] = (
                    rate(pipeline_saturated["events"], done - began) if done else None
                )
                assert stack.collector is not None  # the bench runs with the built-in collector
                stack.collector.clear()
                pipeline_latency = [
                    await fixed_rate(notifier, watch, patients, per_s=offered, seconds=args.seconds)
                    for offered in args.rates
                ]
                stages = stage_durations(await settled_spans(stack.collector))
            finally:
                await watch.stop()
    finally:
        stack.stop()
    return {
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": "make bench",
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
        },
        "parts": "Tansu (memory), Triton CPU binary (python backend), SEKMET EHR, 3 services",
        "pipeline": {
            "what": (
                "rest-hook PUT to the listener -> Recommendation on Kafka "
                "(listener, broker, reasoner with its stream context and Triton, broker)"
            ),
            "saturated": pipeline_saturated,
            "fixed_rate": pipeline_latency,  # one entry per offered rate
            "stages": {
                "what": "span durations during the fixed-rate runs, from the exported traces",
                "spans": stages,
            },
        },
        "baseline": {"kafka": baseline_kafka, "triton": baseline_triton},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--output", type=Path, default=REPO / "bench" / "results.json")
    parser.add_argument("--events", type=int, default=500, help="events in the saturated run")
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--patients", type=int, default=20)
    parser.add_argument(
        "--rates",
        type=lambda text: [float(part) for part in text.split(",")],
        default=[5.0, 10.0, 20.0],
        help="offered events/s for the latency runs, comma-separated",
    )
    parser.add_argument("--seconds", type=float, default=15, help="length of the fixed-rate run")
    args = parser.parse_args()
    results = asyncio.run(run(args))
    # other benchmarks' figures in the same file (e.g. `reasoner`) are kept
    previous = json.loads(args.output.read_text()) if args.output.exists() else {}
    args.output.write_text(json.dumps({**previous, **results}, indent=2) + "\n")
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
