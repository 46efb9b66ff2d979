"""The tests' reading of where a partition ends (`tests.support.topic_partitions`), on the
embedded Tansu, whose answered end offset stops at the last batch's first record."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from aiokafka import AIOKafkaProducer, TopicPartition

from tests.conftest import KafkaEndpoint
from tests.support.topic_partitions import create_topic, true_end_offsets

pytestmark = pytest.mark.integration


async def test_the_end_is_after_the_last_record_of_the_last_batch(kafka: KafkaEndpoint) -> None:
    topic = f"test.end-offsets.{uuid.uuid4().hex[:8]}"
    await create_topic(kafka.bootstrap, topic, partitions=2)
    producer = AIOKafkaProducer(bootstrap_servers=kafka.bootstrap, linger_ms=50)
    await producer.start()
    try:
        # one batch of three records on partition 0, after one batch of one; none on 1
        await producer.send_and_wait(topic, b"first", partition=0)
        sent = [await producer.send(topic, b"%d" % n, partition=0) for n in range(3)]
        await asyncio.gather(*sent)
    finally:
        await producer.stop()

    ends = await true_end_offsets(
        kafka.bootstrap, [TopicPartition(topic, 0), TopicPartition(topic, 1)]
    )

    assert ends == {TopicPartition(topic, 0): 4, TopicPartition(topic, 1): 0}
