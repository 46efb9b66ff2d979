"""`make bench-writeback`: write-backs per second through the writeback into SEKMET, one
patient at a time beside patients in lanes, directly and behind an EHR's latency.

Tansu and SEKMET are started here, and `--patients` patients created in SEKMET. A round
starts a writeback process (`python -m cdsflow.writeback`, as deployed) on a fresh topic and
consumer group, waits until it is ready and has written a first recommendation back (its
group joined), then publishes `--records` active recommendations over the patients at once
and times from the first publish until SEKMET holds a RiskAssessment for each (SEKMET's own
count). Each variant is a writeback with `CDSFLOW_WRITEBACK_MAX_CONCURRENT_PATIENTS` set
(`--lanes`), run directly against SEKMET and through `tests/support/fault_proxy.py` holding
every transaction `--latency-ms` (an EHR farther away than one on loopback). With
`--before-python`, that interpreter's writeback (another checkout's venv: e.g. main's, which
consumed one message at a time) runs as one more variant. Rounds alternate between the
variants `--repeats` times, on a machine that others may share: compare them side by side.
Each round also records the writeback process's CPU per write-back over the timed part
(`writeback_cpu_ms_per_write_back`). Figures go to `--output` (default
`bench/writeback_lanes.json`).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import secrets
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from aiokafka import AIOKafkaProducer

from bench.reasoner import process_cpu_s
from cdsflow.contracts import Recommendation
from cdsflow.fhir import EhrClient
from cdsflow.runtime.parts import start_broker, start_ehr
from cdsflow.runtime.processes import free_port, http_ok, spawn, without_otel
from cdsflow.telemetry import PatientKeyer
from tests.support.fault_proxy import fault_injecting_proxy
from tests.support.recommendations import keyed_recommendation

REPO = Path(__file__).resolve().parent.parent
PSEUDONYM_KEY = secrets.token_urlsafe(24)
KEYER = PatientKeyer(PSEUDONYM_KEY)


@dataclass(frozen=True)
class Variant:
    name: str
    python: str
    lanes: int


@contextlib.asynccontextmanager
async def writeback(
    variant: Variant, bootstrap: str, ehr_base_url: str, log_dir: Path
) -> AsyncIterator[tuple[str, int]]:
    """A writeback process on a topic of its own; yields the topic and the process's pid once
    it is ready."""
    topic = f"bench.recommendations.{uuid.uuid4().hex[:8]}"
    port = free_port()
    env = {
        **without_otel(os.environ),
        "CDSFLOW_KAFKA_BOOTSTRAP": bootstrap,
        "CDSFLOW_KAFKA_IDEMPOTENCE": "false",
        "CDSFLOW_EHR_BASE_URL": ehr_base_url,
        "CDSFLOW_PSEUDONYM_KEY": PSEUDONYM_KEY,
        "CDSFLOW_HTTP_HOST": "127.0.0.1",
        "CDSFLOW_HTTP_PORT": str(port),
        "CDSFLOW_HOOKS_AUTH": "off",
        "CDSFLOW_LOG_LEVEL": "WARNING",
        "CDSFLOW_RECOMMENDATIONS_TOPIC": topic,
        "CDSFLOW_FEEDBACK_TOPIC": f"{topic}.feedback",
        "CDSFLOW_CONSUMER_GROUP": f"bench-writeback-{uuid.uuid4().hex[:8]}",
        "CDSFLOW_WRITEBACK_MAX_CONCURRENT_PATIENTS": str(variant.lanes),
    }
    part = spawn(
        f"writeback-{variant.name}", [variant.python, "-m", "cdsflow.writeback"], log_dir, env
    )
    try:
        await asyncio.to_thread(
            part.wait_ready, lambda: http_ok(f"http://127.0.0.1:{port}/readyz"), 120
        )
        yield topic, part.process.pid
    finally:
        await asyncio.to_thread(part.stop)


async def written(ehr: EhrClient, expected: int, timeout_s: float) -> float:
    """When SEKMET holds `expected` RiskAssessments (perf_counter); raises at the deadline."""
    deadline = time.perf_counter() + timeout_s
    while time.perf_counter() < deadline:
        if await ehr.search_count("RiskAssessment") >= expected:
            return time.perf_counter()
        await asyncio.sleep(0.1)
    raise TimeoutError(f"SEKMET did not hold {expected} RiskAssessments in {timeout_s:.0f} s")


async def one_round(
    variant: Variant,
    latency_ms: int,
    bootstrap: str,
    ehr: EhrClient,
    patients: list[str],
    records: int,
    log_dir: Path,
) -> tuple[float, float]:
    """Write-backs per second of one round, and the writeback's CPU (ms) per write-back over
    it (user + system, from /proc)."""
    async with contextlib.AsyncExitStack() as stack:
        base_url = ehr.base_url
        if latency_ms:
            proxy = await stack.enter_async_context(fault_injecting_proxy(ehr.base_url))
            proxy.transaction_delay_s = latency_ms / 1000
            base_url = proxy.base_url
        topic, pid = await stack.enter_async_context(
            writeback(variant, bootstrap, base_url, log_dir)
        )
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
        await producer.start()
        stack.push_async_callback(producer.stop)

        async def publish(recommendation: Recommendation) -> asyncio.Future[Any]:
            future: asyncio.Future[Any] = await producer.send(
                topic,
                recommendation.SerializeToString(),
                key=recommendation.patient_key.encode(),
            )
            return future

        # a first write-back: the consumer group joined, the connections made
        before = await ehr.search_count("RiskAssessment")
        await (await publish(keyed_recommendation(KEYER, base_url, patients[0])))
        await written(ehr, before + 1, timeout_s=120)
        batch = [
            keyed_recommendation(KEYER, base_url, patients[i % len(patients)])
            for i in range(records)
        ]
        began = time.perf_counter()
        cpu_before = process_cpu_s(pid)
        deliveries = [await publish(recommendation) for recommendation in batch]
        await asyncio.gather(*deliveries)
        done = await written(ehr, before + 1 + records, timeout_s=900)
        cpu_ms = (process_cpu_s(pid) - cpu_before) * 1000 / records
        return records / (done - began), cpu_ms


async def run(args: argparse.Namespace) -> dict[str, Any]:
    variants = [Variant(f"lanes-{lanes}", sys.executable, lanes) for lanes in args.lanes]
    if args.before_python:
        variants.insert(0, Variant("before", args.before_python, args.before_lanes))
    work_dir = Path(tempfile.mkdtemp(prefix="cdsflow-bench-writeback-"))
    broker = await asyncio.to_thread(start_broker, work_dir)
    sekmet = await asyncio.to_thread(start_ehr, work_dir)
    rounds: dict[str, dict[int, list[float]]] = {
        variant.name: {latency: [] for latency in args.latency_ms} for variant in variants
    }
    cpu: dict[str, dict[int, list[float]]] = {
        variant.name: {latency: [] for latency in args.latency_ms} for variant in variants
    }
    try:
        async with httpx.AsyncClient(timeout=60) as http:
            ehr = EhrClient(sekmet.endpoints["ehr"], http)
            patients = [
                (await ehr.create({"resourceType": "Patient", "active": True}))["id"]
                for _ in range(args.patients)
            ]
            for _ in range(args.repeats):
                for latency_ms in args.latency_ms:
                    for variant in variants:
                        per_s, cpu_ms = await one_round(
                            variant,
                            latency_ms,
                            broker.endpoints["broker"],
                            ehr,
                            patients,
                            args.records,
                            work_dir,
                        )
                        rounds[variant.name][latency_ms].append(round(per_s, 1))
                        cpu[variant.name][latency_ms].append(round(cpu_ms, 2))
                        print(
                            f"{variant.name} at +{latency_ms} ms: {per_s:.1f} write-backs/s, "
                            f"the writeback's CPU {cpu_ms:.2f} ms per write-back"
                        )
    finally:
        await asyncio.to_thread(sekmet.stop)
        await asyncio.to_thread(broker.stop)
    return {
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": " ".join(["python -m bench.writeback_lanes", *sys.argv[1:]]),
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "load_average_1m": round(os.getloadavg()[0], 2),
        },
        "records": args.records,
        "patients": args.patients,
        "variants": {
            variant.name: {"lanes": variant.lanes, "python": variant.python} for variant in variants
        },
        "write_backs_per_s": _by_variant_and_latency(rounds, digits=1),
        # the writeback process's CPU per write-back over each timed round (user + system)
        "writeback_cpu_ms_per_write_back": _by_variant_and_latency(cpu, digits=2),
    }


def _by_variant_and_latency(
    figures: dict[str, dict[int, list[float]]], digits: int
) -> dict[str, dict[str, dict[str, Any]]]:
    """Each variant's rounds and their median, per EHR latency."""
    return {
        name: {
            f"ehr_latency_{latency}_ms": {
                "rounds": values,
                "median": round(statistics.median(values), digits),
            }
            for latency, values in by_latency.items()
        }
        for name, by_latency in figures.items()
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--output", type=Path, default=REPO / "bench" / "writeback_lanes.json")
    parser.add_argument("--records", type=int, default=500)
    parser.add_argument("--patients", type=int, default=100)
    parser.add_argument("--lanes", type=int, nargs="+", default=[1, 16])
    parser.add_argument("--latency-ms", type=int, nargs="+", default=[0, 100])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument(
        "--before-python",
        help="a Python whose cdsflow.writeback is another checkout's (e.g. main/.venv/bin/python)",
    )
    parser.add_argument(
        "--before-lanes",
        type=int,
        default=1,
        help="CDSFLOW_WRITEBACK_MAX_CONCURRENT_PATIENTS of the --before-python writeback",
    )
    args = parser.parse_args()
    results = asyncio.run(run(args))
    args.output.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
