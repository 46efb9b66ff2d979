"""The patients' kept readings on a compacted changelog topic, so they survive a restart or a
rebalance without asking the EHR again.

After each batch, before its offsets are committed, every patient whose readings changed is
written to the changelog: key = the patient key, on the same partition number as the
clinical events it came from, value = a JSON snapshot of the patient's kept data (the
reasoner's own state, read only by the reasoner). Compaction keeps the latest snapshot per
patient. When partitions are assigned, the changelog's same partitions are read from the
start to their end before the first event is consumed; the latest snapshot per patient wins.

The snapshot holds the patient reference, birth date and values: it is patient data, like the
clinical events topic itself, and is never logged.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Callable, Iterable
from datetime import date
from typing import Any

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from cdsflow.reasoner.deliveries import Deliveries
from cdsflow.reasoner.patient_contexts import ContextSnapshot, PatientContexts
from cdsflow.service import KafkaConnection

log = logging.getLogger("cdsflow.reasoner.changelog")

# 2: per data feed of each adapter (1 held the vital signs of the one model it knew; a
# snapshot of another version is not read, so that patient is asked of the EHR again)
SNAPSHOT_VERSION = 2


def snapshot_body(snapshot: ContextSnapshot) -> bytes:
    """`{"v": 2, "patient": "Patient/x", "born": "1950-02-01" | null,
    "feeds": {"<adapter id>/<feed>": [[at, value, code, "Observation/y"], ...], ...}}`."""
    body = {
        "v": SNAPSHOT_VERSION,
        "patient": snapshot.patient_reference,
        "born": snapshot.birth_date.isoformat() if snapshot.birth_date is not None else None,
        "feeds": {key: [list(r) for r in stored] for key, stored in snapshot.feeds.items()},
    }
    return json.dumps(body, separators=(",", ":")).encode()


def parse_snapshot(partition: int, patient_key: str, body: bytes) -> ContextSnapshot | None:
    """The snapshot, or None for one this reasoner cannot read (another version, damaged):
    that patient is then asked of the EHR again, as a patient first seen."""
    try:
        parsed: Any = json.loads(body)
        if parsed.get("v") != SNAPSHOT_VERSION or not isinstance(parsed.get("patient"), str):
            return None
        born = parsed.get("born")
        feeds = {
            str(key): tuple(
                (
                    float(at) if at is not None else None,
                    float(value),
                    str(code),
                    str(reference),
                )
                for at, value, code, reference in stored
            )
            for key, stored in parsed["feeds"].items()
        }
        birth_date = date.fromisoformat(born) if isinstance(born, str) else None
    except (ValueError, TypeError, KeyError, AttributeError):
        return None
    return ContextSnapshot(partition, patient_key, parsed["patient"], birth_date, feeds)


class ContextChangelog:
    def __init__(
        self,
        deliveries: Deliveries,
        contexts: PatientContexts,
        *,
        kafka: KafkaConnection,
        topic: str,
        events_topic: str,
        replication_factor: int = 1,
    ) -> None:
        self._deliveries = deliveries
        self._contexts = contexts
        self._kafka = kafka
        self.topic = topic
        self._events_topic = events_topic
        self._replication_factor = replication_factor
        self._topic_ready = False

    async def write_changed(self) -> int:
        """Write the snapshots of the patients changed since the last write; raises what the
        broker raises (the batch is then not committed, and they are written next time)."""
        snapshots = self._contexts.take_changed()
        try:
            sent = [
                await self._deliveries.send(
                    self.topic, snapshot_body(s), key=s.patient_key.encode(), partition=s.partition
                )
                for s in snapshots
            ]
            await asyncio.gather(*sent)
        except BaseException:
            self._contexts.mark_changed(snapshots)
            raise
        return len(snapshots)

    async def restore(self, partitions: Iterable[int]) -> int:
        """Read the changelog's `partitions` from the start to their current end into the
        contexts; returns how many snapshots were read."""
        wanted = [TopicPartition(self.topic, p) for p in sorted(set(partitions))]
        if not wanted:
            return 0
        await self._ensure_topic(max(p.partition for p in wanted) + 1)
        consumer = AIOKafkaConsumer(
            **self._kafka.client_options(), enable_auto_commit=False, fetch_max_wait_ms=5
        )
        await consumer.start()
        restored = 0
        try:
            consumer.assign(wanted)
            await consumer.seek_to_beginning(*wanted)
            ends = await consumer.end_offsets(wanted)
            remaining = [p for p in wanted if ends[p] > 0]
            while remaining:
                fetched = await consumer.getmany(*remaining, timeout_ms=200, max_records=5000)
                for partition, records in fetched.items():
                    for record in records:
                        restored += self._apply(partition.partition, record.key, record.value)
                remaining = [p for p in remaining if await consumer.position(p) < ends[p]]
        finally:
            await consumer.stop()
        return restored

    def _apply(self, partition: int, key: bytes | None, value: bytes | None) -> int:
        if key is None or value is None:
            return 0
        snapshot = parse_snapshot(partition, key.decode(errors="replace"), value)
        if snapshot is None:
            return 0
        self._contexts.restore(snapshot)
        return 1

    async def _ensure_topic(self, at_least_partitions: int) -> None:
        """Create the compacted changelog, with as many partitions as the events topic."""
        if self._topic_ready:
            return
        admin = AIOKafkaAdminClient(**self._kafka.client_options())
        await admin.start()
        try:
            metadata = await admin.describe_topics([self._events_topic])
            events_partitions = len(metadata[0].get("partitions") or []) if metadata else 0
            partitions = max(events_partitions, at_least_partitions, 1)
            await admin.create_topics(
                [
                    NewTopic(
                        self.topic,
                        num_partitions=partitions,
                        replication_factor=self._replication_factor,
                        topic_configs={"cleanup.policy": "compact"},
                    )
                ]
            )
        except TopicAlreadyExistsError:
            pass
        finally:
            await admin.close()
        self._topic_ready = True


class RestoreOnAssignment(ConsumerRebalanceListener):  # type: ignore[misc]
    """Keeps the contexts to the partitions this replica owns: a partition that went elsewhere
    is dropped, one newly assigned is restored from the changelog. aiokafka may fetch while
    this runs, so the batch handler waits (`wait_restored`) until its partitions are done."""

    def __init__(
        self,
        changelog: ContextChangelog,
        contexts: PatientContexts,
        events_topic: str,
        on_restored: Callable[[int], None],
    ) -> None:
        self._changelog = changelog
        self._contexts = contexts
        self._events_topic = events_topic
        self._on_restored = on_restored
        self._held: set[int] = set()
        self._restored: set[int] = set()
        self._progress = asyncio.Event()

    async def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        return None  # kept until the next assignment says whether they stay here

    async def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        owned = {tp.partition for tp in assigned if tp.topic == self._events_topic}
        self._contexts.drop_partitions(self._held - owned)
        new = owned - self._held
        self._held = owned
        self._restored &= owned
        if new:
            try:
                restored = await self._changelog.restore(new)
            except Exception as exc:  # the patients are asked of the EHR again, as first seen
                log.warning(
                    "patient contexts not restored", extra={"error_type": type(exc).__name__}
                )
            else:
                self._on_restored(restored)
                log.info("patient contexts restored", extra={"snapshots": restored})
        self._restored |= owned
        self._progress.set()

    async def wait_restored(self, partitions: Iterable[int], timeout_s: float = 60) -> None:
        """Return once every one of `partitions` was restored since it was assigned here (or
        after `timeout_s`, for a partition that went elsewhere meanwhile: its patients are
        then misses, and its commit fails)."""
        wanted = set(partitions)
        deadline = asyncio.get_running_loop().time() + timeout_s
        while not wanted <= self._restored and asyncio.get_running_loop().time() < deadline:
            self._progress.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._progress.wait(), timeout=1.0)
