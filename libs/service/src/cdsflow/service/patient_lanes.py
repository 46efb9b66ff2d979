"""A batch of records split into patient lanes: one patient's records stay in order, different
patients' records may be handled at the same time.

Every cdsflow topic is keyed by the patient key (clinical events by the listener,
recommendations by the reasoner), so Kafka keeps one patient's records in order within a
partition; a lane is the records of one (partition, key), in offset order. Records without a
key share one lane per partition, so they too stay in order.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, TypeAlias

from aiokafka import ConsumerRecord

Record: TypeAlias = ConsumerRecord[bytes, bytes]


def patient_lanes(records: Iterable[Record]) -> list[list[Record]]:
    """The records grouped by (topic, partition, key), each lane in offset order, the lanes in
    the order of their first record."""
    lanes: dict[tuple[str, int, Any], list[Record]] = {}
    for record in records:
        lanes.setdefault((record.topic, record.partition, record.key), []).append(record)
    for lane in lanes.values():
        lane.sort(key=lambda record: record.offset)
    return list(lanes.values())
