"""Run an ASGI app in-process under uvicorn on a free loopback port, lifespan included."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import uvicorn
from starlette.types import ASGIApp

from cdsflow.runtime.processes import free_port
from cdsflow.service import ServiceSettings, uvicorn_config


@contextlib.asynccontextmanager
async def serve_app(
    app: ASGIApp,
    startup_timeout_s: float = 60,
    *,
    settings: ServiceSettings | None = None,
    error_media_type: str = "application/json",
    port: int | None = None,
) -> AsyncIterator[str]:
    """Yield the app's base URL (`http://127.0.0.1:P`) while it serves; stop it after.

    With `settings`, it is served as the service's `__main__` serves it (`uvicorn_config`:
    the head-limited httptools protocol and its error answers); without, by plain uvicorn.
    `port`: where to serve, when the app must know its own URL before it starts.
    """
    port = port or free_port()
    if settings is None:
        config = uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None, lifespan="on")
    else:
        config = uvicorn_config(
            app,
            settings,
            error_media_type=error_media_type,
            host="127.0.0.1",
            port=port,
            lifespan="on",
        )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    try:
        async with asyncio.timeout(startup_timeout_s):
            while not server.started:
                if task.done():
                    task.result()
                    raise RuntimeError("the app stopped during startup")
                await asyncio.sleep(0.02)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(task, timeout=30)
