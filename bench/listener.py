"""`make bench` (listener part): notifications/s through the listener when saturated, and its
latency at a fixed offered rate, side by side in the same run with a bare endpoint that only
publishes each body to the same broker (`bench.bare_listener`).

Both run as processes of their own on one embedded broker; one load process (this one) sends
full-resource R4 rest-hook PUTs, each a new resource version, so every one is published.
The listener's peak RSS is read from /proc (VmHWM). Figures go to `bench/results.json` under
`listener`, keeping every other key.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from bench.measures import latency_summary, percentile, rate
from cdsflow.runtime.parts import start_broker
from cdsflow.runtime.processes import ManagedProcess, free_port, http_ok, spawn, without_otel
from cdsflow.runtime.story import vital_sign_observation

REPO = Path(__file__).resolve().parent.parent
REST_HOOK = "/fhir/notifications/rest-hook"
# a fresh channel secret for each run
SECRET = secrets.token_urlsafe(32)
EHR = "http://ehr.bench.test/fhir"


def observation(index: int, run: str) -> tuple[str, bytes]:
    """A vital-sign Observation of its own (id and version), for one of 500 patients."""
    resource = vital_sign_observation(
        f"Patient/bench-{index % 500}",
        datetime.now(UTC),
        "8867-4",
        "Heart rate",
        value=60 + index % 60,
        ucum="/min",
        unit="beats/minute",
    )
    resource["id"] = f"bench-{run}-{index}"
    resource["meta"] = {"versionId": "1", "lastUpdated": datetime.now(UTC).isoformat()}
    return resource["id"], json.dumps(resource).encode()


async def saturate(base_url: str, events: int, concurrency: int) -> dict[str, Any]:
    """`events` PUTs with `concurrency` in flight; events/s and latency of the 2xx answers."""
    run = uuid.uuid4().hex[:8]
    bodies = [observation(index, run) for index in range(events)]
    latencies: list[float] = []
    failures = 0
    gate = asyncio.Semaphore(concurrency)
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=base_url, timeout=60, limits=limits) as client:

        async def send(resource_id: str, body: bytes) -> None:
            nonlocal failures
            async with gate:
                started = time.perf_counter()
                answer = await client.put(
                    f"{REST_HOOK}/Observation/{resource_id}", content=body, headers=_headers()
                )
                if answer.is_success:
                    latencies.append(time.perf_counter() - started)
                else:
                    failures += 1

        began = time.perf_counter()
        await asyncio.gather(*(send(resource_id, body) for resource_id, body in bodies))
        elapsed = time.perf_counter() - began
    return {
        "events": events,
        "failed": failures,
        "concurrency": concurrency,
        "events_per_s": rate(len(latencies), elapsed),
        "latency": latency_summary(latencies),
    }


async def offered(base_url: str, per_s: float, seconds: float) -> dict[str, Any]:
    """Open loop: one PUT every 1/per_s seconds for `seconds`, whatever the answers take."""
    run = uuid.uuid4().hex[:8]
    count = int(per_s * seconds)
    latencies: list[float] = []
    failures = 0
    async with httpx.AsyncClient(base_url=base_url, timeout=60) as client:

        async def send(index: int) -> None:
            nonlocal failures
            resource_id, body = observation(index, run)
            started = time.perf_counter()
            answer = await client.put(
                f"{REST_HOOK}/Observation/{resource_id}", content=body, headers=_headers()
            )
            if answer.is_success:
                latencies.append(time.perf_counter() - started)
            else:
                failures += 1

        began = time.perf_counter()
        tasks = []
        for index in range(count):
            delay = began + index / per_s - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(send(index)))
        await asyncio.gather(*tasks)
    return {"offered_per_s": per_s, "failed": failures, "latency": latency_summary(latencies)}


def _headers() -> dict[str, str]:
    return {"Authorization": f"Bearer {SECRET}", "Content-Type": "application/fhir+json"}


def peak_rss_mb(process: ManagedProcess) -> float:
    """The process's peak resident set (VmHWM), in MB."""
    status = Path(f"/proc/{process.process.pid}/status").read_text()
    [line] = [line for line in status.splitlines() if line.startswith("VmHWM:")]
    return round(int(line.split()[1]) / 1024, 1)


def start_listener(work_dir: Path, bootstrap: str, topic: str) -> ManagedProcess:
    port = free_port()
    env = {
        **without_otel(os.environ),
        "CDSFLOW_CHANNEL_SECRET": SECRET,
        "CDSFLOW_EHR_BASE_URL": EHR,
        "CDSFLOW_PSEUDONYM_KEY": secrets.token_urlsafe(32),
        "CDSFLOW_KAFKA_BOOTSTRAP": bootstrap,
        "CDSFLOW_KAFKA_IDEMPOTENCE": "false",
        "CDSFLOW_CLINICAL_EVENTS_TOPIC": topic,
        "CDSFLOW_HTTP_HOST": "127.0.0.1",
        "CDSFLOW_HTTP_PORT": str(port),
        "CDSFLOW_LOG_LEVEL": "WARNING",
    }
    process = spawn("listener", [sys.executable, "-m", "cdsflow.listener"], work_dir, env=env)
    process.endpoints["http"] = f"http://127.0.0.1:{port}"
    process.wait_ready(lambda: http_ok(f"http://127.0.0.1:{port}/readyz"), 60)
    return process


def start_bare(work_dir: Path, bootstrap: str, topic: str) -> ManagedProcess:
    port = free_port()
    argv = [sys.executable, "-m", "bench.bare_listener", str(port), bootstrap, topic]
    process = spawn("bare-listener", argv, work_dir, env=without_otel(os.environ), cwd=REPO)
    process.endpoints["http"] = f"http://127.0.0.1:{port}"
    process.wait_ready(lambda: http_ok(f"http://127.0.0.1:{port}/readyz"), 60)
    return process


async def measure(args: argparse.Namespace, work_dir: Path) -> dict[str, Any]:
    broker = start_broker(work_dir)
    listener = bare = None
    try:
        bootstrap = broker.endpoints["broker"]
        listener = start_listener(work_dir, bootstrap, "bench.listener.clinical-events.v1")
        bare = start_bare(work_dir, bootstrap, "bench.listener.bare.v1")
        # warm both (connections, topic creation), then alternate rounds: the same machine
        # state for each, the median of the rounds reported
        await saturate(listener.endpoints["http"], 200, args.concurrency)
        await saturate(bare.endpoints["http"], 200, args.concurrency)
        rounds: dict[str, list[dict[str, Any]]] = {"listener": [], "bare": []}
        for _ in range(args.rounds):
            rounds["listener"].append(
                await saturate(listener.endpoints["http"], args.events, args.concurrency)
            )
            rounds["bare"].append(
                await saturate(bare.endpoints["http"], args.events, args.concurrency)
            )
        at_rate = await offered(listener.endpoints["http"], args.offered_per_s, args.seconds)
        bare_at_rate = await offered(bare.endpoints["http"], args.offered_per_s, args.seconds)
        listener_rss = peak_rss_mb(listener)
    finally:
        for part in (bare, listener, broker):
            if part is not None:
                part.stop()
    events_per_s = _median([r["events_per_s"] for r in rounds["listener"]])
    bare_events_per_s = _median([r["events_per_s"] for r in rounds["bare"]])
    return {
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": "make bench (python -m bench.listener)",
        "load_average_1m": round(os.getloadavg()[0], 2),
        "events_per_s": events_per_s,
        "bare_events_per_s": bare_events_per_s,
        "ratio": round(events_per_s / bare_events_per_s, 2) if bare_events_per_s else None,
        "offered_per_s": args.offered_per_s,
        "p99_ms": at_rate["latency"].get("p99_ms"),
        "bare_p99_ms": bare_at_rate["latency"].get("p99_ms"),
        "peak_rss_mb": listener_rss,
        "saturated_rounds": rounds,
        "at_offered_rate": {"listener": at_rate, "bare": bare_at_rate},
        "notes": (
            "full-resource R4 rest-hook PUTs, each a new resource version (all published), "
            f"{args.concurrency} in flight when saturated; listener and bare endpoint are "
            "processes of their own on one embedded Tansu broker, the load from this process; "
            "events_per_s is the median of the alternating rounds"
        ),
    }


def _median(values: list[float]) -> float:
    return round(percentile(values, 0.5), 1) if values else 0.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--output", type=Path, default=REPO / "bench" / "results.json")
    parser.add_argument("--events", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--offered-per-s", type=float, default=50.0)
    parser.add_argument("--seconds", type=float, default=10.0)
    args = parser.parse_args()
    work_dir = Path(tempfile.mkdtemp(prefix="cdsflow-bench-listener-"))
    figures = asyncio.run(measure(args, work_dir))
    results = json.loads(args.output.read_text()) if args.output.exists() else {}
    results["listener"] = figures
    args.output.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps({k: v for k, v in figures.items() if not isinstance(v, dict)}, indent=2))


if __name__ == "__main__":
    main()
