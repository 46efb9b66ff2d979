"""`make bench` (hook token claims): what the replay check across writeback replicas adds to a
hook call, on the real broker.

Two writeback replicas' claimers (`cdsflow.writeback.token_claims.TokenClaims`, each with its
own producer and its own follower of the claims topic) run in this process on one embedded
Tansu broker. Each claim step (publish with acks=all, then read the partition back up to its
own offset) is timed, side by side in alternating rounds with the bare part of it: the same
publish through a producer like the claims' own (acks=all, no linger), acked, with no
read-back. Two loads: one claim at a time,
and an open loop at the CDS Hooks bench's rate (200 claims/s, alternating replicas). Figures
go to `bench/results.json` under `hook_token_claims`, keeping every other key.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import secrets
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaProducer
from pydantic import SecretStr

from bench.measures import latency_summary, percentile
from cdsflow.runtime.parts import start_broker
from cdsflow.service import kafka_connection
from cdsflow.telemetry import TelemetrySettings, setup_telemetry
from cdsflow.writeback.domain.token_claims import (
    ClaimLedger,
    ClaimUnconfirmed,
    claim_key,
    claim_value,
)
from cdsflow.writeback.settings import Settings
from cdsflow.writeback.token_claims import ClaimMetrics, ClaimsTopic, TokenClaims

REPO = Path(__file__).resolve().parent.parent
ISSUER = "https://ehr.bench.test/"
PSEUDONYM_KEY = secrets.token_urlsafe(24)
TOPIC = f"bench.hook-token-claims.{uuid.uuid4().hex[:8]}"

Step = Callable[[], Awaitable[object]]


@contextlib.asynccontextmanager
async def replica(
    bootstrap: str, name: str
) -> AsyncIterator[tuple[TokenClaims, Step, Callable[[], float]]]:
    """A replica's claimer, as the writeback builds it, and its bare publish (no read-back)."""
    settings = Settings(
        kafka_bootstrap=bootstrap,
        kafka_idempotence=False,
        ehr_base_url="https://ehr.bench.test/fhir",
        hooks_auth="off",
    )
    telemetry = setup_telemetry(
        f"bench-{name}", TelemetrySettings(pseudonym_key=SecretStr(PSEUDONYM_KEY))
    )
    kafka = kafka_connection(settings)
    claims = TokenClaims(
        kafka,
        ClaimsTopic(
            TOPIC, partitions=6, replication=1, window_s=settings.hook_token_claims_window_s
        ),
        keyed_digest=telemetry.patient_keyer.keyed_digest,
        deadline_s=settings.hook_token_claim_deadline_ms / 1000,
        ledger=ClaimLedger(settings.hook_token_claims_max),
        metrics=ClaimMetrics.on(telemetry.metrics),
        fetch_max_wait_ms=settings.hook_token_claims_fetch_max_wait_ms,
    )

    # the same kind of producer as the claims' own (acks=all, no linger), no read-back
    bare = AIOKafkaProducer(**kafka.client_options(), acks="all", linger_ms=0)

    async def bare_publish() -> object:
        key = claim_key(telemetry.patient_keyer.keyed_digest, ISSUER, uuid.uuid4().hex)
        return await bare.send_and_wait(
            f"{TOPIC}.bare", value=claim_value(time.time() + 300), key=key
        )

    await bare.start()
    claims.start()
    try:
        deadline = time.monotonic() + 60
        while not claims.ready:
            if time.monotonic() > deadline:
                raise RuntimeError("the claims topic was never followed")
            await asyncio.sleep(0.05)

        def decided_from_ack() -> float:
            """How many of this replica's claims were decided from their ack (no fetch)."""
            value = telemetry.metrics.registry.get_sample_value(
                "cdsflow_writeback_hook_token_claims_decided_from_ack_total"
            )
            return value or 0.0

        yield claims, bare_publish, decided_from_ack
    finally:
        await claims.stop()
        await bare.stop()
        telemetry.shutdown()


def claim_step(claims: TokenClaims) -> Step:
    async def claim() -> object:
        first = await claims.first_use(ISSUER, uuid.uuid4().hex, time.time() + 300)
        if not first:
            raise RuntimeError("a fresh token was taken for a replay")
        return first

    return claim


class Timings:
    """The latencies of the confirmed calls, and how many were not confirmed in time (each a
    503 in the writeback)."""

    def __init__(self) -> None:
        self.samples: list[float] = []
        self.unconfirmed = 0

    async def timed(self, step: Step) -> None:
        started = time.perf_counter()
        try:
            await step()
        except ClaimUnconfirmed:
            self.unconfirmed += 1
            return
        self.samples.append(time.perf_counter() - started)

    def summary(self) -> dict[str, Any]:
        return {**latency_summary(self.samples), "unconfirmed": self.unconfirmed}


async def one_at_a_time(steps: list[Step], count: int) -> dict[str, Any]:
    """`count` calls, one at a time, alternating over `steps`."""
    timings = Timings()
    for index in range(count):
        await timings.timed(steps[index % len(steps)])
    return timings.summary()


async def open_loop(steps: list[Step], per_s: float, seconds: float) -> dict[str, Any]:
    """One call every 1/per_s seconds whatever the answers take, alternating over `steps`."""
    timings = Timings()
    began = time.perf_counter()
    tasks = []
    for index in range(int(per_s * seconds)):
        delay = began + index / per_s - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(timings.timed(steps[index % len(steps)])))
    await asyncio.gather(*tasks)
    return timings.summary()


async def measure(args: argparse.Namespace, work_dir: Path) -> dict[str, Any]:
    broker = start_broker(work_dir)
    try:
        bootstrap = broker.endpoints["broker"]
        async with replica(bootstrap, "replica-1") as one, replica(bootstrap, "replica-2") as two:
            claim = [claim_step(one[0]), claim_step(two[0])]
            bare = [one[1], two[1]]
            await one_at_a_time(claim, 100)  # warm both paths
            await one_at_a_time(bare, 100)
            rounds: dict[str, list[dict[str, Any]]] = {
                "claim_one_at_a_time": [],
                "bare_publish_one_at_a_time": [],
                "claim_open_loop": [],
                "bare_publish_open_loop": [],
            }
            decided_before = one[2]() + two[2]()
            for _ in range(args.rounds):
                rounds["claim_one_at_a_time"].append(await one_at_a_time(claim, args.count))
                rounds["bare_publish_one_at_a_time"].append(await one_at_a_time(bare, args.count))
                rounds["claim_open_loop"].append(await open_loop(claim, args.per_s, args.seconds))
                rounds["bare_publish_open_loop"].append(
                    await open_loop(bare, args.per_s, args.seconds)
                )
            decided_from_ack = one[2]() + two[2]() - decided_before
    finally:
        broker.stop()
    return {
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": "make bench (python -m bench.hook_token_claims)",
        "load_average_1m": round(os.getloadavg()[0], 2),
        "claim_p50_ms": _median(rounds["claim_one_at_a_time"], "p50_ms"),
        "claim_p99_ms": _median(rounds["claim_one_at_a_time"], "p99_ms"),
        "bare_publish_p50_ms": _median(rounds["bare_publish_one_at_a_time"], "p50_ms"),
        "bare_publish_p99_ms": _median(rounds["bare_publish_one_at_a_time"], "p99_ms"),
        "open_loop_per_s": args.per_s,
        "claim_open_loop_p50_ms": _median(rounds["claim_open_loop"], "p50_ms"),
        "claim_open_loop_p99_ms": _median(rounds["claim_open_loop"], "p99_ms"),
        "bare_publish_open_loop_p50_ms": _median(rounds["bare_publish_open_loop"], "p50_ms"),
        "bare_publish_open_loop_p99_ms": _median(rounds["bare_publish_open_loop"], "p99_ms"),
        # the claims decided from their own ack, with no fetch (nothing unread before them:
        # here the two replicas alternate, so about half)
        "claims_decided_from_ack_share": round(
            decided_from_ack
            / max(
                1,
                sum(
                    r.get("count", 0) + r["unconfirmed"]
                    for name in ("claim_one_at_a_time", "claim_open_loop")
                    for r in rounds[name]
                ),
            ),
            3,
        ),
        "claims_unconfirmed": sum(
            r["unconfirmed"]
            for name in ("claim_one_at_a_time", "claim_open_loop")
            for r in rounds[name]
        ),
        "claim_deadline_ms": Settings.model_fields["hook_token_claim_deadline_ms"].default,
        "rounds": rounds,
        "notes": (
            "the claim step of a hook call's JWT check across replicas (TokenClaims.first_use: "
            "publish acks=all, then this replica's follower reads the partition up to the "
            "claim's offset), two replicas' claimers in one process on one Tansu broker "
            "(memory storage), claims alternating between them, each replica following every "
            "claim; bare_publish: the same publish through a producer like the claims' own "
            "(acks=all, no linger), acked, no read-back. p50/p99 are the medians of the "
            "alternating rounds; everything shares the machine's 2 cores with other work"
        ),
    }


def _median(rounds: list[dict[str, Any]], figure: str) -> float | None:
    values = [r[figure] for r in rounds if figure in r]
    return round(percentile(values, 0.5), 2) if values else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--output", type=Path, default=REPO / "bench" / "results.json")
    parser.add_argument("--count", type=int, default=500, help="claims per one-at-a-time round")
    parser.add_argument("--per-s", type=float, default=200.0)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    work_dir = Path(tempfile.mkdtemp(prefix="cdsflow-bench-token-claims-"))
    figures = asyncio.run(measure(args, work_dir))
    results = json.loads(args.output.read_text()) if args.output.exists() else {}
    results["hook_token_claims"] = figures
    args.output.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps({k: v for k, v in figures.items() if not isinstance(v, dict)}, indent=2))


if __name__ == "__main__":
    main()
