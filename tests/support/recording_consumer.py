"""What a lane batch uses of an AIOKafkaConsumer (commit and seek), recorded: for unit tests of
`cdsflow.service.LaneBatches` and the services that consume through it."""

from __future__ import annotations

from typing import Any, cast

from aiokafka import AIOKafkaConsumer, TopicPartition


class RecordingConsumer:
    def __init__(self) -> None:
        self.commits: list[dict[TopicPartition, int]] = []
        self.seeks: list[tuple[TopicPartition, int]] = []

    async def commit(self, offsets: dict[TopicPartition, int]) -> None:
        self.commits.append(dict(offsets))

    def seek(self, partition: TopicPartition, offset: int) -> None:
        self.seeks.append((partition, offset))

    @property
    def as_kafka(self) -> AIOKafkaConsumer:
        return cast(AIOKafkaConsumer, cast(Any, self))
