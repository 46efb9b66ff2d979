"""Reads the recommendations topic back into `LatestRecommendations` on start, then follows it;
likewise the feedback topic into `CardSnoozes`.

This is the card state of every replica, and it is apart from the consumer group that writes
into the EHR: `cdsflow.service.TopicReadBack`, a group-less consumer, so every replica reads
every partition (and partitions created later) and commits nothing, each from the first
record within the store's `max_age` (where the broker can seek by time; otherwise `keep`
drops what is too old). The store is `rebuilt` once every partition of both topics has been
read to the end offset it had when this replica (re)connected; a topic not existing yet
counts as read.

After a lost connection it reconnects and reads the window again: what it already holds
stays (an older record never replaces a newer one), and it stays `rebuilt`, so cards are
still answered from what was read, while `/readyz` says it is catching up.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, timedelta

from aiokafka import ConsumerRecord
from google.protobuf.message import DecodeError
from opentelemetry import trace
from opentelemetry.trace import SpanContext
from prometheus_client import Histogram

from cdsflow.contracts import Feedback, FeedbackOutcome, Recommendation
from cdsflow.service import KafkaConnection, TopicReadBack
from cdsflow.telemetry import context_from_headers
from cdsflow.writeback.domain.card_snoozes import INDICATOR_NAMES, CardSnoozes, snooze_key
from cdsflow.writeback.domain.latest_recommendations import LatestRecommendations, stored
from cdsflow.writeback.domain.recommendations import (
    LEGACY_ADAPTER_ID,
    adapter_of,
    is_active,
    may_be_kept,
    seconds_since_received,
)
from cdsflow.writeback.domain.recorded_feedback import RecordedFeedback

log = logging.getLogger("cdsflow.writeback")


@dataclass(frozen=True)
class FeedbackSnoozing:
    """Where overridden cards are snoozed from: the feedback topic, and for how long."""

    topic: str
    snoozes: CardSnoozes
    snooze: timedelta
    # every feedback id read, so that a repeated delivery is not published again
    recorded: RecordedFeedback
    # CDS service id -> its adapter id (a snooze holds for the patient and the adapter)
    service_adapters: Mapping[str, str] = field(default_factory=dict)


class RecommendationsTail:
    """Keeps `store` (and the snoozes) in step with the topics until `stop`."""

    def __init__(
        self,
        store: LatestRecommendations,
        kafka: KafkaConnection,
        topic: str,
        *,
        ehr_base_url: str,
        max_age: timedelta,
        feedback: FeedbackSnoozing | None = None,
        fetch_max_wait_ms: int = 5,
        request_timeout_ms: int = 5_000,
        card_latency: Histogram | None = None,
    ) -> None:
        self._store = store
        # end to end, observed for active recommendations produced since this tail started
        # (not those read back at start; a reconnect's re-read may observe one again)
        self._card_latency = card_latency
        self._started_at = time.time()
        self._feedback = feedback
        self._ehr_base_url = ehr_base_url
        self._started = time.monotonic()
        # seconds the first read-back took (None until it is done)
        self.rebuild_s: float | None = None
        self._read_back = TopicReadBack(
            (topic,) if feedback is None else (topic, feedback.topic),
            kafka,
            max_age.total_seconds(),
            self._take,
            client_id="cdsflow-writeback-card-state",
            on_caught_up=self._caught_up,
            fetch_max_wait_ms=fetch_max_wait_ms,
            request_timeout_ms=request_timeout_ms,
        )

    @property
    def caught_up(self) -> bool:
        """Whether the current connection has read to the ends seen when it connected."""
        return self._read_back.caught_up

    def start(self) -> None:
        self._started = time.monotonic()
        self._started_at = time.time()
        self._read_back.start()

    async def stop(self) -> None:
        await self._read_back.stop()

    def _caught_up(self) -> None:
        if not self._store.rebuilt:
            self._store.rebuilt = True
            self.rebuild_s = time.monotonic() - self._started
            log.info(
                "recommendations topic read back",
                extra={"patients": len(self._store), "seconds": round(self.rebuild_s, 3)},
            )

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
        if self._card_latency is not None and is_active(recommendation):
            produced = recommendation.produced_at
            if produced.seconds + produced.nanos / 1e9 >= self._started_at:
                latency = seconds_since_received(recommendation, time.time())
                if latency is not None:
                    self._card_latency.labels(adapter_of(recommendation)).observe(latency)

    def _snooze(self, value: bytes, feedback: FeedbackSnoozing) -> None:
        """A card overridden with a reason hides that patient's cards of the same adapter up to
        its indicator for
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
        adapter_id = feedback.service_adapters.get(event.cds_service, LEGACY_ADAPTER_ID)
        feedback.snoozes.snooze(
            snooze_key(event.patient_key, adapter_id), acted + feedback.snooze, indicator
        )


def _producing_span(record: ConsumerRecord[bytes, bytes]) -> SpanContext | None:
    """The span that published the record (its `traceparent`), for the hook span's link."""
    headers = {key: value for key, value in record.headers if value is not None}
    context = trace.get_current_span(context_from_headers(headers)).get_span_context()
    return context if context.is_valid else None
