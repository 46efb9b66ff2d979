"""Where the pipeline bench's events waited (`RecommendationWatch.waits_since`): from the
times the listener and the reasoner stamped on an event and its recommendation, and the times
the watch read them (pure logic: records handed to `take`, no broker)."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import pytest
from aiokafka import ConsumerRecord

from bench.pipeline import RecommendationWatch
from cdsflow.contracts import CLINICAL_EVENTS, RECOMMENDATIONS, ClinicalEvent, Recommendation


def _record(topic: str, value: bytes) -> ConsumerRecord[bytes, bytes]:
    return ConsumerRecord(
        topic=topic,
        partition=0,
        offset=0,
        timestamp=0,
        timestamp_type=0,
        key=None,
        value=value,
        checksum=None,
        serialized_key_size=0,
        serialized_value_size=0,
        headers=(),
    )


def _event(event_id: str, received_at: float) -> ConsumerRecord[bytes, bytes]:
    event = ClinicalEvent(event_id=event_id, resource_id=f"obs-{event_id}")
    event.received_at.FromMicroseconds(int(received_at * 1e6))
    return _record(CLINICAL_EVENTS, event.SerializeToString())


def _recommendation(event_id: str, produced_at: float) -> ConsumerRecord[bytes, bytes]:
    recommendation = Recommendation(event_id=event_id)
    recommendation.produced_at.FromMicroseconds(int(produced_at * 1e6))
    return _record(RECOMMENDATIONS, recommendation.SerializeToString())


@pytest.fixture
async def watch() -> AsyncIterator[RecommendationWatch]:
    watch = RecommendationWatch("127.0.0.1:9")  # never started: no broker is reached
    yield watch
    await watch.stop()


async def test_each_stage_of_the_events_read_since_the_mark(watch: RecommendationWatch) -> None:
    now = time.time()
    watch.take(_event("before", now - 5.0))
    watch.take(_recommendation("before", now - 4.0))
    mark = watch.mark()
    # received 0.5 s ago, its recommendation produced 0.3 s after that
    watch.take(_event("one", now - 0.5))
    watch.take(_recommendation("one", now - 0.2))
    watch.take(_event("unanswered", now - 0.4))  # no recommendation: not counted
    waits = watch.waits_since(mark)
    assert waits["received_to_event_read"]["count"] == 1
    assert waits["received_to_event_read"]["p50_ms"] == pytest.approx(500, abs=100)
    assert waits["received_to_recommendation_produced"]["p50_ms"] == pytest.approx(300, abs=1)
    assert waits["recommendation_produced_to_read"]["p50_ms"] == pytest.approx(200, abs=100)
    # a redelivered event or recommendation keeps its first times
    watch.take(_event("one", now))
    watch.take(_recommendation("one", now))
    assert watch.waits_since(mark)["received_to_recommendation_produced"]["p50_ms"] == (
        pytest.approx(300, abs=1)
    )
    assert watch.waits_since(watch.mark())["received_to_event_read"] == {"count": 0}
