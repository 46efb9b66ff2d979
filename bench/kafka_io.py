"""Kafka helpers for the benchmarks: topics, producing fast, following and counting what arrives."""

from __future__ import annotations

import asyncio
import sys
import time
import uuid
from abc import ABC, abstractmethod
from collections.abc import Sequence

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from bench.consumers import wait_for_assignment

Message = tuple[bytes, bytes]  # (key, value)


async def create_topics(bootstrap: str, *names: str, compacted: Sequence[str] = ()) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics(
            [
                NewTopic(
                    name,
                    num_partitions=1,
                    replication_factor=1,
                    topic_configs={"cleanup.policy": "compact"} if name in compacted else {},
                )
                for name in (*names, *compacted)
            ]
        )
    finally:
        await admin.close()


async def produce(bootstrap: str, topic: str, messages: Sequence[Message]) -> None:
    """Every message, as fast as the broker takes them (sends in flight, acks=all)."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=2)
    await producer.start()
    try:
        for start in range(0, len(messages), 2000):
            chunk = messages[start : start + 2000]
            futures = [await producer.send(topic, value, key=key) for key, value in chunk]
            await asyncio.gather(*futures)
    finally:
        await producer.stop()


class TopicWatch(ABC):
    """Hands every message of `topics`, from their beginning, to `take`, until `stop`."""

    def __init__(self, bootstrap: str, *topics: str, group_prefix: str) -> None:
        self._consumer = AIOKafkaConsumer(
            *topics,
            bootstrap_servers=bootstrap,
            group_id=f"{group_prefix}-{uuid.uuid4().hex[:8]}",
            auto_offset_reset="earliest",
            fetch_max_wait_ms=5,
        )
        self._task: asyncio.Task[None] | None = None

    @abstractmethod
    def take(self, record: ConsumerRecord[bytes, bytes]) -> None:
        """What a watch does with each message (its subclass says)."""

    async def start(self) -> None:
        await self._consumer.start()
        self._task = asyncio.create_task(self._run())
        await wait_for_assignment(self._consumer)

    async def _run(self) -> None:
        while True:
            try:
                async for record in self._consumer:
                    self.take(record)
            except Exception as exc:
                # a watch that ended silently would leave the bench waiting for answers
                # that did arrive; said, and the watch goes on from where it stood
                print(
                    f"topic watch: {type(exc).__name__}: {exc}; going on",
                    file=sys.stderr,
                    flush=True,
                )
                await asyncio.sleep(0.2)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
        await self._consumer.stop()


class ArrivalCounter:
    """Counts the messages that arrive on a topic, from its beginning."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        self.count = 0
        self._consumer = AIOKafkaConsumer(
            topic,
            bootstrap_servers=bootstrap,
            group_id=f"bench-count-{uuid.uuid4().hex[:8]}",
            auto_offset_reset="earliest",
            fetch_max_wait_ms=5,
        )
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await self._consumer.start()
        await wait_for_assignment(self._consumer)
        self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        while True:
            batches = await self._consumer.getmany(timeout_ms=50, max_records=5000)
            self.count += sum(len(batch) for batch in batches.values())

    async def reached(self, count: int, timeout_s: float) -> float:
        """Wait until `count` messages arrived; returns the time (perf_counter) it happened."""
        deadline = time.monotonic() + timeout_s
        while self.count < count:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.count} of {count} messages arrived")
            await asyncio.sleep(0.005)
        return time.perf_counter()

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
        await self._consumer.stop()
