"""Which partitions a topic has, asked of the broker itself, and the records they hold.

Counting what a topic holds by its end offsets is wrong on the embedded Tansu: it answers a
partition's end offset as its last batch's base offset + 1, so three records produced in one
batch (offsets 0, 1, 2) read as an end offset of 1 (shown on Tansu 0.6.0). A listener test
that counted its topic that way failed whenever its three events went out in one batch. The
records are read instead (`records_to_end` reads until each partition's position reaches the
end offset, which reading the last batch does, whole), and where a partition really ends is
read too (`true_end_offsets`: the last batch, read whole), so that a consumer group is not
called caught up while its last batch is only partly committed. The partitions come from the
broker's own description of the topic, not from a consumer's metadata cache (which
`consumer.topics()` does not refresh).
"""

from __future__ import annotations

import asyncio

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic


async def create_topic(bootstrap: str, topic: str, partitions: int) -> None:
    """A topic of `partitions` partitions (replication 1, the embedded broker's)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics(
            [NewTopic(topic, num_partitions=partitions, replication_factor=1)]
        )
    finally:
        await admin.close()


async def partitions_of(bootstrap: str, topic: str) -> list[TopicPartition]:
    """Every partition of `topic`, in order; none when the topic does not exist."""
    return await _described(bootstrap, only=topic)


async def partitions_of_every_topic(bootstrap: str) -> list[TopicPartition]:
    """Every partition of every topic on the broker, internal topics included."""
    return await _described(bootstrap, only=None)


async def _described(bootstrap: str, only: str | None) -> list[TopicPartition]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        # only topics that exist are described: a broker that creates a topic on its first
        # mention would create one named in a describe
        existing = sorted(await admin.list_topics())
        wanted = [topic for topic in existing if only is None or topic == only]
        described = await admin.describe_topics(wanted) if wanted else []
    finally:
        await admin.close()
    return sorted(
        TopicPartition(found["topic"], partition["partition"])
        for found in described
        if not found["error_code"]
        for partition in found["partitions"]
    )


async def records_to_end(
    bootstrap: str, partitions: list[TopicPartition], timeout_s: float = 60
) -> list[ConsumerRecord[bytes, bytes]]:
    """Every record of `partitions` from their beginning up to the end offsets they have now
    (no group: nothing committed)."""
    if not partitions:
        return []
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, enable_auto_commit=False, fetch_max_wait_ms=5
    )
    await consumer.start()
    try:
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        ends = await consumer.end_offsets(partitions)
        records: list[ConsumerRecord[bytes, bytes]] = []
        async with asyncio.timeout(timeout_s):
            while [tp for tp in partitions if await consumer.position(tp) < ends[tp]]:
                batch = await consumer.getmany(*partitions, timeout_ms=200)
                records += [record for found in batch.values() for record in found]
        return records
    finally:
        await consumer.stop()


async def true_end_offsets(
    bootstrap: str, partitions: list[TopicPartition], timeout_s: float = 30
) -> dict[TopicPartition, int]:
    """Each partition's end offset as Kafka means it (its last record's offset + 1), also on
    Tansu: the last batch, from the end offset the broker answers less one (that batch's base
    offset there), is read whole."""
    if not partitions:
        return {}
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, enable_auto_commit=False, fetch_max_wait_ms=5
    )
    await consumer.start()
    try:
        answered = await consumer.end_offsets(partitions)
        ends = dict(answered)
        tails = [tp for tp in partitions if answered[tp] > 0]
        consumer.assign(tails)
        for tp in tails:
            consumer.seek(tp, answered[tp] - 1)
        async with asyncio.timeout(timeout_s):
            waiting = set(tails)
            while waiting:
                batch = await consumer.getmany(*waiting, timeout_ms=200)
                for tp, records in batch.items():
                    if records:
                        ends[tp] = max(ends[tp], records[-1].offset + 1)
                        waiting.discard(tp)
        return ends
    finally:
        await consumer.stop()
