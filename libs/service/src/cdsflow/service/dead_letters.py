"""The `.dlq` twin of a topic: where a message that cannot be processed goes, unchanged, with
the error in its headers (`cdsflow-error-type`, `cdsflow-error`) and its original key."""

from __future__ import annotations

from collections.abc import Mapping

from faststream.kafka import KafkaBroker

from cdsflow.contracts import DLQ_ERROR_HEADER, DLQ_ERROR_TYPE_HEADER, dead_letter_topic


class DeadLetters:
    """Publishes to `<source topic>.dlq` through the service's broker (acks=all)."""

    def __init__(self, broker: KafkaBroker, source_topic: str) -> None:
        self._broker = broker
        self.topic = dead_letter_topic(source_topic)

    async def send(
        self,
        body: bytes,
        key: bytes | None,
        error_type: str,
        error: str,
        details: Mapping[str, str] | None = None,
        *,
        trace_headers: Mapping[str, str] | None = None,
    ) -> None:
        """Raises what the broker raises: the caller must not ack a message that did not land.

        `details` are further `cdsflow-*` headers (e.g. how many attempts were made); they
        never replace the two error headers. `trace_headers` (`traceparent`, ...) are for a
        broker without the telemetry middleware, whose caller propagates the trace itself."""
        headers = {
            **(trace_headers or {}),
            **(details or {}),
            DLQ_ERROR_TYPE_HEADER: error_type,
            DLQ_ERROR_HEADER: error,
        }
        await self._broker.publish(body, topic=self.topic, key=key, headers=headers)
