"""The load `make bench` puts on the pipeline and on its chained ceiling alike: rest-hook PUTs of
new vital-sign Observations, closed loop (saturated) or open loop (a fixed offered rate), each
timed from the PUT until its answer is on Kafka (`Arrivals` says when that was)."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from datetime import UTC, datetime
from typing import Any, Protocol

import httpx

from bench.measures import latency_summary, percentile, rate
from cdsflow.runtime.story import DETERIORATING, round_observations

# the latency distribution kept per run (for the report's plots): these percentiles, in ms
DISTRIBUTION_PERCENTILES = (1, 5, 10, 20, 30, 40, 50, 60, 70, 80, 90, 95, 99, 100)


class Arrivals(Protocol):
    """When the answer to the notification of a resource (by id) arrived (perf_counter)."""

    def arrival(self, resource_id: str) -> float | None: ...


def notification(patient_reference: str, index: int) -> dict[str, Any]:
    vitals = DETERIORATING.rounds[index % len(DETERIORATING.rounds)]
    observation = round_observations(patient_reference, vitals, datetime.now(UTC))[0]
    observation["id"] = f"bench-{uuid.uuid4().hex}"
    observation["meta"] = {"versionId": "1"}
    return observation


class Notifier:
    """PUTs rest-hook notifications to one endpoint as the EHR would; returns resource ids."""

    def __init__(self, http: httpx.AsyncClient, endpoint: str, secret: str) -> None:
        self._http = http
        self._endpoint = endpoint
        self._headers = {
            "Authorization": f"Bearer {secret}",
            "Content-Type": "application/fhir+json",
        }
        self.failures = 0
        # what went wrong, by kind (an HTTP status, or the transport error's name)
        self.failure_kinds: dict[str, int] = {}

    async def send(self, observation: dict[str, Any]) -> tuple[str, float] | None:
        started = time.perf_counter()
        try:
            response = await self._http.put(
                f"{self._endpoint}/Observation/{observation['id']}",
                content=json.dumps(observation),
                headers=self._headers,
            )
        except httpx.TransportError as error:
            self._failed(type(error).__name__)
            return None
        if not response.is_success:
            self._failed(str(response.status_code))
            return None
        return observation["id"], started

    def _failed(self, kind: str) -> None:
        self.failures += 1
        self.failure_kinds[kind] = self.failure_kinds.get(kind, 0) + 1


async def all_arrived(arrivals: Arrivals, resource_ids: list[str], timeout_s: float) -> float:
    """Wait until every resource's answer arrived; returns the last arrival (perf_counter)."""
    deadline = time.monotonic() + timeout_s
    while True:
        stamps = [arrivals.arrival(resource_id) for resource_id in resource_ids]
        missing = sum(stamp is None for stamp in stamps)
        if not missing:
            return max((stamp for stamp in stamps if stamp is not None), default=0.0)
        if time.monotonic() > deadline:
            raise TimeoutError(f"{missing} of {len(resource_ids)} answers never arrived")
        await asyncio.sleep(0.05)


async def saturated(
    notifier: Notifier, arrivals: Arrivals, patients: list[str], events: int, concurrency: int
) -> dict[str, Any]:
    """`events` notifications, `concurrency` in flight; events/s until the last answer."""
    gate = asyncio.Semaphore(concurrency)
    sent: list[tuple[str, float]] = []
    failures_before = notifier.failures

    async def one(index: int) -> None:
        async with gate:
            result = await notifier.send(notification(patients[index % len(patients)], index))
            if result:
                sent.append(result)

    began = time.perf_counter()
    await asyncio.gather(*(one(i) for i in range(events)))
    accepted = time.perf_counter() - began
    finished = await all_arrived(arrivals, [rid for rid, _ in sent], timeout_s=300)
    return {
        "events": len(sent),
        "rejected": notifier.failures - failures_before,
        "concurrency": concurrency,
        "accepted_per_s": rate(len(sent), accepted),
        "events_per_s": rate(len(sent), finished - began),
    }


async def fixed_rate(
    notifier: Notifier, arrivals: Arrivals, patients: list[str], per_s: float, seconds: float
) -> dict[str, Any]:
    """Open loop: one notification every 1/per_s s for `seconds`, whatever the answers take;
    latency from each PUT to its answer, the rate the answers came at (below the offered one
    when the path cannot carry it), and the rate the generator kept (`sent_per_s`; what it
    could not send within `seconds` is `not_sent`)."""
    total = max(1, int(per_s * seconds))
    sent: list[tuple[str, float]] = []
    tasks = []
    failures_before = notifier.failures
    began = time.perf_counter()

    async def one(index: int) -> None:
        result = await notifier.send(notification(patients[index % len(patients)], index))
        if result:
            sent.append(result)

    for index in range(total):
        due = began + index / per_s
        await asyncio.sleep(max(0.0, due - time.perf_counter()))
        if time.perf_counter() - began > seconds:
            break  # the run's time is up: what the generator could not send is not sent late
        tasks.append(asyncio.create_task(one(index)))
    sent_in = max(time.perf_counter() - began, 1 / per_s)
    await asyncio.gather(*tasks)
    finished = await all_arrived(arrivals, [rid for rid, _ in sent], timeout_s=300)
    latencies = [(arrivals.arrival(rid) or started) - started for rid, started in sent]
    return {
        "offered_per_s": per_s,
        "sent_per_s": rate(len(tasks), sent_in),
        "not_sent": total - len(tasks),
        "events": len(sent),
        "rejected": notifier.failures - failures_before,
        "answered_per_s": rate(len(sent), finished - began),
        "latency": latency_summary(latencies),
        "distribution_ms": distribution_ms(latencies),
    }


def distribution_ms(latencies_s: list[float]) -> dict[str, float]:
    """The latency at each of `DISTRIBUTION_PERCENTILES`, in ms (keys: the percentile)."""
    if not latencies_s:
        return {}
    return {
        str(point): round(percentile(latencies_s, point / 100) * 1000, 2)
        for point in DISTRIBUTION_PERCENTILES
    }
