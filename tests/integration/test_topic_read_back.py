"""`TopicReadBack` on demand, on the real broker (Tansu): after the read-back at start, a
partition is read only while it is demanded. A second read-back of the same topic that follows
every partition all the time is the control: what it has read is on the broker, so what the
on-demand one has not read by then, it did not fetch.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable

import pytest
from aiokafka import AIOKafkaProducer, ConsumerRecord

from cdsflow.service import KafkaConnection, TopicReadBack
from tests.conftest import KafkaEndpoint
from tests.support.polling import eventually
from tests.support.topic_partitions import create_topic

pytestmark = pytest.mark.integration


class Reader:
    """A read-back of the topic and the values it handed over, per partition."""

    def __init__(self, topic: str, bootstrap: str, *, on_demand: bool) -> None:
        self.values: dict[int, list[bytes]] = {0: [], 1: []}
        self.read_back = TopicReadBack(
            (topic,),
            KafkaConnection(bootstrap),
            3_600.0,
            self._take,
            client_id=f"test-read-back-{'on-demand' if on_demand else 'following'}",
            fetch_max_wait_ms=100,
            on_demand=on_demand,
        )

    def ends_with(self, partition: int, value: str) -> bool:
        return self.values[partition][-1:] == [value.encode()]

    def _take(self, record: ConsumerRecord[bytes, bytes]) -> None:
        assert record.value is not None
        self.values[record.partition].append(record.value)


async def until(condition: Callable[[], bool]) -> None:
    async def probe() -> bool:
        return condition()

    await eventually(probe, timeout_s=15, what="records read")


@pytest.fixture
async def topic(kafka: KafkaEndpoint) -> str:
    name = f"test.read-back.{uuid.uuid4().hex[:8]}"
    await create_topic(kafka.bootstrap, name, partitions=2)
    return name


@pytest.fixture
async def producer(kafka: KafkaEndpoint) -> AsyncIterator[AIOKafkaProducer]:
    producer = AIOKafkaProducer(bootstrap_servers=kafka.bootstrap, acks="all")
    await producer.start()
    try:
        yield producer
    finally:
        await producer.stop()


async def test_after_the_start_a_partition_is_read_only_while_demanded(
    kafka: KafkaEndpoint, topic: str, producer: AIOKafkaProducer
) -> None:
    async def send(partition: int, value: str) -> None:
        await producer.send_and_wait(topic, value.encode(), partition=partition)

    await send(0, "before-0")
    await send(1, "before-1")
    on_demand = Reader(topic, kafka.bootstrap, on_demand=True)
    control = Reader(topic, kafka.bootstrap, on_demand=False)
    on_demand.read_back.start()
    control.read_back.start()
    try:
        # the read-back at start reads every partition, demanded or not
        assert await on_demand.read_back.wait_caught_up(30.0)
        assert await control.read_back.wait_caught_up(30.0)
        assert on_demand.values == {0: [b"before-0"], 1: [b"before-1"]}

        # nothing demanded: the control reads what comes next, the on-demand one does not
        await send(0, "idle-0")
        await send(1, "idle-1")
        await until(lambda: control.ends_with(0, "idle-0"))
        await until(lambda: control.ends_with(1, "idle-1"))
        assert on_demand.values == {0: [b"before-0"], 1: [b"before-1"]}

        # partition 0 demanded: read from where it was left, and what comes while demanded
        on_demand.read_back.demand(topic, 0)
        await until(lambda: on_demand.values[0] == [b"before-0", b"idle-0"])
        await send(0, "demanded-0")
        await send(1, "not-demanded-1")
        await until(lambda: on_demand.ends_with(0, "demanded-0"))
        await until(lambda: control.ends_with(1, "not-demanded-1"))
        assert on_demand.values[1] == [b"before-1"]

        # released: nothing more from it until the next demand
        on_demand.read_back.release(topic, 0)
        await send(0, "released-0")
        await until(lambda: control.ends_with(0, "released-0"))
        assert on_demand.values[0] == [b"before-0", b"idle-0", b"demanded-0"]
        on_demand.read_back.demand(topic, 1)
        await until(lambda: on_demand.ends_with(1, "not-demanded-1"))
        assert on_demand.values[1] == [b"before-1", b"idle-1", b"not-demanded-1"]
        assert on_demand.values[0] == [b"before-0", b"idle-0", b"demanded-0"]
    finally:
        await on_demand.read_back.stop()
        await control.read_back.stop()
