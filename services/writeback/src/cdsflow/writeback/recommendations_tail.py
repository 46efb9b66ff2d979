"""Reads the recommendations topic back into `LatestRecommendations` on start, then follows it;
likewise the feedback topic into `CardSnoozes`.

This is the card state of every replica, and it is apart from the consumer group that writes
into the EHR: a plain aiokafka consumer with no group, so every replica reads every partition
(and partitions created later, from the next metadata refresh) and commits nothing. Each
partition starts at the first record within the store's `max_age` where the broker finds one
by time (Apache Kafka does; the embedded Tansu broker answers offset 0, so it reads from the
start and `keep` drops what is too old). The store is `rebuilt` once every partition of both
topics has been read to the end offset it had when this replica (re)connected; a topic not
existing yet counts as read.

After a lost connection it reconnects and reads the window again: what it already holds
stays (an older record never replaces a newer one), and it stays `rebuilt`, so cards are
still answered from what was read, while `/readyz` says it is catching up.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass
from datetime import UTC, timedelta

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.errors import KafkaError
from google.protobuf.message import DecodeError
from opentelemetry import trace
from opentelemetry.trace import SpanContext

from cdsflow.contracts import Feedback, FeedbackOutcome, Recommendation
from cdsflow.telemetry import context_from_headers
from cdsflow.writeback.domain.card_snoozes import INDICATOR_NAMES, CardSnoozes
from cdsflow.writeback.domain.latest_recommendations import LatestRecommendations, stored
from cdsflow.writeback.domain.recommendations import may_be_kept
from cdsflow.writeback.domain.recorded_feedback import RecordedFeedback

log = logging.getLogger("cdsflow.writeback")

_FETCH_TIMEOUT_MS = 200
_RETRY_DELAY_S = 1.0
# how soon partitions (or the topic) created after start are followed
_METADATA_MAX_AGE_MS = 5_000
_NO_TOPIC_WAIT_S = 0.5


@dataclass(frozen=True)
class FeedbackSnoozing:
    """Where overridden cards are snoozed from: the feedback topic, and for how long."""

    topic: str
    snoozes: CardSnoozes
    snooze: timedelta
    # every feedback id read, so that a repeated delivery is not published again
    recorded: RecordedFeedback


class RecommendationsTail:
    """Keeps `store` (and the snoozes) in step with the topics until `stop`."""

    def __init__(
        self,
        store: LatestRecommendations,
        bootstrap: str,
        topic: str,
        *,
        ehr_base_url: str,
        max_age: timedelta,
        feedback: FeedbackSnoozing | None = None,
        fetch_max_wait_ms: int = 5,
        request_timeout_ms: int = 5_000,
    ) -> None:
        self._store = store
        self._bootstrap = bootstrap
        self._topic = topic
        self._feedback = feedback
        self._topics = (topic,) if feedback is None else (topic, feedback.topic)
        self._ehr_base_url = ehr_base_url
        self._max_age = max_age
        self._fetch_max_wait_ms = fetch_max_wait_ms
        self._request_timeout_ms = request_timeout_ms
        self._task: asyncio.Task[None] | None = None
        # whether the current connection has read to the ends seen when it connected
        self.caught_up = False
        # seconds the first read-back took (None until it is done)
        self.rebuild_s: float | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._follow_while_running())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _follow_while_running(self) -> None:
        started = time.monotonic()
        while True:
            try:
                await self._follow(started)
            except (KafkaError, OSError, TimeoutError) as exc:
                self.caught_up = False
                log.warning(
                    "cannot read back the recommendations topic; retrying",
                    extra={"error_type": type(exc).__name__},
                )
                await asyncio.sleep(_RETRY_DELAY_S)

    async def _follow(self, started: float) -> None:
        consumer = AIOKafkaConsumer(
            *self._topics,  # subscribed without a group: every partition, new ones included
            bootstrap_servers=self._bootstrap,
            group_id=None,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            metadata_max_age_ms=_METADATA_MAX_AGE_MS,
            fetch_max_wait_ms=self._fetch_max_wait_ms,
            request_timeout_ms=self._request_timeout_ms,
            client_id="cdsflow-writeback-card-state",
        )
        try:
            await consumer.start()
            followed: set[TopicPartition] = set()
            ends: dict[TopicPartition, int] = {}
            while True:
                added = consumer.assignment() - followed
                if added:
                    followed |= added
                    ends.update(await self._seek_to_window(consumer, added))
                if followed:
                    batches = await consumer.getmany(timeout_ms=_FETCH_TIMEOUT_MS)
                    for records in batches.values():
                        for record in records:
                            self._take(record)
                if not self.caught_up:
                    if await self._unassigned_topics(consumer, followed):
                        # a topic exists but its partitions are not assigned yet: not read back
                        await asyncio.sleep(_NO_TOPIC_WAIT_S)
                        continue
                    if await _reached(consumer, ends):
                        self._caught_up(started)
                if not followed:  # no topic yet: its partitions come with a metadata refresh
                    await asyncio.sleep(_NO_TOPIC_WAIT_S)
        finally:
            await consumer.stop()

    async def _unassigned_topics(
        self, consumer: AIOKafkaConsumer, followed: set[TopicPartition]
    ) -> bool:
        existing = await consumer.topics()
        assigned = {partition.topic for partition in followed}
        return any(topic in existing and topic not in assigned for topic in self._topics)

    def _caught_up(self, started: float) -> None:
        self.caught_up = True
        if not self._store.rebuilt:
            self._store.rebuilt = True
            self.rebuild_s = time.monotonic() - started
            log.info(
                "recommendations topic read back",
                extra={"patients": len(self._store), "seconds": round(self.rebuild_s, 3)},
            )

    async def _seek_to_window(
        self, consumer: AIOKafkaConsumer, partitions: set[TopicPartition]
    ) -> dict[TopicPartition, int]:
        """Start each partition at its first record within `max_age` (where the broker finds
        one by time; otherwise at its start, older records being dropped by the store);
        returns the partitions' end offsets."""
        since_ms = round((time.time() - self._max_age.total_seconds()) * 1000)
        starts = await consumer.offsets_for_times(dict.fromkeys(partitions, since_ms))
        ends: dict[TopicPartition, int] = await consumer.end_offsets(list(partitions))
        for partition in partitions:
            start = starts.get(partition)
            consumer.seek(partition, ends[partition] if start is None else start.offset)
        return ends

    def _take(self, record: ConsumerRecord[bytes, bytes]) -> None:
        if record.value is None:
            return
        if self._feedback is not None and record.topic == self._feedback.topic:
            self._snooze(record.value, self._feedback)
            return
        try:
            recommendation = Recommendation.FromString(record.value)
        except DecodeError:
            return  # the consumer group dead-letters it
        if not may_be_kept(recommendation, self._ehr_base_url):
            return  # likewise: invalid or another EHR's, never shown
        self._store.keep(stored(recommendation, _producing_span(record)))

    def _snooze(self, value: bytes, feedback: FeedbackSnoozing) -> None:
        """A card overridden with a reason hides that patient's cards up to its indicator for
        the snooze time, counted from when the clinician acted (at the latest, from when the
        feedback arrived)."""
        try:
            event = Feedback.FromString(value)
        except DecodeError:
            return
        if event.feedback_id:
            feedback.recorded.record(event.feedback_id)
        if (
            event.outcome != FeedbackOutcome.FEEDBACK_OUTCOME_OVERRIDDEN
            or not event.override_reason_code
            or not event.patient_key
            or not feedback.snooze
        ):
            return
        indicator = INDICATOR_NAMES.get(event.indicator)
        if indicator is None:
            return
        acted = event.outcome_at.ToDatetime(tzinfo=UTC)
        if event.HasField("received_at"):
            acted = min(acted, event.received_at.ToDatetime(tzinfo=UTC))
        feedback.snoozes.snooze(event.patient_key, acted + feedback.snooze, indicator)


def _producing_span(record: ConsumerRecord[bytes, bytes]) -> SpanContext | None:
    """The span that published the record (its `traceparent`), for the hook span's link."""
    headers = {key: value for key, value in record.headers if value is not None}
    context = trace.get_current_span(context_from_headers(headers)).get_span_context()
    return context if context.is_valid else None


async def _reached(consumer: AIOKafkaConsumer, ends: dict[TopicPartition, int]) -> bool:
    """Whether every partition's position is at or past the end offset noted for it."""
    for partition, end in ends.items():
        if await consumer.position(partition) < end:
            return False
    return True
