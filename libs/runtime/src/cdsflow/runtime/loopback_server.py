"""A small ASGI app served by uvicorn in a thread on a free loopback port: the built-in trace
collector and the sandbox EHR client's JWK Set."""

from __future__ import annotations

import threading
import time

import uvicorn
from starlette.types import ASGIApp

from cdsflow.runtime.processes import free_port


class LoopbackServer:
    """`start()` returns `http://127.0.0.1:P` once it serves; `stop()` ends it."""

    def __init__(self, app: ASGIApp, name: str) -> None:
        self._app = app
        self._name = name
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    def start(self, timeout_s: float = 10) -> str:
        port = free_port()
        config = uvicorn.Config(self._app, host="127.0.0.1", port=port, log_config=None)
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, daemon=True, name=self._name)
        self._thread.start()
        deadline = time.monotonic() + timeout_s
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError(f"the {self._name} server did not start")
            time.sleep(0.02)
        return f"http://127.0.0.1:{port}"

    def stop(self) -> None:
        if self._server is not None and self._thread is not None:
            self._server.should_exit = True
            self._thread.join(timeout=10)
