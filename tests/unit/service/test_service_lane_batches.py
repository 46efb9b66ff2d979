"""A batch: patients at the same time, each patient in order; only what finished is committed
(shared by the reasoner and the writeback)."""

from __future__ import annotations

import asyncio
from typing import Any

from aiokafka import ConsumerRecord, TopicPartition

from cdsflow.service import (
    FinishedOffsets,
    LaneBatches,
    Record,
    RecordOutcome,
    commit_plan,
    patient_lanes,
)
from tests.support.recording_consumer import RecordingConsumer

TOPIC = "events"


def record(offset: int, key: bytes | None, partition: int = 0) -> Record:
    return ConsumerRecord(
        topic=TOPIC,
        partition=partition,
        offset=offset,
        timestamp=0,
        timestamp_type=0,
        key=key,
        value=b"%d" % offset,
        checksum=None,
        serialized_key_size=0,
        serialized_value_size=0,
        headers=(),
    )


def test_lanes_keep_each_patients_records_in_offset_order() -> None:
    records = [record(0, b"a"), record(1, b"b"), record(2, b"a"), record(3, b"a", partition=1)]
    lanes = patient_lanes(reversed(records))
    offsets = sorted([[(r.partition, r.offset) for r in lane] for lane in lanes])
    assert offsets == [[(0, 0), (0, 2)], [(0, 1)], [(1, 3)]]


def test_the_commit_stops_at_the_first_record_handed_back_in_each_partition() -> None:
    records = [record(o, b"k%d" % (o % 3)) for o in range(10)]
    records += [record(o, b"x", partition=1) for o in range(4)]
    plan = commit_plan(records, handed_back=[records[7], records[4], records[5]])
    p0, p1 = TopicPartition(TOPIC, 0), TopicPartition(TOPIC, 1)
    assert plan.commit == {p0: 4, p1: 4}
    assert plan.rewind == {p0: 4}


def test_finished_records_beyond_the_commit_are_skipped_once_consumed_again() -> None:
    records = [record(o, b"k") for o in range(5)]
    plan = commit_plan(records, handed_back=[records[2]])
    finished = FinishedOffsets()
    finished.remember(plan, [records[0], records[1], records[3], records[4]])
    assert [finished.is_finished(r) for r in records] == [False, False, False, True, True]
    # once committed past them, they are forgotten
    finished.remember(commit_plan(records[2:], handed_back=[]), records[2:])
    assert not any(finished.is_finished(r) for r in records)


async def test_patients_run_at_once_and_each_patients_events_in_order() -> None:
    seen: list[tuple[bytes | None, int]] = []
    in_flight = 0
    most_in_flight = 0

    async def handle(rec: Record) -> RecordOutcome:
        nonlocal in_flight, most_in_flight
        in_flight += 1
        most_in_flight = max(most_in_flight, in_flight)
        await asyncio.sleep(0.01)
        seen.append((rec.key, rec.offset))
        in_flight -= 1
        return RecordOutcome.FINISHED

    records = [record(o, b"p%d" % (o % 8)) for o in range(64)]
    consumer = RecordingConsumer()
    batches = LaneBatches(handle, max_concurrent_patients=4, pause_max_s=0)
    await batches.handle(records, consumer.as_kafka)

    assert most_in_flight == 4
    for key in {r.key for r in records}:
        offsets = [offset for k, offset in seen if k == key]
        assert offsets == sorted(offsets)
        assert len(offsets) == 8
    assert consumer.commits == [{TopicPartition(TOPIC, 0): 64}]
    assert consumer.seeks == []


async def test_an_outage_hands_back_the_rest_commits_nothing_after_it_and_rewinds() -> None:
    handled: list[int] = []
    down = True

    async def handle(rec: Record) -> RecordOutcome:
        handled.append(rec.offset)
        if rec.key == b"b" and down:
            return RecordOutcome.HANDED_BACK
        return RecordOutcome.FINISHED

    records = [record(0, b"a"), record(1, b"b"), record(2, b"a"), record(3, b"b")]
    consumer = RecordingConsumer()
    before_commit: list[list[int]] = []

    async def flush(finished: Any) -> None:
        before_commit.append(sorted(r.offset for r in finished))

    batches = LaneBatches(handle, max_concurrent_patients=1, pause_max_s=0.01, before_commit=flush)
    await batches.handle(records, consumer.as_kafka)

    partition = TopicPartition(TOPIC, 0)
    # one lane at a time: "a" finished both, "b" failed at offset 1 and its 3 never started
    assert handled == [0, 2, 1]
    assert before_commit == [[0, 2]]
    assert consumer.commits == [{partition: 1}]
    assert consumer.seeks == [(partition, 1)]

    # consumed again from offset 1: the finished offset 2 is not handled twice
    down = False
    handled.clear()
    await batches.handle(records[1:], consumer.as_kafka)
    assert handled == [1, 3]
    assert consumer.commits[-1] == {partition: 4}


async def test_records_not_started_in_time_are_left_for_the_next_batch_without_a_pause() -> None:
    handled: list[int] = []

    async def handle(rec: Record) -> RecordOutcome:
        handled.append(rec.offset)
        await asyncio.sleep(0.05)
        return RecordOutcome.FINISHED

    records = [record(0, b"a"), record(1, b"a"), record(2, b"b", partition=1)]
    consumer = RecordingConsumer()
    # a pause would be far longer than the test's timeout
    batches = LaneBatches(
        handle, max_concurrent_patients=2, pause_max_s=3600, first_pause_s=3600, start_within_s=0.01
    )
    await batches.handle(records, consumer.as_kafka)

    p0, p1 = TopicPartition(TOPIC, 0), TopicPartition(TOPIC, 1)
    # each lane started its first record; "a"'s second came after the deadline
    assert sorted(handled) == [0, 2]
    assert consumer.commits == [{p0: 1, p1: 3}]
    assert consumer.seeks == [(p0, 1)]

    await batches.handle(records[1:2], consumer.as_kafka)
    assert sorted(handled) == [0, 1, 2]
    assert consumer.commits[-1] == {p0: 2}


async def test_a_failed_delivery_is_not_committed_and_is_consumed_again() -> None:
    loop = asyncio.get_running_loop()

    async def handle(rec: Record) -> asyncio.Future[None]:
        delivery: asyncio.Future[None] = loop.create_future()
        if rec.offset == 1:
            delivery.set_exception(ConnectionError("broker away"))
        else:
            delivery.set_result(None)
        return delivery

    records = [record(o, b"k%d" % o) for o in range(3)]
    consumer = RecordingConsumer()
    batches = LaneBatches(handle, max_concurrent_patients=3, pause_max_s=0.01)
    await batches.handle(records, consumer.as_kafka)

    partition = TopicPartition(TOPIC, 0)
    assert consumer.commits == [{partition: 1}]
    assert consumer.seeks == [(partition, 1)]
