"""The load `make bench` puts on the pipeline and on its chained ceiling alike: rest-hook PUTs of
new vital-sign Observations, sent by the out-of-process load generator (`bench.load_process`),
closed loop (saturated) or open loop (a fixed offered rate), each timed from the PUT until its
answer is on Kafka (`Arrivals` says when that was; both stamps are `time.perf_counter()`, one
clock for every process on Linux)."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from bench.load_process import run_load
from bench.measures import latency_summary, percentile, rate
from cdsflow.runtime.story import DETERIORATING, round_observations

REPO = Path(__file__).resolve().parent.parent
# the latency distribution kept per run (for the report's plots): these percentiles, in ms
DISTRIBUTION_PERCENTILES = (1, 5, 10, 20, 30, 40, 50, 60, 70, 80, 90, 95, 99, 100)
# more in flight "no longer raises events/s" when it raises them by less than this fraction
SATURATION_GAIN = 0.05
# how long an open loop waits for its answers after its last request: 6 s per second offered,
# at least a minute (then the run is reported as not carried, with what never arrived)
ANSWER_WAIT_MIN_S = 60.0
ANSWER_WAIT_PER_SECOND_OFFERED = 6.0


class Arrivals(Protocol):
    """When the answer to the notification of a resource (by id) arrived (perf_counter)."""

    def arrival(self, resource_id: str) -> float | None: ...


def notification(patient_reference: str, index: int) -> dict[str, Any]:
    vitals = DETERIORATING.rounds[index % len(DETERIORATING.rounds)]
    observation = round_observations(patient_reference, vitals, datetime.now(UTC))[0]
    observation["id"] = f"bench-{uuid.uuid4().hex}"
    observation["meta"] = {"versionId": "1"}
    return observation


Sent = tuple[str, float, float]  # (resource id, written, answered), perf_counter


class LoadGenerator:
    """Drives one target (a rest-hook endpoint) with `bench.load_process`, a process per run,
    as the EHR would: `PUT {url}/Observation/{id}` with the channel's secret."""

    def __init__(self, name: str, url: str, secret: str, work_dir: Path) -> None:
        self._name = name
        self._url = url
        self._secret = secret
        self._work_dir = work_dir
        self._runs = 0
        self.failures = 0
        # what went wrong, by kind (an HTTP status, or the transport error's name)
        self.failure_kinds: dict[str, int] = {}

    async def run(self, observations: list[dict[str, Any]], **mode: Any) -> dict[str, Any]:
        """One run of the generator; returns its answered requests (`ok`: `Sent`), how many it
        sent, and its figures (`load_generator`)."""
        self._runs += 1
        plan = {
            **mode,
            "url": self._url,
            "authorization": f"Bearer {self._secret}",
            "ids": [observation["id"] for observation in observations],
            "bodies": [json.dumps(observation) for observation in observations],
        }
        figures = await run_load(plan, self._work_dir / f"load-{self._name}-{self._runs}")
        ok: list[Sent] = []
        for index, written, answered, status in figures["sent"]:
            if 200 <= status < 300:
                ok.append((observations[index]["id"], written, answered))
            elif status:
                self._failed(str(status))
        for kind, count in figures["errors"].items():
            self._failed(kind, count)
        stamps = [(written, answered) for _, written, answered, _ in figures["sent"]]
        began = min((written for written, _ in stamps), default=0.0)
        ended = max((answered for _, answered in stamps), default=began)
        cpu_s = float(figures["cpu_s"])
        return {
            "ok": ok,
            "sent": figures["sent"],
            "load_generator": {
                "requests": len(stamps),
                "connections": figures["connections"],
                "cpu_s": round(cpu_s, 4),
                "cpu_ms_per_request": round(cpu_s * 1000 / max(1, len(stamps)), 3),
                # its CPU over the run's span, in cores: far below 1, it was not the bound
                "cpu_share_of_a_core": round(cpu_s / (ended - began), 3) if ended > began else None,
            },
        }

    def _failed(self, kind: str, count: int = 1) -> None:
        self.failures += count
        self.failure_kinds[kind] = self.failure_kinds.get(kind, 0) + count


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


def _observations(patients: list[str], count: int) -> list[dict[str, Any]]:
    return [notification(patients[index % len(patients)], index) for index in range(count)]


async def saturated(
    generator: LoadGenerator, arrivals: Arrivals, patients: list[str], events: int, in_flight: int
) -> dict[str, Any]:
    """`events` notifications, `in_flight` at a time (closed loop); events/s from the first PUT
    until the last answer is on Kafka."""
    failures_before = generator.failures
    run = await generator.run(
        _observations(patients, events), mode="saturated", in_flight=in_flight
    )
    ok: list[Sent] = run["ok"]
    began = min((written for _, written, _ in ok), default=0.0)
    accepted = max((answered for _, _, answered in ok), default=began) - began
    finished = await all_arrived(arrivals, [rid for rid, _, _ in ok], timeout_s=300)
    return {
        "events": len(ok),
        "rejected": generator.failures - failures_before,
        "concurrency": in_flight,
        "accepted_per_s": rate(len(ok), accepted),
        "events_per_s": rate(len(ok), finished - began),
        "load_generator": run["load_generator"],
    }


async def fixed_rate(
    generator: LoadGenerator, arrivals: Arrivals, patients: list[str], per_s: float, seconds: float
) -> dict[str, Any]:
    """Open loop: one notification every 1/per_s s for `seconds`, whatever the answers take;
    latency from each PUT to its answer, the rate the answers came at (below the offered one
    when the path cannot carry it), and the rate the generator kept (`sent_per_s`; what it
    could not send within `seconds` is `not_sent`; `send_lag_ms`: how late it wrote the
    requests against their schedule)."""
    total = max(1, int(per_s * seconds))
    failures_before = generator.failures
    run = await generator.run(
        _observations(patients, total),
        mode="fixed_rate",
        per_s=per_s,
        seconds=seconds,
        # connections opened before the clock starts; more are opened while all are waiting
        warm_connections=max(4, min(64, int(per_s / 10))),
    )
    ok: list[Sent] = run["ok"]
    sent = [(index, written) for index, written, _, _ in run["sent"]]
    began = min((written for _, written in sent), default=0.0)
    common = {
        "offered_per_s": per_s,
        "sent_per_s": sent_rate(sent, per_s),
        "not_sent": total - len(sent),
        "send_lag_ms": latency_summary(send_lags(sent, per_s)),
        "events": len(ok),
        "rejected": generator.failures - failures_before,
        "load_generator": run["load_generator"],
    }
    wait_s = max(ANSWER_WAIT_MIN_S, ANSWER_WAIT_PER_SECOND_OFFERED * seconds)
    try:
        finished = await all_arrived(arrivals, [rid for rid, _, _ in ok], timeout_s=wait_s)
    except TimeoutError:
        # not carried: what arrived, and how many never did within the wait; no latency
        # figures, since the slowest answers are the ones missing
        stamps = [stamp for rid, _, _ in ok if (stamp := arrivals.arrival(rid)) is not None]
        missing = len(ok) - len(stamps)
        return {
            **common,
            "unanswered": missing,
            "answered_per_s": rate(len(stamps), max(stamps, default=began) - began),
            "latency": None,
            "reason": f"{missing} of {len(ok)} answers not there {wait_s:g} s after the last "
            "request",
        }
    latencies = [(arrivals.arrival(rid) or written) - written for rid, written, _ in ok]
    return {
        **common,
        "unanswered": 0,
        "answered_per_s": rate(len(ok), finished - began),
        "latency": latency_summary(latencies),
        "distribution_ms": distribution_ms(latencies),
    }


def sent_rate(sent: list[tuple[int, float]], per_s: float) -> float:
    """The rate the open loop's requests went out at: (index, written) pairs; from the first
    write to one interval past the last (n requests exactly on schedule: `per_s`)."""
    if not sent:
        return 0.0
    stamps = [written for _, written in sent]
    return rate(len(sent), max(stamps) - min(stamps) + 1 / per_s)


def send_lags(sent: list[tuple[int, float]], per_s: float) -> list[float]:
    """How late each request was written against the open loop's schedule (s), the schedule
    anchored at the first request's write (request i due i / per_s after request 0)."""
    if not sent:
        return []
    first = min(sent)
    return [max(0.0, written - (first[1] + (index - first[0]) / per_s)) for index, written in sent]


def saturation_point(sweep: list[tuple[int, float]], gain: float = SATURATION_GAIN) -> int | None:
    """The in-flight count past which more in flight no longer raised events/s: walking the
    (in flight, events/s) points upwards, the best level so far at the first level that did
    not beat it by `gain`; None while every level still did."""
    best_level: int | None = None
    best = 0.0
    for level, events_per_s in sorted(sweep):
        if best_level is not None and events_per_s < best * (1 + gain):
            return best_level
        if events_per_s > best:
            best_level, best = level, events_per_s
    return None


def distribution_ms(latencies_s: list[float]) -> dict[str, float]:
    """The latency at each of `DISTRIBUTION_PERCENTILES`, in ms (keys: the percentile)."""
    if not latencies_s:
        return {}
    return {
        str(point): round(percentile(latencies_s, point / 100) * 1000, 2)
        for point in DISTRIBUTION_PERCENTILES
    }
