"""`make bench` (reasoner): the reasoner's events/s with the real Triton, beside a bare consume ->
Triton -> produce loop over the same broker and model, in the same run; Triton's mean batch
size under load; the reasoner's peak RSS while it holds many patients' contexts.

Both loops are measured the same way: warmed up, then `--events` clinical events are produced
as fast as the broker takes them, and the clock runs from the first produce until the last
answer is on the output topic; `--rounds` rounds of each, alternating (bare, reasoner, bare,
...), so that both meet the same load from the rest of the machine; medians are reported.
The reasoner runs as its own process (`python -m cdsflow.reasoner`, spans made but not
exported), after restoring `--held-patients` patients' contexts from its changelog; its
events are about `--patients` patients that the EHR (SEKMET) holds, each seen once in the
warm-up, so that the measured events ask the EHR nothing. Tansu, Triton, SEKMET, both loops
and the load generator share the machine.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

from bench.bare_loop import BareLoop
from bench.kafka_io import ArrivalCounter, Message, create_topics, produce
from bench.measures import rate
from bench.reasoner_load import clinical_events, context_snapshots
from cdsflow.fhir import EhrClient
from cdsflow.runtime.parts import start_broker, start_ehr, start_triton
from cdsflow.runtime.processes import ManagedProcess, free_port, http_ok, spawn, without_otel
from cdsflow.telemetry import PatientKeyer

REPO = Path(__file__).resolve().parent.parent
MODEL = "deterioration_risk"
ADAPTER = REPO / "adapters" / "deterioration-risk.yaml"


async def triton_counts(http_url: str) -> tuple[int, int]:
    """(inferences, executions) of the model so far (Triton's statistics extension)."""
    async with httpx.AsyncClient(timeout=10) as http:
        answer = await http.get(f"{http_url}/v2/models/{MODEL}/stats")
    stats = answer.raise_for_status().json()["model_stats"][0]
    return int(stats["inference_count"]), int(stats["execution_count"])


def process_cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process and its direct children (Triton's python stub)."""
    ticks = os.sysconf("SC_CLK_TCK")
    pids = [pid]
    children = Path(f"/proc/{pid}/task/{pid}/children")
    if children.exists():
        pids += [int(child) for child in children.read_text().split()]
    total = 0.0
    for one in pids:
        try:
            fields = Path(f"/proc/{one}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / ticks
    return total


CpuProbe = Callable[[], dict[str, float]]


class MeasuredLoop:
    """A loop under test, seen from outside: events go to `source`, answers come on `sink`.

    Each round also reports the CPU each process spent per event (ms): on a machine shared
    with other work, throughput varies with its load, CPU per event much less."""

    def __init__(
        self, bootstrap: str, triton_http: str, source: str, sink: str, cpu: CpuProbe
    ) -> None:
        self._cpu = cpu
        self._bootstrap = bootstrap
        self._triton_http = triton_http
        self._source = source
        self._arrivals = ArrivalCounter(bootstrap, sink)
        self._sent = 0

    async def start(self, warm_up: list[Message], timeout_s: float) -> None:
        await self._arrivals.start()
        await self._feed(warm_up, timeout_s)

    async def _feed(self, messages: list[Message], timeout_s: float) -> float:
        await produce(self._bootstrap, self._source, messages)
        self._sent += len(messages)
        return await self._arrivals.reached(self._sent, timeout_s)

    async def round(self, measured: list[Message], timeout_s: float) -> dict[str, Any]:
        """Time `measured` from the first produce to the last answer."""
        inferences, executions = await triton_counts(self._triton_http)
        cpu_before = self._cpu()
        began = time.perf_counter()
        finished = await self._feed(measured, timeout_s)
        cpu_after = self._cpu()
        inferences_after, executions_after = await triton_counts(self._triton_http)
        inferred = inferences_after - inferences
        executed = executions_after - executions
        return {
            "events": len(measured),
            "seconds": round(finished - began, 3),
            "events_per_s": rate(len(measured), finished - began),
            "triton_mean_batch": round(inferred / executed, 2) if executed else None,
            "cpu_ms_per_event": {
                name: round((cpu_after[name] - cpu_before[name]) * 1000 / len(measured), 3)
                for name in cpu_before
            },
        }

    async def stop(self) -> None:
        await self._arrivals.stop()


def median_of(rounds: list[dict[str, Any]], key: str) -> float:
    return float(statistics.median(r[key] for r in rounds if r[key] is not None))


def median_cpu(rounds: list[dict[str, Any]], process: str) -> float:
    return round(float(statistics.median(r["cpu_ms_per_event"][process] for r in rounds)), 3)


def start_reasoner(
    work_dir: Path, env: dict[str, str], port: int, timeout_s: float
) -> ManagedProcess:
    argv = [sys.executable, "-m", "cdsflow.reasoner"]
    reasoner = spawn("reasoner", argv, work_dir, env={**without_otel(os.environ), **env})
    reasoner.wait_ready(lambda: http_ok(f"http://127.0.0.1:{port}/readyz"), timeout_s)
    return reasoner


async def metric(port: int, name: str) -> float:
    async with httpx.AsyncClient(timeout=10) as http:
        text = (await http.get(f"http://127.0.0.1:{port}/metrics")).text
    for line in text.splitlines():
        if line.startswith(f"{name} "):
            return float(line.split()[1])
    return 0.0


async def until(probe: Callable[[], Awaitable[bool]], timeout_s: float, what: str) -> float:
    began = time.perf_counter()
    while not await probe():
        if time.perf_counter() - began > timeout_s:
            raise TimeoutError(f"waited {timeout_s} s for {what}")
        await asyncio.sleep(0.2)
    return time.perf_counter() - began


def peak_rss_mb(pid: int) -> float:
    """The process's peak resident set (VmHWM), in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return round(int(line.split()[1]) / 1024, 1)
    raise RuntimeError("no VmHWM in /proc status")


async def run(args: argparse.Namespace) -> dict[str, Any]:
    work_dir = Path(tempfile.mkdtemp(prefix="cdsflow-bench-reasoner-"))
    broker = start_broker(work_dir)
    triton = start_triton(REPO / "models", work_dir)
    ehr = start_ehr(work_dir)
    bootstrap = broker.endpoints["broker"]
    triton_http = triton.endpoints["triton_http"]
    key = secrets.token_urlsafe(32)
    keyer = PatientKeyer(key)
    run_id = uuid.uuid4().hex[:8]
    events_topic, recommendations_topic = f"bench.events.{run_id}", f"bench.recs.{run_id}"
    bare_source, bare_sink = f"bench.bare-in.{run_id}", f"bench.bare-out.{run_id}"
    group = f"bench-reasoner-{run_id}"
    changelog = f"{group}.patient-context.v1"
    reasoner: ManagedProcess | None = None
    bare: BareLoop | None = None
    loops: list[MeasuredLoop] = []
    try:
        await create_topics(
            bootstrap,
            events_topic,
            recommendations_topic,
            bare_source,
            bare_sink,
            compacted=[changelog],
        )
        async with httpx.AsyncClient(timeout=30) as http:
            client = EhrClient(ehr.endpoints["ehr"], http)
            patients = [
                f"Patient/{(await client.create({'resourceType': 'Patient'}))['id']}"
                for _ in range(args.patients)
            ]
        start = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=12)
        events = clinical_events(
            patients, args.patients + args.rounds * args.events, keyer, ehr.endpoints["ehr"], start
        )
        warm_up = events[: args.patients]
        rounds = [
            events[args.patients + n * args.events : args.patients + (n + 1) * args.events]
            for n in range(args.rounds)
        ]

        bare = BareLoop(
            bootstrap,
            triton.endpoints["triton_grpc"],
            MODEL,
            bare_source,
            bare_sink,
            max_records=args.max_records,
            in_flight=args.in_flight,
        )
        await bare.start()
        reasoner_pid: list[int] = []

        def cpu() -> dict[str, float]:
            """CPU seconds so far: this process (the bare loop, and the load generator for
            both loops), Triton, and the reasoner once it runs."""
            return {
                "bench_process": time.process_time(),
                "triton": process_cpu_s(triton.process.pid),
                "reasoner": sum(process_cpu_s(pid) for pid in reasoner_pid),
            }

        loops.append(
            bare_measured := MeasuredLoop(bootstrap, triton_http, bare_source, bare_sink, cpu)
        )
        await bare_measured.start(warm_up, 300)

        await produce(bootstrap, changelog, context_snapshots(args.held_patients, keyer, start))
        port = free_port()
        env = {
            "CDSFLOW_EHR_BASE_URL": ehr.endpoints["ehr"],
            "CDSFLOW_PSEUDONYM_KEY": key,
            "CDSFLOW_KAFKA_BOOTSTRAP": bootstrap,
            "CDSFLOW_KAFKA_IDEMPOTENCE": "false",
            "CDSFLOW_TRITON_GRPC_URL": triton.endpoints["triton_grpc"],
            "CDSFLOW_ADAPTERS": str(ADAPTER),
            "CDSFLOW_CLINICAL_EVENTS_TOPIC": events_topic,
            "CDSFLOW_RECOMMENDATIONS_TOPIC": recommendations_topic,
            "CDSFLOW_CONSUMER_GROUP": group,
            "CDSFLOW_HTTP_HOST": "127.0.0.1",
            "CDSFLOW_HTTP_PORT": str(port),
            "CDSFLOW_BATCH_MAX_RECORDS": str(args.max_records),
            "CDSFLOW_MAX_CONCURRENT_PATIENTS": str(args.in_flight),
            "CDSFLOW_CONTEXT_MAX_PATIENTS": str(args.held_patients + args.patients),
            "CDSFLOW_LOG_LEVEL": "WARNING",
        }
        started = time.perf_counter()
        reasoner = await asyncio.to_thread(start_reasoner, work_dir, env, port, 120)
        reasoner_pid.append(reasoner.process.pid)
        held = "cdsflow_reasoner_patients_in_context"

        async def restored() -> bool:
            return await metric(port, held) >= int(args.held_patients)

        await until(restored, 300, "the changelog restored")
        restore_s = time.perf_counter() - started
        loops.append(
            reasoner_measured := MeasuredLoop(
                bootstrap, triton_http, events_topic, recommendations_topic, cpu
            )
        )
        await reasoner_measured.start(warm_up, 300)
        # alternating rounds, so that both loops meet the same load from the rest of the machine
        bare_rounds, reasoner_rounds = [], []
        for measured in rounds:
            bare_rounds.append(await bare_measured.round(measured, 300))
            reasoner_rounds.append(await reasoner_measured.round(measured, 300))
        in_context = int(await metric(port, held))
        peak_rss = peak_rss_mb(reasoner.process.pid)
    finally:
        for loop in loops:
            await loop.stop()
        if bare is not None:
            await bare.stop()
        for part in (reasoner, ehr, triton, broker):
            if part is not None:
                part.stop()
    return {
        "what": (
            "clinical events -> Recommendations on Kafka, reasoner process (batches, context "
            "from the stream) vs a bare consume -> Triton -> produce loop, same broker, model, "
            "batch and in-flight sizes, measured in the same run"
        ),
        "events_per_s": median_of(reasoner_rounds, "events_per_s"),
        "bare_events_per_s": median_of(bare_rounds, "events_per_s"),
        "ratio": round(
            median_of(reasoner_rounds, "events_per_s") / median_of(bare_rounds, "events_per_s"), 3
        ),
        "ratio_per_round": [
            round(r["events_per_s"] / b["events_per_s"], 3)
            for r, b in zip(reasoner_rounds, bare_rounds, strict=True)
        ],
        "triton_mean_batch": median_of(reasoner_rounds, "triton_mean_batch"),
        "cpu_ms_per_event": {
            "reasoner_process": median_cpu(reasoner_rounds, "reasoner"),
            "bare_loop_with_load_generator": median_cpu(bare_rounds, "bench_process"),
            "triton_under_reasoner": median_cpu(reasoner_rounds, "triton"),
            "triton_under_bare_loop": median_cpu(bare_rounds, "triton"),
            "how": (
                "median per round of CPU seconds / events; the bare loop runs in the bench "
                "process with the load generator and the counter of answers, so its figure "
                "is an upper bound"
            ),
        },
        "bare_triton_mean_batch": median_of(bare_rounds, "triton_mean_batch"),
        "peak_rss_mb": peak_rss,
        "patients_in_context": in_context,
        "restore_s_from_start": round(restore_s, 2),
        "settings": {
            "events_per_round": args.events,
            "rounds": args.rounds,
            "patients_on_ehr": args.patients,
            "held_patients_restored": args.held_patients,
            "batch_max_records": args.max_records,
            "max_concurrent_patients": args.in_flight,
            "tracing": "spans made, not exported",
        },
        "reasoner_rounds": reasoner_rounds,
        "bare_rounds": bare_rounds,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--output", type=Path, default=REPO / "bench" / "results.json")
    parser.add_argument("--events", type=int, default=5000, help="events per round")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of each loop, alternating")
    parser.add_argument("--patients", type=int, default=500, help="patients on the EHR")
    parser.add_argument("--held-patients", type=int, default=100_000)
    parser.add_argument("--max-records", type=int, default=512)
    parser.add_argument("--in-flight", type=int, default=256)
    args = parser.parse_args()
    figures = asyncio.run(run(args))
    figures["measured_at"] = datetime.now(UTC).isoformat(timespec="seconds")
    figures["command"] = "make bench (python -m bench.reasoner)"
    figures["machine"] = {"cpus": os.cpu_count()}
    results = json.loads(args.output.read_text()) if args.output.exists() else {}
    results["reasoner"] = figures
    args.output.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
