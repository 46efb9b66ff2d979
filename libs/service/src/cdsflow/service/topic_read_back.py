"""Reading topics back on start, then following them: the shared state of every replica.

A plain aiokafka consumer subscribed with no group: every replica reads every partition (a
partition or topic created later is followed from the next metadata refresh) and commits
nothing. Each partition starts at its first record within the window where the broker finds
one by time (Apache Kafka does; the embedded Tansu broker answers offset 0, so it reads from
the start and the caller drops what is too old). It is caught up once every partition of the
topics has been read to the end offset it had when this replica (re)connected; a topic that
does not exist yet counts as read, one whose partitions are not assigned yet does not.

The listener's dedupe memory (the events already published) and the writeback's cards (the
latest recommendations) are built this way.

On demand (`on_demand=True`): once caught up, every partition is paused, and a partition is
read only while someone `demand`s it, until `release`. The writeback's hook token claims read
this way: a claim needs its partition read up to its own offset, which is on the broker by the
time the claim is acknowledged, so the fetch returns at once, whatever the fetch wait, and an
idle replica sends no fetches at all (a broker that holds a fetch for its whole wait, as the
embedded Tansu does, would otherwise need a short wait, and so a fetch every few
milliseconds, to answer a claim quickly). `release` from the record handler takes effect
before the next fetch is sent: the records of one fetch are handed over without a pause.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Sequence

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.errors import KafkaError

from cdsflow.service.kafka_security import KafkaConnection

log = logging.getLogger("cdsflow.service.kafka")

_FETCH_TIMEOUT_MS = 200
_RETRY_DELAY_S = 1.0
# how soon partitions (or the topic) created after start are followed
_METADATA_MAX_AGE_MS = 5_000
_NO_TOPIC_WAIT_S = 0.5

RecordHandler = Callable[[ConsumerRecord[bytes, bytes]], None]


class TopicReadBack:
    """Hands every record of `topics` within `window_s` to `on_record`, until `stop`.

    `on_caught_up` is called each time the read-back reaches the ends (after a start or a
    reconnection), `on_behind` each time the connection is lost."""

    def __init__(
        self,
        topics: Sequence[str],
        kafka: KafkaConnection,
        window_s: float,
        on_record: RecordHandler,
        *,
        client_id: str,
        on_caught_up: Callable[[], None] | None = None,
        on_behind: Callable[[], None] | None = None,
        fetch_max_wait_ms: int = 5,
        request_timeout_ms: int = 5_000,
        max_record_bytes: int = 1_048_576,
        on_demand: bool = False,
    ) -> None:
        self.topics = tuple(topics)
        self._kafka = kafka
        self._window_s = window_s
        self._on_record = on_record
        self._client_id = client_id
        self._on_caught_up = on_caught_up
        self._on_behind = on_behind
        self._fetch_max_wait_ms = fetch_max_wait_ms
        self._request_timeout_ms = request_timeout_ms
        self._max_record_bytes = max_record_bytes
        self._on_demand = on_demand
        self._demanded: set[TopicPartition] = set()
        self._consumer: AIOKafkaConsumer | None = None
        self._task: asyncio.Task[None] | None = None
        self._caught_up = asyncio.Event()

    @property
    def caught_up(self) -> bool:
        """Whether the current connection has read to the ends it saw when it connected."""
        return self._caught_up.is_set()

    async def wait_caught_up(self, timeout_s: float) -> bool:
        """Wait until caught up (True), or `timeout_s` passed (False)."""
        try:
            async with asyncio.timeout(timeout_s):
                await self._caught_up.wait()
        except TimeoutError:
            return False
        return True

    def start(self) -> None:
        self._task = asyncio.create_task(self._follow_while_running())

    def demand(self, topic: str, partition: int) -> None:
        """On demand: read this partition (from where it was left) until `release`."""
        tp = TopicPartition(topic, partition)
        self._demanded.add(tp)
        consumer = self._consumer
        if consumer is not None and self.caught_up and tp in consumer.assignment():
            consumer.resume(tp)

    def release(self, topic: str, partition: int) -> None:
        """On demand: stop reading this partition (until the next `demand`)."""
        tp = TopicPartition(topic, partition)
        self._demanded.discard(tp)
        consumer = self._consumer
        if consumer is not None and self.caught_up and tp in consumer.assignment():
            consumer.pause(tp)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _follow_while_running(self) -> None:
        while True:
            try:
                await self._follow()
            except (KafkaError, OSError, TimeoutError) as exc:
                self._caught_up.clear()
                if self._on_behind is not None:
                    self._on_behind()
                log.warning(
                    "cannot read the topics back; retrying",
                    extra={"topics": list(self.topics), "error_type": type(exc).__name__},
                )
                await asyncio.sleep(_RETRY_DELAY_S)

    async def _follow(self) -> None:
        consumer = AIOKafkaConsumer(
            *self.topics,
            **self._kafka.client_options(),
            group_id=None,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            metadata_max_age_ms=_METADATA_MAX_AGE_MS,
            fetch_max_wait_ms=self._fetch_max_wait_ms,
            request_timeout_ms=self._request_timeout_ms,
            max_partition_fetch_bytes=self._max_record_bytes,
            client_id=self._client_id,
        )
        try:
            await consumer.start()
            self._consumer = consumer
            followed: set[TopicPartition] = set()
            ends: dict[TopicPartition, int] = {}
            while True:
                added = consumer.assignment() - followed
                if added:
                    followed |= added
                    ends.update(await self._seek_to_window(consumer, added))
                    if self._on_demand and self.caught_up:
                        consumer.pause(*(added - self._demanded))
                if followed:
                    batches = await consumer.getmany(timeout_ms=_FETCH_TIMEOUT_MS)
                    for records in batches.values():
                        for record in records:
                            self._on_record(record)
                if not self.caught_up:
                    if await self._unassigned_topics(consumer, followed):
                        # a topic exists but its partitions are not assigned yet: not read back
                        await asyncio.sleep(_NO_TOPIC_WAIT_S)
                        continue
                    if await _reached(consumer, ends):
                        self._caught_up.set()
                        if self._on_demand:
                            consumer.pause(*(followed - self._demanded))
                        if self._on_caught_up is not None:
                            self._on_caught_up()
                if not followed:  # no topic yet: its partitions come with a metadata refresh
                    await asyncio.sleep(_NO_TOPIC_WAIT_S)
        finally:
            self._consumer = None
            await consumer.stop()

    async def _unassigned_topics(
        self, consumer: AIOKafkaConsumer, followed: set[TopicPartition]
    ) -> bool:
        existing = await consumer.topics()
        assigned = {partition.topic for partition in followed}
        return any(topic in existing and topic not in assigned for topic in self.topics)

    async def _seek_to_window(
        self, consumer: AIOKafkaConsumer, partitions: set[TopicPartition]
    ) -> dict[TopicPartition, int]:
        """Start each partition at its first record within the window (where the broker
        finds one by time; otherwise at its start); returns the partitions' end offsets."""
        since_ms = round((time.time() - self._window_s) * 1000)
        starts = await consumer.offsets_for_times(dict.fromkeys(partitions, since_ms))
        ends: dict[TopicPartition, int] = await consumer.end_offsets(list(partitions))
        for partition in partitions:
            start = starts.get(partition)
            consumer.seek(partition, ends[partition] if start is None else start.offset)
        return ends


async def _reached(consumer: AIOKafkaConsumer, ends: dict[TopicPartition, int]) -> bool:
    """Whether every partition's position is at or past the end offset noted for it."""
    for partition, end in ends.items():
        if await consumer.position(partition) < end:
            return False
    return True
