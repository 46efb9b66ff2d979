"""What is on the pipeline's topics, tallied as it arrives: the fault matrix's ledger.

One consumer, no group (nothing is committed), tails every partition of the clinical-events
and recommendations topics and their `.dlq` twins from the start, and counts each message by
its idempotency key: a `ClinicalEvent` by `event_id` (and the resource change it is), a
`Recommendation` by `recommendation_id`. Copies of the same key are counted too (Kafka is
at-least-once: a consumer killed before its commit hands the same input on again).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from google.protobuf.message import DecodeError

from cdsflow.contracts import (
    CLINICAL_EVENTS,
    RECOMMENDATIONS,
    ClinicalEvent,
    Mode,
    Recommendation,
    dead_letter_topic,
)
from tests.support.topic_partitions import true_end_offsets

TALLIED_TOPICS = (
    CLINICAL_EVENTS,
    RECOMMENDATIONS,
    dead_letter_topic(CLINICAL_EVENTS),
    dead_letter_topic(RECOMMENDATIONS),
)


@dataclass(frozen=True)
class RecommendationSeen:
    recommendation_id: str
    adapter_id: str
    model_version: str
    active: bool


@dataclass
class TopicTally:
    """Counts by key; read them once the pipeline has settled."""

    # resource change ("Observation/<id>/_history/<version>") -> event ids published for it
    event_ids_of_change: dict[str, set[str]] = field(
        default_factory=lambda: collections.defaultdict(set)
    )
    event_copies: collections.Counter[str] = field(default_factory=collections.Counter)
    # event id -> the recommendations made of it
    recommendations_of_event: dict[str, set[RecommendationSeen]] = field(
        default_factory=lambda: collections.defaultdict(set)
    )
    recommendation_copies: collections.Counter[str] = field(default_factory=collections.Counter)
    # messages that are neither (a poisoned message on a consumed topic): their bytes
    undecodable: dict[str, list[bytes]] = field(
        default_factory=lambda: collections.defaultdict(list)
    )
    # `.dlq` topic -> the values recorded there
    dead_letters: dict[str, list[bytes]] = field(
        default_factory=lambda: collections.defaultdict(list)
    )

    def record(self, topic: str, value: bytes) -> None:
        if topic.endswith(".dlq"):
            self.dead_letters[topic].append(value)
            return
        try:
            if topic == CLINICAL_EVENTS:
                self._record_event(ClinicalEvent.FromString(value))
            else:
                self._record_recommendation(Recommendation.FromString(value))
        except (DecodeError, ValueError):
            self.undecodable[topic].append(value)

    def _record_event(self, event: ClinicalEvent) -> None:
        if not event.event_id:
            raise ValueError("not a clinical event")
        change = change_key(event.resource_type, event.resource_id, event.resource_version)
        self.event_ids_of_change[change].add(event.event_id)
        self.event_copies[event.event_id] += 1

    def _record_recommendation(self, recommendation: Recommendation) -> None:
        if not recommendation.recommendation_id:
            raise ValueError("not a recommendation")
        seen = RecommendationSeen(
            recommendation.recommendation_id,
            recommendation.adapter_id,
            recommendation.model.version,
            recommendation.mode == Mode.MODE_ACTIVE,
        )
        self.recommendations_of_event[recommendation.event_id].add(seen)
        self.recommendation_copies[recommendation.recommendation_id] += 1

    def dead_letter_count(self) -> dict[str, int]:
        return {topic: len(values) for topic, values in self.dead_letters.items()}


def change_key(resource_type: str, resource_id: str, version: str) -> str:
    return f"{resource_type}/{resource_id}/_history/{version}"


async def create_topics(bootstrap: str, partitions: int) -> None:
    """The tallied topics, each with `partitions` partitions (so that the tally can follow
    every partition from the start, before the services publish anything)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics(
            [NewTopic(topic, partitions, replication_factor=1) for topic in TALLIED_TOPICS]
        )
    finally:
        await admin.close()


def partitions_of(topics: Sequence[str], partitions: int) -> list[TopicPartition]:
    return [TopicPartition(topic, number) for topic in topics for number in range(partitions)]


async def group_caught_up(bootstrap: str, group: str, topic: str, partition_count: int) -> bool:
    """True when `group` has committed every partition of `topic` up to its end (nothing of
    it is left to handle). A partition with no message needs no commit."""
    partitions = partitions_of([topic], partition_count)
    # not the end offsets the broker answers: Tansu's stop at the last batch's first record
    ends = await true_end_offsets(bootstrap, partitions)
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False
    )
    await consumer.start()
    try:
        for partition in partitions:
            committed = await consumer.committed(partition)
            if ends[partition] > 0 and (committed or 0) < ends[partition]:
                return False
        return True
    finally:
        await consumer.stop()


@contextlib.asynccontextmanager
async def tallying(bootstrap: str, partition_count: int) -> AsyncIterator[TopicTally]:
    """A `TopicTally` kept up to date while the block runs (the topics must exist, each with
    `partition_count` partitions: `create_topics`)."""
    tally = TopicTally()
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, enable_auto_commit=False, fetch_max_wait_ms=20
    )
    await consumer.start()
    partitions = partitions_of(TALLIED_TOPICS, partition_count)
    consumer.assign(partitions)
    await consumer.seek_to_beginning(*partitions)

    async def follow() -> None:
        while True:
            batches = await consumer.getmany(timeout_ms=200, max_records=5_000)
            for partition, records in batches.items():
                for record in records:
                    tally.record(partition.topic, record.value or b"")

    task = asyncio.create_task(follow())
    try:
        yield tally
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await consumer.stop()
