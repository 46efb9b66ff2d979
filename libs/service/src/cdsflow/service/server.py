"""Serving a service's ASGI app with uvicorn, with limits on what a client can send.

uvicorn's httptools protocol (llhttp, in C) parses requests; it sets no bound of its own on
the request line and headers, so `_LimitedHttpToolsProtocol` counts the bytes received while
a request's head is incomplete and refuses the request past `max_header_bytes`: a 64 MiB
header is never read in full, only the limit and at most one read more. A request that is not
valid HTTP, or whose head is too large, is answered in the service's own error format (an
OperationOutcome), not uvicorn's plain text: 431 for the headers, 400 otherwise. Its body
names the rule, never what was sent. (httptools, not h11: side by side, it took the listener
from 3.10 to 2.82 ms of CPU per notification.)

`serve` also sets the process's young-generation garbage-collection threshold
(`gc_young_threshold`): a process-wide setting, so made by the service's own process when it
starts serving, never by `create_app` (which tests call many times in one process).
"""

from __future__ import annotations

import gc
import json
from typing import Any

import uvicorn
from starlette.types import ASGIApp
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from cdsflow.fhir import operation_outcome
from cdsflow.service.settings import ServiceSettings


class _LimitedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with a bound on a request's head, and protocol errors
    answered as OperationOutcomes.

    Bytes are counted from each read that starts while a request's head is still awaited;
    the count starts again once a head is complete. So every byte counted belongs to the
    head now awaited (never a body), and a head over the limit is refused after one read
    more at most."""

    media_type = "application/json"
    max_head_bytes = 32 * 1024  # set per service by `protocol_for`

    def connection_made(self, transport: Any) -> None:
        self._awaiting_head = True
        self._head_bytes = 0
        super().connection_made(transport)

    def data_received(self, data: bytes) -> None:
        if self.transport.is_closing():
            return
        if self._awaiting_head:
            self._head_bytes += len(data)
        super().data_received(data)  # may answer 400 and close
        if (
            self._awaiting_head
            and self._head_bytes > self.max_head_bytes
            and not self.transport.is_closing()
        ):
            self.logger.warning("request refused: its head is over the limit (431)")
            self._send_outcome(
                431,
                b"Request Header Fields Too Large",
                operation_outcome(
                    "too-costly",
                    f"the request line and headers exceed the limit of {self.max_head_bytes} bytes",
                ),
            )

    def on_headers_complete(self) -> None:
        self._awaiting_head = False
        self._head_bytes = 0
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        self._awaiting_head = True
        super().on_message_complete()

    def send_400_response(self, msg: str) -> None:
        # called by uvicorn when httptools refuses the bytes received; `msg` is uvicorn's text
        outcome = operation_outcome("structure", "the request is not valid HTTP/1.1")
        self._send_outcome(400, b"Bad Request", outcome)

    def _send_outcome(self, status: int, reason: bytes, outcome: dict[str, Any]) -> None:
        body = json.dumps(outcome).encode()
        head = b"HTTP/1.1 %d %s\r\n" % (status, reason)
        for name, value in self.server_state.default_headers:
            head += name + b": " + value + b"\r\n"
        head += b"content-type: %s\r\n" % self.media_type.encode()
        head += b"content-length: %d\r\nconnection: close\r\n\r\n" % len(body)
        self.transport.write(head + body)
        self.transport.close()


def protocol_for(media_type: str, max_head_bytes: int) -> type[HttpToolsProtocol]:
    """The httptools protocol whose heads are bounded by `max_head_bytes` and whose
    protocol-level errors are bodies of `media_type`."""
    return type(
        "ServiceHttpProtocol",
        (_LimitedHttpToolsProtocol,),
        {"media_type": media_type, "max_head_bytes": max_head_bytes},
    )


def uvicorn_config(
    app: ASGIApp, settings: ServiceSettings, *, error_media_type: str, **overrides: Any
) -> uvicorn.Config:
    """The service's uvicorn configuration: httptools with the head limit, idle connections
    kept `http_keep_alive_s`, JSON logging kept."""
    options: dict[str, Any] = {
        "host": settings.http_host,
        "port": settings.http_port,
        "timeout_keep_alive": settings.http_keep_alive_s,
        # None keeps the JSON logging that the service's telemetry set up
        "log_config": None,
        "http": protocol_for(error_media_type, settings.max_header_bytes),
        **overrides,
    }
    return uvicorn.Config(app, **options)


def tune_garbage_collection(settings: ServiceSettings) -> None:
    """The young generation's threshold from `gc_young_threshold`; the older generations keep
    theirs."""
    _, older, oldest = gc.get_threshold()
    gc.set_threshold(settings.gc_young_threshold, older, oldest)


def serve(app: ASGIApp, settings: ServiceSettings, *, error_media_type: str) -> None:
    """Run the service until SIGINT/SIGTERM."""
    tune_garbage_collection(settings)
    uvicorn.Server(uvicorn_config(app, settings, error_media_type=error_media_type)).run()
