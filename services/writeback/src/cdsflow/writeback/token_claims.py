"""A hook token's replay check across writeback replicas: each accepted token is claimed on the
claims topic, and the claim that the broker took first wins (`domain/token_claims.py`).

The replica publishes its claim (acks=all), takes the partition and offset from the ack, and
waits until its own reader of the topic has read that partition up to that offset: an
earlier claim with the same key is a replay (401). When the reader had already read every
record of the partition before that offset (no other replica's claim came in between), the
claim is decided from the ack alone, with no fetch: one writeback replica never fetches its
own claims back, and two fetch for about half of theirs. The reader is a group-less
`cdsflow.service.TopicReadBack`, like the card state's, that reads every partition back from
"now minus the longest token lifetime (+ twice the skew)" at start, so any claim of a token
still alive is read, and then reads on demand: a partition is fetched only while a claim on
it waits. The claim is on the broker once acknowledged, so that fetch returns at once, and a
replica without hook calls sends no fetches. The topic is created at start with the
configured partitions when it is missing.

The wait is bounded: when the claim is not confirmed within the deadline (the broker down or
stalled), the call is refused with a 503, never accepted unverified; `/readyz` says so
(`hook_token_claims`) until a claim is confirmed again or a quiet spell passes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from aiokafka import AIOKafkaProducer, ConsumerRecord
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError, TopicAlreadyExistsError
from prometheus_client import Counter, Histogram
from tenacity import AsyncRetrying, wait_exponential

from cdsflow.service import KafkaConnection, TopicReadBack
from cdsflow.telemetry import MetricsRegistry
from cdsflow.writeback.domain.token_claims import (
    ClaimLedger,
    ClaimPosition,
    ClaimUnconfirmed,
    claim_expiry,
    claim_key,
    claim_value,
)

log = logging.getLogger("cdsflow.writeback.token_claims")

# after an unconfirmed claim, /readyz reports the claims not ready for this long (unless a
# claim is confirmed before): long enough to be seen, short enough not to keep a replica out
# of its load balancer once the broker is back and no call comes to prove it
UNCONFIRMED_NOT_READY_S = 10.0
# the claims topic keeps each claim this many times the window read back
RETENTION_WINDOWS = 2


@dataclass(frozen=True)
class ClaimsTopic:
    """Where the claims go, and how the topic is made when it is missing."""

    name: str
    partitions: int
    replication: int
    # how far back the follower reads: the longest token lifetime + twice the clock skew
    window_s: float


@dataclass(frozen=True)
class ClaimMetrics:
    claims: Counter
    claim_seconds: Histogram
    decided_from_ack: Counter

    @classmethod
    def on(cls, registry: MetricsRegistry) -> ClaimMetrics:
        return cls(
            claims=registry.counter(
                "writeback_hook_token_claims",
                "Hook tokens claimed on the claims topic, by outcome (first, replayed, "
                "unconfirmed: refused 503 because the claim was not confirmed in time)",
                ("outcome",),
            ),
            claim_seconds=registry.histogram(
                "writeback_hook_token_claim_seconds",
                "Time to claim a hook token: publish, ack, and read its partition back to it",
                buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
            ),
            decided_from_ack=registry.counter(
                "writeback_hook_token_claims_decided_from_ack",
                "Hook token claims decided from the broker's acknowledgement alone, with no "
                "fetch: every earlier record of the claim's partition had already been read",
            ),
        )


@dataclass
class _Waiting:
    position: ClaimPosition
    key: bytes
    decided: asyncio.Future[bool] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )


class TokenClaims:
    """Claims tokens on the claims topic and follows it, until `stop`."""

    def __init__(
        self,
        kafka: KafkaConnection,
        topic: ClaimsTopic,
        *,
        keyed_digest: Callable[[str, str], str],
        deadline_s: float,
        ledger: ClaimLedger,
        metrics: ClaimMetrics,
        fetch_max_wait_ms: int = 100,
        request_timeout_ms: int = 5_000,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._kafka = kafka
        self._topic = topic
        self._keyed_digest = keyed_digest
        self._deadline_s = deadline_s
        self._ledger = ledger
        self._metrics = metrics
        self._clock = clock
        self._waiting: dict[int, list[_Waiting]] = {}
        self._topic_ready = False
        self._unconfirmed_at: float | None = None
        self._task: asyncio.Task[None] | None = None
        # claims go out through a producer of their own, not the service's traced broker: a
        # PRODUCER span per hook call cost more CPU than the claim itself, and the claim's time
        # is in `cdsflow_writeback_hook_token_claim_seconds` and inside the hook's SERVER span
        self._producer: AIOKafkaProducer | None = None
        self._read_back = TopicReadBack(
            (topic.name,),
            kafka,
            topic.window_s,
            self._take,
            client_id="cdsflow-writeback-token-claims",
            fetch_max_wait_ms=fetch_max_wait_ms,
            request_timeout_ms=request_timeout_ms,
            on_demand=True,
        )

    @property
    def ready(self) -> bool:
        """The claims' producer is connected, the topic exists, the follower has read it back,
        and no claim went unconfirmed lately (without one confirmed since)."""
        recently_unconfirmed = (
            self._unconfirmed_at is not None
            and time.monotonic() - self._unconfirmed_at < UNCONFIRMED_NOT_READY_S
        )
        return (
            self._producer is not None
            and self._topic_ready
            and self._read_back.caught_up
            and not recently_unconfirmed
        )

    def start(self) -> None:
        """Create the topic when missing (retried while Kafka is down), then follow it."""
        self._task = asyncio.create_task(self._start_when_reachable())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self._read_back.stop()
        if self._producer is not None:
            await self._producer.stop()
            self._producer = None
        for waiting in [w for partition in self._waiting.values() for w in partition]:
            waiting.decided.cancel()
        self._waiting.clear()

    async def first_use(self, iss: str, jti: str, expires_at: float) -> bool:
        """True when this is the token's first claim anywhere; False for a replay. Raises
        `ClaimUnconfirmed` when that cannot be known within the deadline."""
        started = time.perf_counter()
        try:
            async with asyncio.timeout(self._deadline_s):
                first = await self._claim(claim_key(self._keyed_digest, iss, jti), expires_at)
        except (TimeoutError, KafkaError, ClaimUnconfirmed) as exc:
            reason = exc.reason if isinstance(exc, ClaimUnconfirmed) else type(exc).__name__
            self._unconfirmed_at = time.monotonic()
            self._metrics.claims.labels(outcome="unconfirmed").inc()
            log.warning(
                "a hook token's claim was not confirmed; the call is refused (503)",
                extra={"reason": reason},
            )
            raise ClaimUnconfirmed(reason) from None
        self._unconfirmed_at = None
        self._metrics.claim_seconds.observe(time.perf_counter() - started)
        self._metrics.claims.labels(outcome="first" if first else "replayed").inc()
        return first

    async def _claim(self, key: bytes, expires_at: float) -> bool:
        producer = self._producer
        if producer is None or not self._topic_ready:
            raise ClaimUnconfirmed("broker-not-connected")
        metadata = await producer.send_and_wait(
            self._topic.name, value=claim_value(expires_at), key=key
        )
        position = ClaimPosition(metadata.partition, metadata.offset)
        decided = self._ledger.decide_own(key, position, expires_at, self._clock())
        if decided is not None:  # nothing unread before it: no fetch needed
            self._metrics.decided_from_ack.inc()
            return decided
        waiting = _Waiting(position, key)
        self._waiting.setdefault(position.partition, []).append(waiting)
        self._read_back.demand(self._topic.name, position.partition)
        try:
            return await waiting.decided
        finally:
            still = self._waiting.get(position.partition, [])
            if waiting in still:
                still.remove(waiting)
            if not still:
                self._read_back.release(self._topic.name, position.partition)

    def _take(self, record: ConsumerRecord[bytes, bytes]) -> None:
        position = ClaimPosition(record.partition, record.offset)
        expires_at = claim_expiry(record.value)
        if record.key is not None and expires_at is not None:
            self._ledger.note(record.key, position, expires_at, self._clock())
        else:
            self._ledger.skip(position)  # not a claim: only how far the partition was read
        waiting = self._waiting.get(record.partition)
        if not waiting:
            return
        for claim in [w for w in waiting if self._ledger.has_read(w.position)]:
            waiting.remove(claim)
            if claim.decided.done():
                continue
            try:
                claim.decided.set_result(self._ledger.first_use(claim.key, claim.position))
            except ClaimUnconfirmed as exc:
                claim.decided.set_exception(exc)
        if not waiting:  # read far enough for every claim on it: no more fetches for now
            self._read_back.release(self._topic.name, record.partition)

    async def _start_when_reachable(self) -> None:
        async for attempt in AsyncRetrying(wait=wait_exponential(multiplier=0.5, max=10.0)):
            with attempt:
                try:
                    await self._ensure_topic()
                    await self._start_producer()
                except (KafkaError, OSError) as exc:
                    log.warning(
                        "cannot create the hook token claims topic; retrying",
                        extra={"error_type": type(exc).__name__},
                    )
                    raise
        self._topic_ready = True
        self._read_back.start()

    async def _start_producer(self) -> None:
        if self._producer is not None:
            return
        producer = AIOKafkaProducer(
            **self._kafka.client_options(),
            client_id="cdsflow-writeback-token-claims",
            acks="all",
            linger_ms=0,
        )
        try:
            await producer.start()
        except BaseException:
            await producer.stop()
            raise
        self._producer = producer

    async def _ensure_topic(self) -> None:
        retention_ms = math.ceil(self._topic.window_s * RETENTION_WINDOWS * 1000)
        admin = AIOKafkaAdminClient(**self._kafka.client_options())
        await admin.start()
        try:
            await admin.create_topics(
                [
                    NewTopic(
                        self._topic.name,
                        num_partitions=self._topic.partitions,
                        replication_factor=self._topic.replication,
                        topic_configs={"retention.ms": str(retention_ms)},
                    )
                ]
            )
        except TopicAlreadyExistsError:
            pass
        finally:
            await admin.close()
