"""Follows the clinical-events topic into `PublishedEvents`: on start from the window's
beginning (the topic read back, `cdsflow.service.TopicReadBack`), then as other replicas
publish. Until it is read back, and while the connection is lost, the dedupe memory is not
caught up and notifications wait for it (then 503)."""

from __future__ import annotations

import logging

from aiokafka import ConsumerRecord
from google.protobuf.message import DecodeError

from cdsflow.contracts import ClinicalEvent
from cdsflow.listener.published_events import PublishedEvents
from cdsflow.service import KafkaConnection, TopicReadBack

log = logging.getLogger("cdsflow.listener")


def published_events_tail(
    published: PublishedEvents,
    kafka: KafkaConnection,
    topic: str,
    *,
    fetch_max_wait_ms: int,
    request_timeout_ms: int,
    max_record_bytes: int,
) -> TopicReadBack:
    """The read-back that keeps `published` in step with the topic; `start` it."""

    def remember(record: ConsumerRecord[bytes, bytes]) -> None:
        if record.value is None:
            return
        try:
            event = ClinicalEvent.FromString(record.value)
        except DecodeError:
            return  # not ours to judge here; the reasoner dead-letters it
        published.remember_event(event, record.timestamp / 1000)

    def caught_up() -> None:
        published.caught_up = True
        log.info("clinical-events topic read back", extra={"events_remembered": len(published)})

    def behind() -> None:
        published.caught_up = False

    return TopicReadBack(
        (topic,),
        kafka,
        published.window_s,
        remember,
        client_id="cdsflow-listener-dedupe",
        on_caught_up=caught_up,
        on_behind=behind,
        fetch_max_wait_ms=fetch_max_wait_ms,
        request_timeout_ms=request_timeout_ms,
        max_record_bytes=max_record_bytes,
    )
