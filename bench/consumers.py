"""Kafka consumer helpers for the benchmark."""

from __future__ import annotations

import asyncio
import time

from aiokafka import AIOKafkaConsumer


async def wait_for_assignment(consumer: AIOKafkaConsumer, timeout_s: float = 60) -> None:
    """Block until the group join gave this consumer partitions (Tansu: ~5 s)."""
    deadline = time.monotonic() + timeout_s
    while not consumer.assignment():
        if time.monotonic() > deadline:
            raise TimeoutError("the benchmark consumer got no partitions")
        await asyncio.sleep(0.05)
