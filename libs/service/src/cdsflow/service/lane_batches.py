"""A batch of records from Kafka: patients at the same time, each patient in order.

The records of a batch are split into patient lanes (`patient_lanes`); up to
`max_concurrent_patients` lanes run at once, each handling its records one after the other.
Once every lane is done, the finished records are committed (`commit_plan`): up to, not past,
the first record of each partition that was not finished. A record is not finished when its
handler handed it back because a dependency was down (then consumption pauses, 0.2 s or
`first_pause_s`, doubling while the outage lasts, at most `pause_max_s`), or when its lane
had not reached it once the batch had run `start_within_s` (consumed again at once: a slow
dependency cannot hold a batch past Kafka's poll interval). Those partitions are rewound to
that record; records finished beyond it are remembered (`FinishedOffsets`) and not handled
again. Nothing is committed that was not finished, and nothing is lost.

The reasoner and the writeback consume this way; their handlers return a `RecordOutcome`, or
a delivery (a future) for what they publish without waiting, finished once it resolves.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from aiokafka import AIOKafkaConsumer
from aiokafka.errors import KafkaError

from cdsflow.service.offsets import FinishedOffsets, commit_plan
from cdsflow.service.patient_lanes import Record, patient_lanes

log = logging.getLogger("cdsflow.service.lane_batches")

_FIRST_PAUSE_S = 0.2


class RecordOutcome(enum.Enum):
    # done with (handled, ignored, skipped or dead-lettered): may be committed
    FINISHED = "finished"
    # a dependency was down: not committed, consumed again after a pause
    HANDED_BACK = "handed_back"


# an outcome, or the delivery of what the record published (finished once it resolves)
RecordHandler = Callable[[Record], Awaitable[RecordOutcome | asyncio.Future[Any]]]
# called with the finished records before their offsets are committed
BeforeCommit = Callable[[Sequence[Record]], Awaitable[None]]


async def _nothing_before_commit(finished: Sequence[Record]) -> None:
    return None


class LaneBatches:
    def __init__(
        self,
        handle_record: RecordHandler,
        *,
        max_concurrent_patients: int,
        pause_max_s: float,
        first_pause_s: float = _FIRST_PAUSE_S,
        start_within_s: float | None = None,
        before_commit: BeforeCommit = _nothing_before_commit,
    ) -> None:
        self._handle_record = handle_record
        self._max_concurrent_patients = max_concurrent_patients
        self._first_pause_s = first_pause_s
        self._pause_max_s = pause_max_s
        self._start_within_s = start_within_s
        self._before_commit = before_commit
        self._finished = FinishedOffsets()
        self._pause_s = 0.0

    async def handle(self, records: Sequence[Record], consumer: AIOKafkaConsumer) -> None:
        """Handle the batch, commit what is finished, rewind what was not."""
        todo = [record for record in records if not self._finished.is_finished(record)]
        finished, handed_back, left, deliveries = await self._run_lanes(todo)
        for record, delivery in deliveries:
            try:
                await delivery
            except Exception as exc:  # not acknowledged: not committed, consumed again
                log.warning("publish failed", extra={"error_type": type(exc).__name__})
                finished.remove(record)
                handed_back.append(record)
        plan = commit_plan(records, [*handed_back, *left])
        try:
            await self._before_commit(finished)
            if plan.commit:
                await consumer.commit(plan.commit)
        except KafkaError as exc:
            # a rebalance or the broker away: the records are consumed again (here or by the
            # partition's new owner), and handled again
            log.warning("commit failed", extra={"error_type": type(exc).__name__})
        self._finished.remember(plan, finished)
        for partition, offset in plan.rewind.items():
            consumer.seek(partition, offset)
        if handed_back:
            await self._pause()
        else:
            self._pause_s = 0.0

    async def _run_lanes(
        self, records: Sequence[Record]
    ) -> tuple[list[Record], list[Record], list[Record], list[tuple[Record, asyncio.Future[Any]]]]:
        finished: list[Record] = []
        handed_back: list[Record] = []
        left: list[Record] = []  # not started in time: for the next batch
        deliveries: list[tuple[Record, asyncio.Future[Any]]] = []
        gate = asyncio.Semaphore(self._max_concurrent_patients)
        start_by = None if self._start_within_s is None else time.monotonic() + self._start_within_s
        outage = False

        async def run(lane: list[Record]) -> None:
            nonlocal outage
            async with gate:
                for index, record in enumerate(lane):
                    if start_by is not None and time.monotonic() > start_by:
                        left.extend(lane[index:])
                        return
                    # once a dependency is down, start nothing new: hand the rest back
                    outcome = (
                        RecordOutcome.HANDED_BACK if outage else await self._handle_record(record)
                    )
                    if outcome is RecordOutcome.HANDED_BACK:
                        outage = True
                        handed_back.extend(lane[index:])
                        return
                    if not isinstance(outcome, RecordOutcome):
                        deliveries.append((record, outcome))
                    finished.append(record)

        await asyncio.gather(*(run(lane) for lane in patient_lanes(records)))
        return finished, handed_back, left, deliveries

    async def _pause(self) -> None:
        """Consume nothing for a while: the dependency that was down gets time to come back."""
        self._pause_s = min(max(self._pause_s * 2, self._first_pause_s), self._pause_max_s)
        log.warning("records handed back; consumption paused", extra={"pause_s": self._pause_s})
        await asyncio.sleep(self._pause_s)
