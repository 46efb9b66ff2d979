"""The chained ceiling of the pipeline's hops, for `make bench` (`bench.pipeline`): a bare ASGI
endpoint that parses each rest-hook PUT with orjson and produces it (`bench.bare_listener`) ->
broker -> a bare consume -> Triton -> produce loop (`bench.bare_loop_process`) -> broker. No FHIR,
no tracing, no product code; the same broker, Triton, model, topic shape (one partition, keyed
messages, acks=all) and the reasoner's default batch and in-flight sizes, each hop a process of
its own like the listener and the reasoner.

The load generator reaches it exactly as it reaches the listener (the same rest-hook URL
shape), and `SinkWatch` stamps when each resource's answer is on the sink topic (the bare
loop keys its answer by the resource id that the endpoint keyed the event with).
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
import uuid
from pathlib import Path

from aiokafka import ConsumerRecord

from bench.kafka_io import TopicWatch, create_topics
from cdsflow.runtime.processes import ManagedProcess, free_port, http_ok, spawn, without_otel

REPO = Path(__file__).resolve().parent.parent
REST_HOOK_PATH = "/fhir/notifications/rest-hook"
# the reasoner's defaults (CDSFLOW_BATCH_MAX_RECORDS, CDSFLOW_MAX_CONCURRENT_PATIENTS)
MAX_RECORDS = 512
IN_FLIGHT = 256


class SinkWatch(TopicWatch):
    """Stamps (perf_counter) when each key's first message arrived on the sink topic."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        super().__init__(bootstrap, topic, group_prefix="bench-ceiling-watch")
        self.arrived: dict[str, float] = {}

    def take(self, record: ConsumerRecord[bytes, bytes]) -> None:
        self.arrived.setdefault((record.key or b"").decode(), time.perf_counter())

    def arrival(self, resource_id: str) -> float | None:
        return self.arrived.get(resource_id)


class Ceiling:
    """The two bare hops as processes on the given broker and Triton; `url` takes the PUTs."""

    def __init__(self, work_dir: Path, bootstrap: str, triton_grpc: str, model: str) -> None:
        self._work_dir = work_dir
        self._bootstrap = bootstrap
        self._triton_grpc = triton_grpc
        self._model = model
        run = uuid.uuid4().hex[:8]
        self.source, self.sink = f"bench.ceiling-events.{run}", f"bench.ceiling-answers.{run}"
        self.ingest: ManagedProcess | None = None
        self.loop: ManagedProcess | None = None
        self.watch = SinkWatch(bootstrap, self.sink)
        self.url = ""

    async def start(self) -> None:
        await create_topics(self._bootstrap, self.source, self.sink)
        self.ingest, self.loop = await asyncio.to_thread(self._spawn)
        await self.watch.start()

    def _spawn(self) -> tuple[ManagedProcess, ManagedProcess]:
        env = without_otel(os.environ)
        port = free_port()
        argv = [sys.executable, "-m", "bench.bare_listener", str(port), self._bootstrap]
        ingest = spawn("ceiling-ingest", [*argv, self.source], self._work_dir, env=env, cwd=REPO)
        ready_file = self._work_dir / "ceiling-loop.ready"
        loop = spawn(
            "ceiling-loop",
            [
                sys.executable,
                "-m",
                "bench.bare_loop_process",
                str(ready_file),
                self._bootstrap,
                self._triton_grpc,
                self._model,
                self.source,
                self.sink,
                str(MAX_RECORDS),
                str(IN_FLIGHT),
            ],
            self._work_dir,
            env=env,
            cwd=REPO,
        )
        # each part is the ceiling's (so stop() stops it) before its wait can fail
        self.ingest, self.loop = ingest, loop
        ingest.wait_ready(lambda: http_ok(f"http://127.0.0.1:{port}/readyz"), 60)
        loop.wait_ready(ready_file.exists, 60)
        self.url = f"http://127.0.0.1:{port}{REST_HOOK_PATH}"
        return ingest, loop

    def processes(self) -> dict[str, ManagedProcess]:
        return {
            name: part
            for name, part in (("bare_ingest", self.ingest), ("bare_loop", self.loop))
            if part is not None
        }

    async def stop(self) -> None:
        await self.watch.stop()
        for part in (self.ingest, self.loop):
            if part is not None:
                part.stop()


def peak_rss_mb(pid: int) -> float | None:
    """A process's peak resident set (VmHWM) in MiB; None once it is gone."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    for line in status.splitlines():
        if line.startswith("VmHWM:"):
            return round(int(line.split()[1]) / 1024, 1)
    return None
