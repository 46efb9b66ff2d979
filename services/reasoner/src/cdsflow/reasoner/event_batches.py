"""A batch of clinical events from Kafka: patients at the same time, each patient in order.

The records of a batch are split into patient lanes (`patient_lanes`); up to
`max_concurrent_patients` lanes run at once, each handling its records one after the other,
so Triton receives that many requests at a time and its dynamic batcher merges them. Once
every lane is done, the finished records are committed (`commit_plan`): up to, not past, the
first record of each partition that was handed back because a dependency was down. Those
partitions are rewound to it, and consumption pauses (0.2 s, doubling while the outage lasts,
at most `pause_max_s`) before they are consumed again. Nothing is committed that was not
published, ignored or dead-lettered, and nothing is lost.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence

from aiokafka import AIOKafkaConsumer
from aiokafka.errors import KafkaError

from cdsflow.reasoner.deliveries import Delivery
from cdsflow.reasoner.handlers import EventOutcome
from cdsflow.reasoner.offsets import FinishedOffsets, commit_plan
from cdsflow.reasoner.patient_lanes import Record, patient_lanes

log = logging.getLogger("cdsflow.reasoner.batches")

_FIRST_PAUSE_S = 0.2

# an outcome, or the delivery of the record's recommendation (finished once acknowledged)
EventHandler = Callable[[Record], Awaitable[EventOutcome | Delivery]]
# called with the finished records before their offsets are committed
BeforeCommit = Callable[[Sequence[Record]], Awaitable[None]]


async def _nothing_before_commit(finished: Sequence[Record]) -> None:
    return None


class EventBatches:
    def __init__(
        self,
        handle_event: EventHandler,
        *,
        max_concurrent_patients: int,
        pause_max_s: float,
        before_commit: BeforeCommit = _nothing_before_commit,
    ) -> None:
        self._handle_event = handle_event
        self._max_concurrent_patients = max_concurrent_patients
        self._pause_max_s = pause_max_s
        self._before_commit = before_commit
        self._finished = FinishedOffsets()
        self._pause_s = 0.0

    async def handle(self, records: Sequence[Record], consumer: AIOKafkaConsumer) -> None:
        """Handle the batch, commit what is finished, rewind what was handed back."""
        todo = [record for record in records if not self._finished.is_finished(record)]
        finished, handed_back, deliveries = await self._run_lanes(todo)
        for record, delivery in deliveries:
            try:
                await delivery
            except Exception as exc:  # not acknowledged: not committed, consumed again
                log.warning("publish failed", extra={"error_type": type(exc).__name__})
                finished.remove(record)
                handed_back.append(record)
        plan = commit_plan(records, handed_back)
        try:
            await self._before_commit(finished)
            if plan.commit:
                await consumer.commit(plan.commit)
        except KafkaError as exc:
            # a rebalance or the broker away: the records are consumed again (here or by the
            # partition's new owner); their recommendations keep their ids
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
    ) -> tuple[list[Record], list[Record], list[tuple[Record, Delivery]]]:
        finished: list[Record] = []
        handed_back: list[Record] = []
        deliveries: list[tuple[Record, Delivery]] = []
        gate = asyncio.Semaphore(self._max_concurrent_patients)
        outage = False

        async def run(lane: list[Record]) -> None:
            nonlocal outage
            async with gate:
                for index, record in enumerate(lane):
                    # once a dependency is down, start nothing new: hand the rest back
                    outcome = (
                        EventOutcome.HANDED_BACK if outage else await self._handle_event(record)
                    )
                    if outcome is EventOutcome.HANDED_BACK:
                        outage = True
                        handed_back.extend(lane[index:])
                        return
                    if not isinstance(outcome, EventOutcome):
                        deliveries.append((record, outcome))
                    finished.append(record)

        await asyncio.gather(*(run(lane) for lane in patient_lanes(records)))
        return finished, handed_back, deliveries

    async def _pause(self) -> None:
        """Consume nothing for a while: the dependency that was down gets time to come back."""
        self._pause_s = min(max(self._pause_s * 2, _FIRST_PAUSE_S), self._pause_max_s)
        log.warning("events handed back; consumption paused", extra={"pause_s": self._pause_s})
        await asyncio.sleep(self._pause_s)
