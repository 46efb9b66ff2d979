"""The bare loop the reasoner is measured against: consume a batch from Kafka, one Triton
request per record (all of the batch in flight at once, so the dynamic batcher merges them),
produce one message per answer, commit. No FHIR, no tracing, no product code: the same
broker, the same model, the same batch and in-flight sizes as the reasoner."""

from __future__ import annotations

import asyncio
import contextlib
import sys
import uuid

import numpy as np
import tritonclient.grpc.aio as triton_grpc
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

# one row of deterioration_risk's inputs (7 vital signs, their trends, age); every record
# sends the same (the loop reads no FHIR)
_FEATURES = np.array([[18, 96, 21, 120, 80, 37.0, 15, 0, 0, 0, 0, 0, 0, 0, 70]], dtype=np.float32)
_PRESENT = np.array([[True] * 7 + [False] * 7 + [True]], dtype=bool)
_OUTPUTS = ("deterioration_risk", "log_odds", "contributions")
_RETRY_PAUSE_S = 0.2
# a batch not answered in this long is said and sent again (a call that never returns would
# otherwise stall the loop without a word)
_BATCH_TIMEOUT_S = 30.0


class BareLoop:
    def __init__(
        self,
        bootstrap: str,
        triton_url: str,
        model: str,
        source: str,
        sink: str,
        *,
        max_records: int,
        in_flight: int,
    ) -> None:
        self._consumer = AIOKafkaConsumer(
            source,
            bootstrap_servers=bootstrap,
            group_id=f"bench-bare-{uuid.uuid4().hex[:8]}",
            auto_offset_reset="earliest",
            enable_auto_commit=False,
            fetch_max_wait_ms=5,
        )
        self._producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
        self._triton = triton_grpc.InferenceServerClient(triton_url)
        self._model = model
        self._sink = sink
        self._max_records = max_records
        self._gate = asyncio.Semaphore(in_flight)
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await self._producer.start()
        await self._consumer.start()
        self._task = asyncio.create_task(self._run())

    async def ended(self) -> BaseException | None:
        """Waits until the loop ends by itself (it should not): what ended it."""
        assert self._task is not None, "start() first"
        try:
            await asyncio.shield(self._task)
        except Exception as exc:
            return exc
        return None

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self._consumer.stop()
        await self._producer.stop()
        await self._triton.close()

    async def _run(self) -> None:
        while True:
            batches = await self._consumer.getmany(timeout_ms=5, max_records=self._max_records)
            records = [record for batch in batches.values() for record in batch]
            if not records:
                continue
            await self._answer([record.key for record in records])
            try:
                await self._consumer.commit()
            except Exception as exc:
                # e.g. the group rebalanced while the batch was answered (its heartbeats late
                # on a saturated machine): the answers are out; at worst some are sent again
                # after the rejoin, which the watch counts once. Said, never the loop's end.
                print(
                    f"bare loop: a commit failed ({type(exc).__name__}: {exc}); going on",
                    file=sys.stderr,
                    flush=True,
                )

    async def _answer(self, keys: list[bytes | None]) -> None:
        """Every key of the batch answered; a batch that fails (Triton or the broker
        refusing for a moment) is said on stderr and sent again, as the reasoner retries,
        instead of ending the loop without a word."""
        while True:
            try:
                await asyncio.wait_for(self._answer_once(keys), _BATCH_TIMEOUT_S)
                return
            except Exception as exc:
                print(
                    f"bare loop: a batch of {len(keys)} failed ({type(exc).__name__}: {exc});"
                    " sending it again",
                    file=sys.stderr,
                    flush=True,
                )
                await asyncio.sleep(_RETRY_PAUSE_S)

    async def _answer_once(self, keys: list[bytes | None]) -> None:
        sent = await asyncio.gather(*(self._one(key) for key in keys))
        await asyncio.gather(*sent)

    async def _one(self, key: bytes | None) -> asyncio.Future[object]:
        async with self._gate:
            features = triton_grpc.InferInput("features", [1, 15], "FP32")
            features.set_data_from_numpy(_FEATURES)
            present = triton_grpc.InferInput("present", [1, 15], "BOOL")
            present.set_data_from_numpy(_PRESENT)
            result = await self._triton.infer(
                self._model,
                [features, present],
                outputs=[triton_grpc.InferRequestedOutput(name) for name in _OUTPUTS],
            )
            answer = result.as_numpy("deterioration_risk")
            body = answer.tobytes() if answer is not None else b""
            future: asyncio.Future[object] = await self._producer.send(self._sink, body, key=key)
            return future
