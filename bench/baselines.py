"""Bare baselines measured in the same run: the broker alone, and Triton alone."""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import numpy as np
import tritonclient.grpc.aio as triton_grpc
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from bench.consumers import wait_for_assignment
from bench.measures import latency_summary, rate


async def kafka_round_trip(bootstrap: str, messages: int, concurrency: int) -> dict[str, Any]:
    """Produce (acks=all) and consume `messages` small messages through the same broker."""
    topic = f"bench.baseline.{uuid.uuid4().hex[:8]}"
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=f"bench-{uuid.uuid4().hex[:8]}",
        auto_offset_reset="earliest",
        fetch_max_wait_ms=5,
    )
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    await producer.send_and_wait(topic, b"warm-up")
    await consumer.start()
    sent: dict[bytes, float] = {}
    latencies: list[float] = []
    try:
        await wait_for_assignment(consumer)
        done = asyncio.Event()

        async def consume() -> None:
            async for record in consumer:
                started = sent.pop(record.value or b"", None)
                if started is not None:
                    latencies.append(time.perf_counter() - started)
                    if len(latencies) == messages:
                        done.set()
                        return

        reader = asyncio.create_task(consume())
        gate = asyncio.Semaphore(concurrency)

        async def send(index: int) -> None:
            async with gate:
                body = f"m{index}".encode()
                sent[body] = time.perf_counter()
                await producer.send_and_wait(topic, body, key=body)

        began = time.perf_counter()
        await asyncio.gather(*(send(i) for i in range(messages)))
        await asyncio.wait_for(done.wait(), timeout=120)
        elapsed = time.perf_counter() - began
        reader.cancel()
    finally:
        await consumer.stop()
        await producer.stop()
    return {
        "what": "produce (acks=all) -> consume, one broker hop, no service",
        "messages_per_s": rate(messages, elapsed),
        "latency": latency_summary(latencies),
    }


async def triton_direct(
    grpc_url: str, model: str, inferences: int, concurrency: int
) -> dict[str, Any]:
    """Single inferences straight to Triton over gRPC, `concurrency` at a time."""
    client = triton_grpc.InferenceServerClient(grpc_url)
    config = await client.get_model_config(model, as_json=True)
    inputs_config = config["config"]["input"]
    latencies: list[float] = []
    gate = asyncio.Semaphore(concurrency)

    def build_inputs() -> list[triton_grpc.InferInput]:
        inputs = []
        for spec in inputs_config:
            dims = [1, *[int(d) for d in spec["dims"]]]
            datatype = spec["data_type"].removeprefix("TYPE_")
            datatype = {"FP32": "FP32", "BOOL": "BOOL"}.get(datatype, datatype)
            tensor = triton_grpc.InferInput(spec["name"], dims, datatype)
            if datatype == "BOOL":
                tensor.set_data_from_numpy(np.ones(dims, dtype=bool))
            else:
                tensor.set_data_from_numpy(np.full(dims, 1.0, dtype=np.float32))
            inputs.append(tensor)
        return inputs

    async def infer() -> None:
        async with gate:
            started = time.perf_counter()
            await client.infer(model, build_inputs())
            latencies.append(time.perf_counter() - started)

    try:
        await infer()
        latencies.clear()
        began = time.perf_counter()
        await asyncio.gather(*(infer() for _ in range(inferences)))
        elapsed = time.perf_counter() - began
    finally:
        await client.close()
    return {
        "what": f"gRPC ModelInfer to '{model}', batch 1, {concurrency} in flight",
        "inferences_per_s": rate(inferences, elapsed),
        "latency": latency_summary(latencies),
    }
