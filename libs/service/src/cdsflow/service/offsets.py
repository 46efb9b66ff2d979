"""Which offsets of a batch may be committed, and where each partition is consumed again.

A record is finished once the service is done with it (the reasoner: its recommendation
published, or the event ignored or dead-lettered; the writeback: its write-back in the EHR,
skipped or dead-lettered). One that was handed back (a dependency was down), or left for the
next batch, is not, and neither is any record after it in its partition: the commit stops
before the first such record, and the partition is consumed again from there. Finished
records after that point are remembered (`FinishedOffsets`), so they are not handled twice
when they come again.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from aiokafka import TopicPartition

from cdsflow.service.patient_lanes import Record


@dataclass(frozen=True)
class CommitPlan:
    # the next offset to consume, per partition: what is committed
    commit: dict[TopicPartition, int]
    # partitions to consume again from the given offset (the first record not finished)
    rewind: dict[TopicPartition, int]


def commit_plan(records: Iterable[Record], handed_back: Iterable[Record]) -> CommitPlan:
    """Per partition: commit up to the first record handed back (or past the last record)."""
    commit: dict[TopicPartition, int] = {}
    for record in records:
        partition = TopicPartition(record.topic, record.partition)
        commit[partition] = max(commit.get(partition, 0), record.offset + 1)
    rewind: dict[TopicPartition, int] = {}
    for record in handed_back:
        partition = TopicPartition(record.topic, record.partition)
        rewind[partition] = min(rewind.get(partition, record.offset), record.offset)
    return CommitPlan(commit={**commit, **rewind}, rewind=rewind)


@dataclass
class FinishedOffsets:
    """Offsets finished beyond a partition's committed offset (after a rewind), so that a
    record consumed again is skipped instead of handled twice. Bounded by the batch size:
    only records of the batch that rewound are kept, and they are dropped once committed."""

    _finished: dict[TopicPartition, set[int]] = field(default_factory=dict)

    def is_finished(self, record: Record) -> bool:
        offsets = self._finished.get(TopicPartition(record.topic, record.partition))
        return offsets is not None and record.offset in offsets

    def remember(self, plan: CommitPlan, finished: Iterable[Record]) -> None:
        """Keep the finished records beyond each partition's new committed offset; forget
        everything below it."""
        for partition, committed in plan.commit.items():
            kept = {o for o in self._finished.get(partition, set()) if o >= committed}
            if kept:
                self._finished[partition] = kept
            else:
                self._finished.pop(partition, None)
        for record in finished:
            partition = TopicPartition(record.topic, record.partition)
            if record.offset >= plan.commit.get(partition, 0):
                self._finished.setdefault(partition, set()).add(record.offset)
