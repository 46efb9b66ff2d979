"""Hook disclosures written into the EHR as AuditEvents, off the hook's path.

A hook answer with cards or system actions queues its AuditEvent
(`domain/hook_disclosure_audit.py`) and returns at once; a background task writes what is
queued as one transaction Bundle of creates `flush_s` after the first of them was queued, or
as soon as `batch_max` are waiting, so a busy hook adds a few EHR requests a second (at the
default 0.2 s, five of 40 AuditEvents each at 200 answers a second), not one per call. The
Bundle is built and serialized in a worker thread, so that the hook answers on the event loop
do not wait behind it. The queue is bounded: past `max_queued`, an audit is dropped and counted (the
hook answer never waits for the EHR). A batch the EHR does not take is tried again with the
next one, up to three times, then dropped and counted (a batch whose answer was lost after
the EHR took it is then recorded twice).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from prometheus_client import Counter

from cdsflow.fhir import EhrClient
from cdsflow.telemetry import MetricsRegistry
from cdsflow.writeback.domain.hook_disclosure_audit import (
    HookDisclosure,
    disclosed,
    hook_disclosure_transaction,
)

logger = logging.getLogger(__name__)

MAX_TRIES = 3


class HookAuditTrail:
    def __init__(
        self,
        ehr: EhrClient,
        registry: MetricsRegistry,
        *,
        flush_s: float = 0.2,
        batch_max: int = 500,
        max_queued: int = 10_000,
    ) -> None:
        self._ehr = ehr
        self._flush_s = flush_s
        self._batch_max = batch_max
        self._queue: asyncio.Queue[tuple[HookDisclosure, int]] = asyncio.Queue(max_queued)
        # set once a whole batch is waiting: written then, without waiting for `flush_s`
        self._batch_full = asyncio.Event()
        # the audit that the writer took from the queue and holds while the batch fills
        self._held = 0
        self._task: asyncio.Task[None] | None = None
        self._audits: Counter = registry.counter(
            "writeback_hook_audits",
            "AuditEvents of hook disclosures, by result (written, dropped: queue full, "
            "failed: the EHR did not take them)",
            ("result",),
        )
        self._disclosures: Counter = registry.counter(
            "writeback_hook_disclosures",
            "Hook answers recorded as disclosures, by what they disclosed (cards, "
            "system-actions, cards-and-system-actions)",
            ("disclosed",),
        )

    def record(self, disclosure: HookDisclosure) -> None:
        """Queue the disclosure's AuditEvent; never waits."""
        self._disclosures.labels(disclosed=disclosed(disclosure)).inc()
        try:
            self._queue.put_nowait((disclosure, 1))
        except asyncio.QueueFull:
            self._audits.labels(result="dropped").inc()
            return
        if self._queue.qsize() + self._held >= self._batch_max:
            self._batch_full.set()

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="hook-audits")

    async def stop(self) -> None:
        """Write what is queued (one last try), then stop."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if not self._queue.empty():
            with contextlib.suppress(Exception):
                await self._write(self._drain())

    async def _run(self) -> None:
        while True:
            first = await self._queue.get()
            self._held = 1
            if self._queue.qsize() < self._batch_max - 1:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._batch_full.wait(), self._flush_s)
            batch = [first, *self._drain()]
            self._held = 0
            await self._write(batch)

    def _drain(self) -> list[tuple[HookDisclosure, int]]:
        taken: list[tuple[HookDisclosure, int]] = []
        while len(taken) < self._batch_max - 1 and not self._queue.empty():
            taken.append(self._queue.get_nowait())
        if self._queue.qsize() < self._batch_max:
            self._batch_full.clear()
        return taken

    async def _write(self, pending: list[tuple[HookDisclosure, int]]) -> None:
        try:
            body = await asyncio.to_thread(
                hook_disclosure_transaction, [disclosure for disclosure, _ in pending]
            )
            await self._ehr.transaction(body)
        except asyncio.CancelledError:
            # stopping mid-write: back into the queue, for `stop`'s last try
            for item in pending:
                with contextlib.suppress(asyncio.QueueFull):
                    self._queue.put_nowait(item)
            raise
        except Exception as exc:
            logger.warning(
                "could not write hook disclosure audits into the EHR",
                extra={"error_type": type(exc).__name__, "audits": len(pending)},
            )
            for disclosure, tries in pending:
                if tries >= MAX_TRIES:
                    self._audits.labels(result="failed").inc()
                    continue
                try:
                    self._queue.put_nowait((disclosure, tries + 1))
                except asyncio.QueueFull:
                    self._audits.labels(result="dropped").inc()
            return
        self._audits.labels(result="written").inc(len(pending))
