"""The load generator that `make bench` (`bench.pipeline`) drives the pipeline and its chained
ceiling with, as a process of its own, so that its CPU is neither the bench's nor its bound.

It reads a plan (JSON: the target's URL, the requests, the mode), builds every request's
HTTP/1.1 bytes before the clock starts, writes them on keep-alive
connections (one request in flight per connection) and reads back only each answer's status
(httptools parses the answers, on uvloop). The requests are either the pipeline's rest-hook
PUTs (`ids`, `bodies` and one `authorization`: `PUT {url}/Observation/{id}`) or any requests
(`requests`: method, path, headers and body each, e.g. CDS Hooks calls with a token each);
with `count_answers_containing`, the answers whose body holds that text are counted. Two
modes:

- `saturated`: `in_flight` connections, each sending its next request as soon as its answer
  came, until every request was sent (closed loop);
- `fixed_rate`: request i is due `i / per_s` seconds after the start, whatever the answers take
  (open loop): it goes out on an idle connection, or on a new one when all are waiting; what
  is not due within `seconds` is not sent.

It writes the result (JSON): for each request sent, its index in the plan, when it was written
(`time.perf_counter()`: CLOCK_MONOTONIC on Linux, one clock for every process, so the bench
compares it with the arrival stamps its Kafka watchers take) and when and with which status
its answer came (0: no answer, the error's kind counted in `errors`); and the CPU time this
process spent from the first request to the last answer.

Run as `python -m bench.load_process PLAN RESULT`; `run_load` does so from the bench.
"""

from __future__ import annotations

import asyncio
import json
import os
import resource
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, cast
from urllib.parse import urlsplit

import httptools
import uvloop

from cdsflow.runtime.processes import spawn, without_otel

REPO = Path(__file__).resolve().parent.parent

# a request not answered within this long counts as failed (its connection is dropped)
ANSWER_TIMEOUT_S = 120.0
# the open loop's ceiling on connections (each waiting answer holds one)
MAX_CONNECTIONS = 4000


def request_bytes(host: str, port: int, path: str, authorization: str, body: bytes) -> bytes:
    """One HTTP/1.1 keep-alive PUT of a FHIR resource, as bytes to write."""
    headers = {"Authorization": authorization, "Content-Type": "application/fhir+json"}
    return any_request_bytes(host, port, "PUT", path, headers, body)


def any_request_bytes(
    host: str, port: int, method: str, path: str, headers: Mapping[str, str], body: bytes
) -> bytes:
    """One HTTP/1.1 keep-alive request, as bytes to write."""
    lines = [f"{method} {path} HTTP/1.1", f"Host: {host}:{port}"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def due_at(began: float, index: int, per_s: float) -> float:
    """When request `index` of an open loop at `per_s` is due (perf_counter)."""
    return began + index / per_s


class Connection(asyncio.Protocol):
    """One keep-alive connection: one request at a time; `exchange` resolves to the answer's
    status once the whole answer was read."""

    def __init__(self, marker: bytes | None = None) -> None:
        self._parser = httptools.HttpResponseParser(self)
        self._transport: asyncio.Transport | None = None
        self._answer: asyncio.Future[int] | None = None
        self.usable = True
        # the answers' bodies are kept only to look for the marker in them
        self._marker = marker
        self._body = bytearray()
        self.marked = 0  # answers whose body held the marker

    def on_body(self, body: bytes) -> None:  # httptools' callback
        if self._marker is not None:
            self._body += body

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, but have its methods
        self._transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError as error:
            self._fail(error)

    def on_message_complete(self) -> None:  # httptools' callback
        if self._marker is not None:
            self.marked += self._marker in self._body
            self._body.clear()
        if self._answer is not None and not self._answer.done():
            self._answer.set_result(self._parser.get_status_code())
        if not self._parser.should_keep_alive():
            self.usable = False

    def connection_lost(self, exc: Exception | None) -> None:
        self._fail(exc or ConnectionResetError("the server closed the connection"))

    def _fail(self, error: BaseException) -> None:
        self.usable = False
        if self._answer is not None and not self._answer.done():
            self._answer.set_exception(error)
        if self._transport is not None:
            self._transport.close()

    def exchange(self, request: bytes) -> asyncio.Future[int]:
        assert self._transport is not None
        self._answer = asyncio.get_running_loop().create_future()
        self._transport.write(request)
        return self._answer


class Run:
    """One plan's requests against one target, and what came of each."""

    def __init__(self, plan: Mapping[str, Any]) -> None:
        target = urlsplit(plan["url"])
        self._host = target.hostname or "127.0.0.1"
        self._port = target.port or 80
        self._marker = (
            plan["count_answers_containing"].encode()
            if "count_answers_containing" in plan
            else None
        )
        if "requests" in plan:
            self._requests = [
                any_request_bytes(
                    self._host,
                    self._port,
                    request["method"],
                    f"{target.path}{request['path']}",
                    request["headers"],
                    request["body"].encode(),
                )
                for request in plan["requests"]
            ]
        else:
            self._requests = [
                request_bytes(
                    self._host,
                    self._port,
                    f"{target.path}/Observation/{rid}",
                    plan["authorization"],
                    body.encode(),
                )
                for rid, body in zip(plan["ids"], plan["bodies"], strict=True)
            ]
        self._connections: list[Connection] = []
        # [index, written, answered, status]
        self.sent: list[tuple[int, float, float, int]] = []
        self.errors: dict[str, int] = {}
        self.connections = 0

    async def connect(self) -> Connection:
        _, connection = await asyncio.get_running_loop().create_connection(
            lambda: Connection(self._marker), self._host, self._port
        )
        self.connections += 1
        self._connections.append(connection)
        return connection

    @property
    def answers_containing(self) -> int:
        return sum(connection.marked for connection in self._connections)

    async def one(self, index: int, connection: Connection) -> bool:
        """Send request `index`; True when the connection can carry the next one."""
        written = time.perf_counter()
        try:
            status = await asyncio.wait_for(
                connection.exchange(self._requests[index]), ANSWER_TIMEOUT_S
            )
        except (OSError, TimeoutError, httptools.HttpParserError) as error:
            kind = type(error).__name__
            self.errors[kind] = self.errors.get(kind, 0) + 1
            self.sent.append((index, written, time.perf_counter(), 0))
            return False
        self.sent.append((index, written, time.perf_counter(), status))
        return connection.usable

    async def saturated(self, in_flight: int) -> None:
        """Closed loop: `in_flight` connections, each sending the next request when its answer
        came."""
        pending = iter(range(len(self._requests)))
        connections = [await self.connect() for _ in range(in_flight)]

        async def keep_busy(connection: Connection) -> None:
            for index in pending:
                if not await self.one(index, connection):
                    connection = await self.connect()

        await asyncio.gather(*(keep_busy(connection) for connection in connections))

    async def fixed_rate(self, per_s: float, seconds: float, warm_connections: int) -> int:
        """Open loop at `per_s` for `seconds`; returns how many requests were due and sent."""
        idle = [await self.connect() for _ in range(warm_connections)]
        tasks: set[asyncio.Task[None]] = set()

        async def send(index: int, connection: Connection | None) -> None:
            if connection is None:
                try:
                    connection = await self.connect()
                except OSError as error:
                    kind = type(error).__name__
                    self.errors[kind] = self.errors.get(kind, 0) + 1
                    return
            if await self.one(index, connection):
                idle.append(connection)

        began = time.perf_counter()
        count = 0
        for index in range(len(self._requests)):
            delay = due_at(began, index, per_s) - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            if time.perf_counter() - began > seconds:
                break  # what was not sent in time is not sent late
            if not idle and len(tasks) >= MAX_CONNECTIONS:
                await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            task = asyncio.create_task(send(index, idle.pop() if idle else None))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
            count += 1
        if tasks:
            await asyncio.wait(tasks)
        return count


def cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def execute(plan: dict[str, Any]) -> dict[str, Any]:
    run = Run(plan)
    cpu_before = cpu_s()
    if plan["mode"] == "saturated":
        await run.saturated(int(plan["in_flight"]))
    else:
        await run.fixed_rate(
            float(plan["per_s"]), float(plan["seconds"]), int(plan.get("warm_connections", 16))
        )
    cpu = cpu_s() - cpu_before
    return {
        "sent": sorted(run.sent, key=lambda one: one[1]),
        "errors": run.errors,
        "connections": run.connections,
        "answers_containing": run.answers_containing,
        "cpu_s": round(cpu, 4),
    }


async def run_load(plan: Mapping[str, Any], run_dir: Path) -> dict[str, Any]:
    """Run the generator on `plan` as a process of its own (in `run_dir`, made here); its
    result. The plan file is readable by its owner only: it may hold secrets or tokens."""
    run_dir.mkdir(parents=True)
    plan_path, result_path = run_dir / "plan.json", run_dir / "result.json"
    plan_path.touch(mode=0o600)
    plan_path.write_text(json.dumps(plan))
    argv = [sys.executable, "-m", "bench.load_process", str(plan_path), str(result_path)]
    process = spawn("load", argv, run_dir, env=without_otel(os.environ), cwd=REPO)
    try:
        code = await asyncio.to_thread(process.process.wait)
    finally:
        process.stop()
    if code != 0:
        raise RuntimeError(f"the load generator exited with {code}:\n{process.log_tail()}")
    result: dict[str, Any] = json.loads(result_path.read_text())
    return result


def main() -> None:
    plan_path, result_path = Path(sys.argv[1]), Path(sys.argv[2])
    if time.get_clock_info("perf_counter").implementation != "clock_gettime(CLOCK_MONOTONIC)":
        raise SystemExit("the send stamps must be on CLOCK_MONOTONIC, the bench's own clock")
    plan = json.loads(plan_path.read_text())
    result = uvloop.run(execute(plan))
    staged = result_path.with_suffix(".tmp")
    staged.write_text(json.dumps(result))
    staged.replace(result_path)


if __name__ == "__main__":
    main()
