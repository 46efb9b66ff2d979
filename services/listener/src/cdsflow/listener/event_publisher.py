"""Publishing clinical events to Kafka, one acknowledged message at a time, each under a
PRODUCER span.

The listener sends with aiokafka's producer itself (`acks="all"`, the idempotence setting),
as the reasoner does, not through FastStream's broker, whose publish path made two spans
(`create` and `publish`), a uuid4 correlation id and a middleware chain per message: one span
made here took the listener's CPU per notification from 3.25 to 2.59 ms (the listener's
README, "Cost per notification"). The span
is never made current: the message's `traceparent` is made from the span itself
(`trace_headers(span)`), so the next service continues the same trace.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError
from opentelemetry import trace

from cdsflow.contracts import (
    DLQ_ERROR_HEADER,
    DLQ_ERROR_TYPE_HEADER,
    ClinicalEvent,
    dead_letter_topic,
)
from cdsflow.listener.domain import UnusableResource
from cdsflow.listener.intake import PublishUnavailable
from cdsflow.listener.settings import Settings
from cdsflow.service import KafkaConnection, probe_bootstrap, publish_span
from cdsflow.telemetry import trace_headers

log = logging.getLogger("cdsflow.listener")

SERVICE_NAME = "listener"
# headroom over the largest accepted body for the event's other fields and headers
RECORD_OVERHEAD_BYTES = 64 * 1024
_BROKER_ERRORS = (KafkaError, OSError, TimeoutError)


class KafkaClinicalEventPublisher:
    """Publishes clinical events with an aiokafka producer, keyed by patient, and returns once
    the broker acknowledged.

    The broker may be down when the listener starts: the listener then starts anyway, reports
    not-ready, and connects again on the next notification or readiness check.
    """

    def __init__(self, settings: Settings, kafka: KafkaConnection, tracer: trace.Tracer) -> None:
        self._settings = settings
        self._kafka = kafka
        self._tracer = tracer
        self._connect_lock = asyncio.Lock()
        self._producer: AIOKafkaProducer | None = None

    async def connect(self) -> bool:
        """Connect unless connected; False (logged) when the broker cannot be reached."""
        async with self._connect_lock:
            if self._producer is not None:
                return True
            producer = AIOKafkaProducer(
                **self._kafka.client_options(),
                client_id=f"cdsflow-{SERVICE_NAME}",
                acks="all",
                enable_idempotence=self._settings.kafka_idempotence,
                request_timeout_ms=timeout_ms(self._settings),
                max_request_size=self._settings.max_notification_bytes + RECORD_OVERHEAD_BYTES,
            )
            try:
                async with asyncio.timeout(self._settings.publish_timeout_s):
                    # probe first: an unreachable broker is known before a producer starts
                    await probe_bootstrap(self._kafka, timeout_ms(self._settings))
                    await producer.start()
                self._producer = producer
            except _BROKER_ERRORS as exc:
                log.warning("Kafka broker unreachable", extra={"error_type": type(exc).__name__})
            finally:
                if self._producer is None:  # failed or cancelled: drop what is half-started
                    await producer.stop()
            return self._producer is not None

    async def publish(self, event: ClinicalEvent) -> None:
        await self._publish_acked(
            event.SerializeToString(),
            topic=self._settings.clinical_events_topic,
            key=event.patient_key.encode(),
        )

    async def record_unusable(self, event: ClinicalEvent, unusable: UnusableResource) -> None:
        """On the `.dlq` twin, without a key (no patient), the reason in the DLQ headers."""
        await self._publish_acked(
            event.SerializeToString(),
            topic=dead_letter_topic(self._settings.clinical_events_topic),
            key=None,
            headers={
                DLQ_ERROR_TYPE_HEADER: unusable.error_type,
                DLQ_ERROR_HEADER: unusable.description,
            },
        )

    async def _publish_acked(
        self,
        body: bytes,
        *,
        topic: str,
        key: bytes | None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        try:
            async with asyncio.timeout(self._settings.publish_timeout_s):
                if not await self.connect():
                    raise PublishUnavailable("Kafka broker unreachable")
                assert self._producer is not None  # connected
                with publish_span(self._tracer, topic) as span:
                    sent = {**(headers or {}), **trace_headers(span)}
                    await self._producer.send_and_wait(
                        topic,
                        body,
                        key=key,
                        headers=[(name, value.encode()) for name, value in sent.items()],
                    )
        except _BROKER_ERRORS as exc:
            raise PublishUnavailable(type(exc).__name__) from exc

    async def is_ready(self) -> bool:
        """Connected, and the broker answers a metadata request within the readiness timeout."""
        try:
            async with asyncio.timeout(self._settings.readiness_timeout_s):
                if not await self.connect():
                    return False
                assert self._producer is not None  # connected
                await self._producer.client.fetch_all_metadata()
        except _BROKER_ERRORS:
            return False
        return True

    async def close(self) -> None:
        async with self._connect_lock:
            if self._producer is not None:
                await self._producer.stop()
            self._producer = None


def timeout_ms(settings: Settings) -> int:
    """The publish timeout in ms, for the Kafka clients' `request_timeout_ms`."""
    return max(1, round(settings.publish_timeout_s * 1000))
