"""The bare consume -> Triton -> produce loop (`bench.bare_loop.BareLoop`) as a process of its
own, so that the chained ceiling (`bench.ceiling`) has its own CPU and peak RSS like the
reasoner. It writes `READY_FILE` once its consumer and producer started, and runs until SIGTERM.

Run as `python -m bench.bare_loop_process READY_FILE BOOTSTRAP TRITON_GRPC MODEL SOURCE SINK
MAX_RECORDS IN_FLIGHT`.
"""

from __future__ import annotations

import asyncio
import signal
import sys
from pathlib import Path

from bench.bare_loop import BareLoop


async def serve(ready_file: Path, arguments: list[str]) -> None:
    bootstrap, triton, model, source, sink, max_records, in_flight = arguments
    # aiokafka's clients are made inside the running event loop
    loop = BareLoop(
        bootstrap,
        triton,
        model,
        source,
        sink,
        max_records=int(max_records),
        in_flight=int(in_flight),
    )
    stopped = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(signum, stopped.set)
    await loop.start()
    try:
        ready_file.write_text("ready\n")
        stop = asyncio.create_task(stopped.wait())
        ended = asyncio.create_task(loop.ended())
        await asyncio.wait({stop, ended}, return_when=asyncio.FIRST_COMPLETED)
        if ended.done():
            # the loop must not end silently: the bench would wait for answers that never come
            print(f"bare loop: ended ({ended.result()!r})", file=sys.stderr, flush=True)
            raise SystemExit(1)
        ended.cancel()
    finally:
        await loop.stop()


def main() -> None:
    asyncio.run(serve(Path(sys.argv[1]), sys.argv[2:9]))


if __name__ == "__main__":
    main()
