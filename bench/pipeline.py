"""`make bench`: the pipeline's events/s when saturated and its latency at fixed offered rates,
side by side in the same run with the chained bare ceiling of the same hops on the same broker
and Triton (`bench.ceiling`), and bare baselines (broker alone, Triton alone).

End to end means: the EHR's rest-hook notification (PUT to the listener) until the
Recommendation for that change is on `cdsflow.recommendations.v1` — listener, Kafka, reasoner
(EHR history fetch + Triton) and Kafka again; for the ceiling: the PUT to the bare endpoint
until the bare loop's answer is on its sink topic.

Both are driven the same way by the load generator, a process of its own
(`bench.load_process`). Each side's in flight is doubled until more no longer raises its
events/s (`saturation_point`); both are then saturated at that in flight in alternating rounds,
then driven open loop at 25/50/75 % of each one's own measured capacity, alternating, and at
500/s where the capacity allows it (the ceiling always, as the reference). Before every round
the bench waits until each measured process is back at its idle CPU (`bench.idle`), so that no
round carries the last one's leftovers (the pipeline's write-backs into the EHR). The
writeback's completion is reported for the first saturated round (RiskAssessments visible in
the EHR).

The EHR (SEKMET) shares the two cores with everything measured, and each write-back costs it
about 15 ms of CPU, more than the listener and the reasoner together spend on the event. In
production the EHR has its own machine, so in the main rounds it runs at a lower CPU priority
(`--ehr-nice`, 10; as in `bench.cds_hooks`): every write-back still happens, at the pace the
EHR then allows, and every round waits until all of them are done. The
`saturated_ehr_same_priority` rounds, alternating with the main ones at the same in flight,
run the pipeline with the EHR at the same priority as everything else, and are reported
beside them. The `saturated_same_hops` rounds, alternating with them too, run the pipeline on
the ceiling's hops alone: the writeback stopped for the round (as if on machines of its own)
and continued after it, its write-backs done before the next round starts.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import platform
import tempfile
import time
from collections.abc import Awaitable
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

import httpx
from aiokafka import ConsumerRecord

from bench.baselines import kafka_round_trip, triton_direct
from bench.ceiling import Ceiling, peak_rss_mb
from bench.kafka_io import TopicWatch
from bench.measures import latency_summary, rate
from bench.pipeline_load import LoadGenerator, fixed_rate
from bench.priority import held_off_cpu, renice
from bench.profiles import SampledProfile
from bench.ratios import ratios
from bench.rounds import Rounds, Side, median_rounded, side_figures, sweep
from bench.stages import settled_spans, stage_durations
from cdsflow.contracts import CLINICAL_EVENTS, RECOMMENDATIONS, ClinicalEvent, Recommendation
from cdsflow.fhir import EhrClient
from cdsflow.runtime.stack import Stack, StackOptions
from cdsflow.runtime.story import DETERIORATING, patient_resource, round_observations
from cdsflow.runtime.trace_collector import CollectedSpan

REPO = Path(__file__).resolve().parent.parent
MODEL = "deterioration_risk"
FRACTIONS = (0.25, 0.5, 0.75)
HIGH_RATE = 500.0


class RecommendationWatch(TopicWatch):
    """Stamps when each event's recommendation arrived, and which resource each event is; and,
    for where an event waited, the wall-clock times the services stamped on it (the listener's
    `received_at`, the reasoner's `produced_at`) beside the times this watch read the event
    and its recommendation (one clock: the same machine)."""

    def __init__(self, bootstrap: str) -> None:
        super().__init__(bootstrap, CLINICAL_EVENTS, RECOMMENDATIONS, group_prefix="bench-watch")
        self.arrived: dict[str, float] = {}
        self.event_ids: dict[str, str] = {}  # resource id -> event id
        # event id -> (listener received it, the event read here) / (the reasoner produced its
        # recommendation, the recommendation read here), seconds since the epoch
        # (in the order the events were read: `mark` counts them)
        self._event_times: dict[str, tuple[float, float]] = {}
        self._recommendation_times: dict[str, tuple[float, float]] = {}

    def take(self, record: ConsumerRecord[bytes, bytes]) -> None:
        read_at = time.time()
        if record.topic == CLINICAL_EVENTS:
            event = ClinicalEvent.FromString(record.value or b"")
            self.event_ids.setdefault(event.resource_id, event.event_id)
            if event.event_id not in self._event_times:
                received = event.received_at.ToMicroseconds() / 1e6
                self._event_times[event.event_id] = (received, read_at)
            return
        recommendation = Recommendation.FromString(record.value or b"")
        self.arrived.setdefault(recommendation.event_id, time.perf_counter())
        produced = recommendation.produced_at.ToMicroseconds() / 1e6
        self._recommendation_times.setdefault(recommendation.event_id, (produced, read_at))

    def arrival(self, resource_id: str) -> float | None:
        event_id = self.event_ids.get(resource_id)
        return self.arrived.get(event_id) if event_id is not None else None

    def mark(self) -> int:
        """Where the events read from now on start (for `waits_since`)."""
        return len(self._event_times)

    def waits_since(self, mark: int) -> dict[str, Any]:
        """Where the events read since `mark` spent their time, as latency summaries: from the
        listener receiving the notification to its event being read here (the listener and
        the broker), and to the reasoner producing its recommendation (that, the wait for the
        reasoner, and its scoring); and from that to the recommendation being read here."""
        to_kafka, to_produced, to_read = [], [], []
        for event_id, (received, event_read) in itertools.islice(
            self._event_times.items(), mark, None
        ):
            answer = self._recommendation_times.get(event_id)
            if answer is None:
                continue
            produced, answer_read = answer
            to_kafka.append(event_read - received)
            to_produced.append(produced - received)
            to_read.append(answer_read - produced)
        return {
            "received_to_event_read": latency_summary(to_kafka),
            "received_to_recommendation_produced": latency_summary(to_produced),
            "recommendation_produced_to_read": latency_summary(to_read),
        }


async def _with_waits(
    watch: RecommendationWatch, saturated_round: Awaitable[dict[str, Any]]
) -> dict[str, Any]:
    """A pipeline round's figures, with where its events waited (`waits`): the round starts
    when awaited here, after the watch's mark."""
    mark = watch.mark()
    one = await saturated_round
    return {**one, "waits": watch.waits_since(mark)}


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


async def _writebacks_done(ehr: EhrClient, expected: int, timeout_s: float) -> float | None:
    """Seconds until the EHR holds `expected` RiskAssessments, or None at the deadline."""
    began = time.perf_counter()
    while time.perf_counter() - began < timeout_s:
        bundle = await ehr.search_count("RiskAssessment")
        if bundle >= expected:
            return time.perf_counter()
        await asyncio.sleep(0.25)
    return None


async def _time_writebacks(
    ehr: EhrClient,
    written_before: int,
    began: float,
    into: list[float | None],
    round_figures: dict[str, Any],
) -> None:
    """The rate a saturated round's RiskAssessments were all in the EHR at, from its start."""
    events = int(round_figures["events"])
    done = await _writebacks_done(ehr, written_before + events, timeout_s=300)
    into.append(rate(events, done - began) if done else None)


def _pipeline_spans(spans: list[CollectedSpan]) -> list[CollectedSpan]:
    """The spans of the pipeline's traces (Triton also traces the ceiling's requests, as root
    spans of traces of their own: those are left out)."""
    traces = {span.trace_id for span in spans if span.service == "listener"}
    return [span for span in spans if span.trace_id in traces]


async def run(args: argparse.Namespace) -> dict[str, Any]:
    work_dir = Path(tempfile.mkdtemp(prefix="cdsflow-bench-"))
    # no Subscription: the bench notifies the listener itself, and its setup writes to the
    # EHR must not become events
    options = StackOptions(
        work_dir=work_dir,
        model_repository=REPO / "models",
        with_ehr=True,
        channels=(),
        span_export_delay_ms=args.span_export_delay_ms,
        triton_trace_rate=args.triton_trace_rate,
    )
    load_before = os.getloadavg()[0]
    stack = Stack(options)
    endpoints = stack.start()
    ceiling = Ceiling(work_dir, endpoints["broker"], endpoints["triton_grpc"], MODEL)
    try:
        baseline_kafka = await kafka_round_trip(endpoints["broker"], args.events, args.concurrency)
        baseline_triton = await triton_direct(
            endpoints["triton_grpc"], MODEL, args.events, args.concurrency
        )
        await ceiling.start()
        async with httpx.AsyncClient(timeout=120) as http:
            ehr = EhrClient(endpoints["ehr"], http)
            patients = await _prepare_patients(ehr, args.patients)
            watch = RecommendationWatch(endpoints["broker"])
            await watch.start()
            secret = stack.options.channel_secret
            load_dir = work_dir / "load"
            paths = {
                "pipeline": Side(
                    LoadGenerator("pipeline", endpoints["listener"], secret, load_dir), watch
                ),
                "ceiling": Side(
                    LoadGenerator("ceiling", ceiling.url, secret, load_dir), ceiling.watch
                ),
            }
            # CPU per event of each process (user + system, from /proc), per saturated round
            # (each round's figure covers every process, the other side's idling included)
            cpu_pids = {
                part.name: part.process.pid
                for part in stack.parts
                if part.name in ("listener", "reasoner", "writeback", "broker", "triton", "ehr")
            }
            cpu_pids.update({n: part.process.pid for n, part in ceiling.processes().items()})
            rounds = Rounds(cpu_pids, endpoints["triton_http"])
            written_back_per_s: float | None = None
            same_priority_rounds: list[dict[str, Any]] = []
            same_priority_written_back_per_s: float | None = None
            same_hops_rounds: list[dict[str, Any]] = []
            try:
                # warm-up: connections, consumer groups, the model's first inference; then,
                # once its write-backs are in the EHR, each process's idle CPU, which every
                # round waits to be back at
                written_before = await ehr.search_count("RiskAssessment")
                warm = {
                    name: await fixed_rate(path.generator, path.arrivals, patients, 10, 1)
                    for name, path in paths.items()
                }
                expected = written_before + warm["pipeline"]["events"]
                await _writebacks_done(ehr, expected, timeout_s=120)
                await rounds.measure_baseline()
                ehr_pid = next(p.process.pid for p in stack.parts if p.name == "ehr")
                writeback_pid = next(p.process.pid for p in stack.parts if p.name == "writeback")
                renice(ehr_pid, args.ehr_nice)
                await sweep(rounds, paths, patients, args)
                # saturated, alternating rounds at each side's saturating in flight: the
                # machine's noise hits both alike
                for round_index in range(args.rounds):
                    for name, path in paths.items():
                        assert path.in_flight is not None
                        profiles = []
                        if name == "pipeline":
                            for service in args.profile:
                                pid = next(p.process.pid for p in stack.parts if p.name == service)
                                output = args.profile_dir / f"{service}.{round_index}.txt"
                                profiles.append(SampledProfile(pid, output))
                        for profile in profiles:
                            profile.start()
                        idle = await rounds.quiet()
                        written_before = await ehr.search_count("RiskAssessment")
                        began = time.perf_counter()
                        written_back: list[float | None] = []
                        timed = partial(_time_writebacks, ehr, written_before, began, written_back)
                        first = name == "pipeline" and round_index == 0
                        saturated_round = rounds.saturated(
                            path,
                            patients,
                            args.events,
                            path.in_flight,
                            idle,
                            after=timed if first else None,
                        )
                        one = await (
                            _with_waits(watch, saturated_round)
                            if name == "pipeline"
                            else saturated_round
                        )
                        path.saturated_rounds.append(one)
                        for profile in profiles:
                            profile.stop()
                        if written_back:
                            written_back_per_s = written_back[0]
                    # the pipeline again, the EHR at everyone's priority for this round
                    pipeline = paths["pipeline"]
                    assert pipeline.in_flight is not None
                    renice(ehr_pid, 0)
                    try:
                        idle = await rounds.quiet()
                        written_before = await ehr.search_count("RiskAssessment")
                        began = time.perf_counter()
                        written_back = []
                        timed = partial(_time_writebacks, ehr, written_before, began, written_back)
                        saturated_round = rounds.saturated(
                            pipeline,
                            patients,
                            args.events,
                            pipeline.in_flight,
                            idle,
                            after=timed if round_index == 0 else None,
                        )
                        same_priority_rounds.append(await _with_waits(watch, saturated_round))
                    finally:
                        renice(ehr_pid, args.ehr_nice)
                    if written_back:
                        same_priority_written_back_per_s = written_back[0]
                    # the pipeline again on the ceiling's hops alone: the writeback held off
                    # the CPU for the round (on machines of its own in production), its
                    # write-backs done once it is continued, before the next round starts
                    idle = await rounds.quiet()
                    with held_off_cpu(writeback_pid):
                        saturated_round = rounds.saturated(
                            pipeline, patients, args.events, pipeline.in_flight, idle
                        )
                        same_hops_rounds.append(await _with_waits(watch, saturated_round))
                capacity = {
                    name: median_rounded([r["events_per_s"] for r in path.saturated_rounds])
                    for name, path in paths.items()
                }
                assert stack.collector is not None  # the bench runs with the built-in collector
                stack.collector.clear()
                for fraction in FRACTIONS:
                    for name, path in paths.items():
                        offered = round(capacity[name] * fraction, 1)
                        figures = await rounds.fixed_rate(path, patients, offered, args.seconds)
                        path.fixed_rate.append({"fraction_of_capacity": fraction, **figures})
                # spans arrive in batches up to the export delay apart
                quiet_s = max(2.0, args.span_export_delay_ms / 1000 + 1)
                spans = await settled_spans(stack.collector, quiet_s=quiet_s, timeout_s=60)
                stages = stage_durations(_pipeline_spans(spans))
                for name, path in paths.items():
                    if capacity[name] >= HIGH_RATE or name == "ceiling":
                        path.at_high_rate = await rounds.fixed_rate(
                            path, patients, HIGH_RATE, args.high_seconds
                        )
                        path.at_high_rate["within_capacity"] = capacity[name] >= HIGH_RATE
            finally:
                await watch.stop()
        pids = {part.name: part.process.pid for part in stack.parts}
        pids.update({name: part.process.pid for name, part in ceiling.processes().items()})
        peak_rss = {name: peak_rss_mb(pid) for name, pid in pids.items()}
    finally:
        await ceiling.stop()
        stack.stop()
    pipeline, bare = paths["pipeline"], paths["ceiling"]
    pipeline_high = pipeline.at_high_rate
    return {
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": "make bench (python -m bench.pipeline)",
        "load_average_1m": {"before": round(load_before, 2), "after": round(os.getloadavg()[0], 2)},
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
        },
        "parts": "Tansu (memory), Triton CPU binary (python backend), SEKMET EHR, 3 services",
        "pipeline": {
            "what": (
                "rest-hook PUT to the listener -> Recommendation on Kafka "
                "(listener, broker, reasoner with its stream context and Triton, broker); "
                "the writeback writes each recommendation back into the EHR meanwhile, the EHR "
                "at nice ehr_nice (its own machine in production; same priority: "
                "saturated_ehr_same_priority)"
            ),
            "saturated": {
                **pipeline.saturated_rounds[len(pipeline.saturated_rounds) // 2],
                "events_per_s": capacity["pipeline"],
                "written_back_per_s": written_back_per_s,
                "how": (
                    "events_per_s: median of the alternating saturated rounds, each at the in "
                    "flight where doubling it no longer raised events/s by 5 % (in_flight_sweep)"
                ),
            },
            "saturated_rounds": pipeline.saturated_rounds,
            "ehr_nice": args.ehr_nice,
            "saturated_ehr_same_priority": {
                "events_per_s": median_rounded([r["events_per_s"] for r in same_priority_rounds]),
                "written_back_per_s": same_priority_written_back_per_s,
                "rounds": same_priority_rounds,
                "how": (
                    "the same pipeline and in flight with the EHR at the same CPU priority as "
                    "every other process (nice 0), in rounds alternating with the main ones"
                ),
            },
            "saturated_same_hops": {
                "events_per_s": median_rounded([r["events_per_s"] for r in same_hops_rounds]),
                "rounds": same_hops_rounds,
                "how": (
                    "the same pipeline and in flight on the ceiling's hops alone (listener, "
                    "broker, reasoner, Triton; the EHR for the reasoner's reads): the writeback "
                    "stopped (SIGSTOP) for the round, as if on machines of its own, and "
                    "continued after it, its write-backs done before the next round; in "
                    "rounds alternating with the main ones"
                ),
            },
            "fixed_rate": pipeline.fixed_rate,  # one entry per fraction of its capacity
            "at_500_per_s": pipeline_high
            or {
                "offered_per_s": HIGH_RATE,
                "latency": None,
                "reason": (
                    f"not offered: the pipeline's measured capacity ({capacity['pipeline']}/s) "
                    "is below 500/s, so an open loop at 500/s only grows its queue"
                ),
            },
            **side_figures(pipeline),
            "peak_rss_mb": {
                name: peak_rss[name]
                for name in ("listener", "reasoner", "writeback", "broker", "triton", "ehr")
                if name in peak_rss
            },
            # each process's idle CPU (cores), measured once before the first round: the CPU
            # per event subtracts it over the wait until every process is idle again (a
            # figure that would go below zero is 0.0)
            "idle_cpu_cores": {name: round(rate, 3) for name, rate in rounds.baseline.items()},
            # the whole machine before any load: busy and stolen cores, and the cores busy
            # outside the measured processes (bench.machine_cpu); each saturated round holds
            # the same over its run (`machine`)
            "machine_cores_at_rest": rounds.machine_at_rest,
            "stages": {
                "what": "span durations during the fixed-rate runs, from the exported traces",
                "spans": stages,
            },
            "settings": {
                "rounds": args.rounds,
                "events_per_saturated_round": args.events,
                # the saturated rounds' in flight (found by the sweep, from those tried)
                "concurrency": pipeline.in_flight,
                "in_flight_tried": [args.min_in_flight, args.max_in_flight],
                "seconds_per_fixed_rate": args.seconds,
                "seconds_at_500_per_s": args.high_seconds,
                "patients": args.patients,
                "span_export_delay_ms": args.span_export_delay_ms,
                "triton_trace_rate": args.triton_trace_rate,
            },
        },
        "ceiling": {
            "what": (
                "the same hops bare, chained, same broker and Triton: an ASGI endpoint that "
                "parses the PUT with orjson and produces it (acks=all) -> a consume -> Triton "
                "-> produce loop (the reasoner's batch and in-flight sizes); no FHIR, tracing "
                "or product code; each a process of its own"
            ),
            "events_per_s": capacity["ceiling"],
            "p99_ms_at_500_per_s": ((bare.at_high_rate or {}).get("latency") or {}).get("p99_ms"),
            "saturated_rounds": bare.saturated_rounds,
            "fixed_rate": bare.fixed_rate,
            "at_500_per_s": bare.at_high_rate,
            **side_figures(bare),
            "peak_rss_mb": {name: peak_rss[name] for name in ("bare_ingest", "bare_loop")},
        },
        "baseline": {"kafka": baseline_kafka, "triton": baseline_triton},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--output", type=Path, default=REPO / "bench" / "results.json")
    parser.add_argument("--events", type=int, default=1000, help="events per saturated round")
    parser.add_argument("--rounds", type=int, default=3, help="saturated rounds of each")
    parser.add_argument(
        "--concurrency", type=int, default=32, help="in flight of the Kafka and Triton baselines"
    )
    parser.add_argument("--min-in-flight", type=int, default=8, help="the sweep's first level")
    parser.add_argument("--max-in-flight", type=int, default=256, help="the sweep's last level")
    parser.add_argument("--patients", type=int, default=20)
    parser.add_argument("--seconds", type=float, default=10, help="length of each fixed rate")
    parser.add_argument("--high-seconds", type=float, default=4, help="length at 500/s")
    parser.add_argument(
        "--span-export-delay-ms",
        type=int,
        default=5000,
        help="the services' OTEL_BSP_SCHEDULE_DELAY: the SDK's default, as deployed (the "
        "embedded stack's demo setting is 200)",
    )
    parser.add_argument(
        "--triton-trace-rate",
        type=int,
        default=100,
        help="Triton traces one inference in N: the chart's default (the demo's is 1)",
    )
    parser.add_argument(
        "--ehr-nice", type=int, default=10, help="the EHR's CPU niceness in the main rounds"
    )
    parser.add_argument(
        "--profile",
        action="append",
        default=[],
        choices=("listener", "reasoner", "writeback"),
        help="record this service with py-spy during each saturated round (repeatable)",
    )
    parser.add_argument(
        "--profile-dir",
        type=Path,
        default=Path(tempfile.gettempdir()),
        help="where the profiles go, as SERVICE.ROUND.txt (collapsed stacks)",
    )
    args = parser.parse_args()
    figures = asyncio.run(run(args))
    # other benchmarks' figures in the same file (`listener`, `reasoner`, ...) are kept
    previous = json.loads(args.output.read_text()) if args.output.exists() else {}
    results = {**previous, **figures}
    results["ratios"] = ratios(results)
    args.output.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps({"ratios": results["ratios"], "ceiling": figures["ceiling"]}, indent=2))


if __name__ == "__main__":
    main()
