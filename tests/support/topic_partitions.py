"""Which partitions a topic has, asked of the broker itself.

A consumer's `partitions_for_topic` answers from the consumer's own metadata cache, which
`consumer.topics()` does not refresh (aiokafka fetches that answer into a separate object).
Tests that count what a topic holds ask the broker for the topics' description instead.
"""

from __future__ import annotations

from aiokafka import TopicPartition
from aiokafka.admin import AIOKafkaAdminClient


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
