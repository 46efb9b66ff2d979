"""Publishing recommendations and changelog snapshots without waiting for each acknowledgement.

`send` hands a message to aiokafka's producer and returns its delivery (a future), so a lane
goes on to its patient's next event while Kafka acknowledges; the producer batches what the
lanes hand it. The batch consumer awaits every delivery before it commits: a message whose
delivery failed is not committed, and is consumed again (`cdsflow.service.lane_batches`).

The producer starts on the first send (the first batch arrives only once Kafka answers), with
`acks=all` and the service's idempotence setting.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from cdsflow.reasoner.dependency_health import DependencyUnavailable

Delivery = asyncio.Future[Any]


class Deliveries:
    def __init__(self, producer: AIOKafkaProducer) -> None:
        self._producer = producer
        self._started = False
        self._starting = asyncio.Lock()

    async def send(
        self,
        topic: str,
        value: bytes,
        *,
        key: bytes | None,
        headers: Mapping[str, str] | None = None,
        partition: int | None = None,
    ) -> Delivery:
        """Hand the message to the producer; raises `DependencyUnavailable` when it cannot."""
        try:
            await self._start()
            delivery: Delivery = await self._producer.send(
                topic,
                value,
                key=key,
                partition=partition,
                headers=[(name, text.encode()) for name, text in (headers or {}).items()],
            )
        except (KafkaError, OSError, TimeoutError) as exc:
            raise DependencyUnavailable("kafka", type(exc).__name__) from exc
        return delivery

    async def _start(self) -> None:
        if self._started:
            return
        async with self._starting:
            if not self._started:
                await self._producer.start()
                self._started = True

    async def stop(self) -> None:
        """Flush what was handed over and close (also a producer that never started)."""
        await self._producer.stop()
