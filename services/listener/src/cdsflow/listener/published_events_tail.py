"""Follows the clinical-events topic into `PublishedEvents`: on start from the window's
beginning, then as other replicas publish.

A plain aiokafka consumer subscribed with no group: every replica reads every partition (a
partition or the topic created later is followed from the next metadata refresh) and commits
nothing. It seeks each partition to the window's start by timestamp where the broker supports
it (Apache Kafka does; the embedded Tansu broker answers offset 0, so it reads from the start)
and skips older records either way. It is caught up once it has read to the end offsets it saw
when it (re)connected.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.errors import KafkaError
from google.protobuf.message import DecodeError

from cdsflow.contracts import ClinicalEvent
from cdsflow.listener.published_events import PublishedEvents

log = logging.getLogger("cdsflow.listener")

_FETCH_TIMEOUT_MS = 200
_RETRY_DELAY_S = 1.0
# how soon partitions created after start are followed
_METADATA_MAX_AGE_MS = 5_000
_NO_TOPIC_WAIT_S = 0.5


class PublishedEventsTail:
    """Keeps `published` in step with the topic until `stop`."""

    def __init__(
        self,
        published: PublishedEvents,
        bootstrap: str,
        topic: str,
        *,
        fetch_max_wait_ms: int = 5,
        request_timeout_ms: int = 5_000,
        max_record_bytes: int = 1_048_576,
    ) -> None:
        self._published = published
        self._bootstrap = bootstrap
        self._topic = topic
        self._fetch_max_wait_ms = fetch_max_wait_ms
        self._request_timeout_ms = request_timeout_ms
        self._max_record_bytes = max_record_bytes
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._follow_while_running())

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
                self._published.caught_up = False
                log.warning(
                    "cannot read back the clinical-events topic; retrying",
                    extra={"error_type": type(exc).__name__},
                )
                await asyncio.sleep(_RETRY_DELAY_S)

    async def _follow(self) -> None:
        consumer = AIOKafkaConsumer(
            self._topic,  # subscribed without a group: every partition, new ones included
            bootstrap_servers=self._bootstrap,
            group_id=None,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            metadata_max_age_ms=_METADATA_MAX_AGE_MS,
            fetch_max_wait_ms=self._fetch_max_wait_ms,
            request_timeout_ms=self._request_timeout_ms,
            max_partition_fetch_bytes=self._max_record_bytes,
            client_id="cdsflow-listener-dedupe",
        )
        try:
            await consumer.start()
            followed: set[TopicPartition] = set()
            ends: dict[TopicPartition, int] = {}
            while True:
                added = consumer.assignment() - followed
                if added:
                    followed |= added
                    ends.update(await consumer.end_offsets(list(added)))
                    await self._seek_to_window(consumer, added)
                if followed:
                    batches = await consumer.getmany(timeout_ms=_FETCH_TIMEOUT_MS)
                    for records in batches.values():
                        for record in records:
                            self._remember(record)
                if not self._published.caught_up and await _reached(consumer, ends):
                    self._published.caught_up = True
                    log.info(
                        "clinical-events topic read back",
                        extra={"events_remembered": len(self._published)},
                    )
                if not followed:  # no topic yet: its partitions come with a metadata refresh
                    await asyncio.sleep(_NO_TOPIC_WAIT_S)
        finally:
            await consumer.stop()

    async def _seek_to_window(
        self, consumer: AIOKafkaConsumer, partitions: set[TopicPartition]
    ) -> None:
        """Start each partition at the first record within the window (where the broker
        finds one by time; otherwise at its start, older records being skipped)."""
        since_ms = round((time.time() - self._published.window_s) * 1000)
        starts = await consumer.offsets_for_times(dict.fromkeys(partitions, since_ms))
        ends = await consumer.end_offsets(list(partitions))
        for partition in partitions:
            start = starts.get(partition)
            consumer.seek(partition, ends[partition] if start is None else start.offset)

    def _remember(self, record: ConsumerRecord[bytes, bytes]) -> None:
        if record.value is None:
            return
        try:
            event = ClinicalEvent.FromString(record.value)
        except DecodeError:
            return  # not ours to judge here; the reasoner dead-letters it
        if event.event_id:
            self._published.remember(event.event_id, record.timestamp / 1000)


async def _reached(consumer: AIOKafkaConsumer, ends: dict[TopicPartition, int]) -> bool:
    """Whether every partition's position is at or past the end offset noted for it."""
    for partition, end in ends.items():
        if await consumer.position(partition) < end:
            return False
    return True
