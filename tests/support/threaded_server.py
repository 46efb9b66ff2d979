"""Serve an app as its service does (`uvicorn_config`), in a thread with its own event loop, so
that synchronous tests (hypothesis properties, raw sockets) can drive it."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator

import uvicorn
from starlette.types import ASGIApp

from cdsflow.runtime.processes import free_port
from cdsflow.service import ServiceSettings, uvicorn_config


@contextlib.contextmanager
def serving_in_thread(
    app: ASGIApp,
    settings: ServiceSettings,
    *,
    error_media_type: str,
    startup_timeout_s: float = 60,
) -> Iterator[str]:
    """Yield `http://127.0.0.1:P` while the app serves (lifespan included); stop it after."""
    port = free_port()
    config = uvicorn_config(
        app,
        settings,
        error_media_type=error_media_type,
        host="127.0.0.1",
        port=port,
        lifespan="on",
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name=f"uvicorn-{port}", daemon=True)
    thread.start()
    deadline = time.monotonic() + startup_timeout_s
    while not server.started:
        if not thread.is_alive():
            raise RuntimeError("the app stopped during startup")
        if time.monotonic() > deadline:
            raise TimeoutError("the app did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)
