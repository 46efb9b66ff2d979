"""The FastStream Kafka broker as every service builds it, and starting it while Kafka is down.

A FastStream connect or start that fails leaves an unclosed aiokafka producer behind, so the
broker is only connected after `probe_bootstrap` has reached the bootstrap servers.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

import aiokafka
from faststream.kafka import KafkaBroker
from faststream.kafka.opentelemetry import KafkaTelemetryMiddleware
from tenacity import AsyncRetrying, wait_exponential

from cdsflow.service.kafka_security import KafkaConnection, kafka_connection
from cdsflow.service.settings import ServiceSettings
from cdsflow.telemetry import Telemetry

log = logging.getLogger("cdsflow.service.kafka")

# aiokafka's own default request timeout
DEFAULT_REQUEST_TIMEOUT_MS = 40_000


def build_broker(
    settings: ServiceSettings,
    telemetry: Telemetry,
    service_name: str,
    *,
    traced: bool = True,
    kafka: KafkaConnection | None = None,
    **producer_options: Any,
) -> KafkaBroker:
    """A `KafkaBroker` with `acks="all"`, the idempotence setting, trace propagation in
    headers and a quiet logger; `producer_options` (e.g. `request_timeout_ms`) pass through.

    It connects as `kafka` says (TLS, SASL), the service's one `KafkaConnection`, built from
    `settings` when not given.

    `traced=False` leaves out FastStream's telemetry middleware, for a service that consumes
    in batches and keeps one trace per message itself (the middleware would make one span
    for the whole batch, and publish every message under it)."""
    middlewares = (
        [KafkaTelemetryMiddleware(tracer_provider=telemetry.tracer_provider)] if traced else []
    )
    if kafka is None:
        kafka = kafka_connection(settings)
    return KafkaBroker(
        kafka.bootstrap_servers,
        security=kafka.broker_security(),
        sasl_oauth_token_provider=kafka.token_provider,
        client_id=f"cdsflow-{service_name}",
        acks="all",
        enable_idempotence=settings.kafka_idempotence,
        middlewares=middlewares,
        logger=None,
        **producer_options,
    )


async def probe_bootstrap(
    kafka: KafkaConnection, request_timeout_ms: int = DEFAULT_REQUEST_TIMEOUT_MS
) -> None:
    """Reach the bootstrap servers with a bare client, closed after; raises when unreachable
    (or when TLS or SASL fails)."""
    client = aiokafka.AIOKafkaClient(
        **kafka.client_options(), request_timeout_ms=request_timeout_ms
    )
    try:
        await client.bootstrap()
    finally:
        await client.close()


class ConsumingBroker:
    """A broker with subscribers, started in the background and retried until Kafka answers,
    so that the service comes up, and reports not-ready, while Kafka is down."""

    def __init__(
        self,
        broker: KafkaBroker,
        kafka: KafkaConnection,
        *,
        request_timeout_ms: int = DEFAULT_REQUEST_TIMEOUT_MS,
    ) -> None:
        self.broker = broker
        self.running = False
        self._kafka = kafka
        self._request_timeout_ms = request_timeout_ms
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Start connecting in the background; returns at once."""
        self._task = asyncio.create_task(self._start_when_reachable())

    async def _start_when_reachable(self) -> None:
        async for attempt in AsyncRetrying(wait=wait_exponential(multiplier=0.5, max=10.0)):
            with attempt:
                try:
                    await probe_bootstrap(self._kafka, self._request_timeout_ms)
                    await self.broker.start()
                except Exception as exc:
                    log.warning("Kafka unreachable", extra={"error_type": type(exc).__name__})
                    await self.broker.stop()  # drop whatever half-connected
                    raise
        self.running = True

    async def is_ready(self, timeout_s: float) -> bool:
        """True once the broker runs and answers within `timeout_s`."""
        return self.running and await self.broker.ping(timeout_s)

    async def stop(self) -> None:
        """Stop trying to connect, then stop the broker and its subscribers."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self.running = False
        await self.broker.stop()
