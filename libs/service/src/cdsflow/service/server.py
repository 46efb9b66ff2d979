"""Serving a service's ASGI app with uvicorn, with limits on what a client can send.

uvicorn's h11 protocol reads at most `max_header_bytes` of request line and headers before it
gives up (its httptools protocol has no such limit, so a 64 MiB header would be read in
full). A request that is not valid HTTP, or whose header block is too large, is answered in
the service's own error format (an OperationOutcome), not uvicorn's plain text: 431 for the
headers, 400 otherwise. Its body names the rule, never what was sent.

`serve` also sets the process's young-generation garbage-collection threshold
(`gc_young_threshold`): a process-wide setting, so made by the service's own process when it
starts serving, never by `create_app` (which tests call many times in one process).
"""

from __future__ import annotations

import gc
import json
from typing import Any

import h11
import uvicorn
from starlette.types import ASGIApp
from uvicorn.protocols.http.h11_impl import H11Protocol

from cdsflow.fhir import operation_outcome
from cdsflow.service.settings import ServiceSettings


class _OperationOutcomeH11Protocol(H11Protocol):
    """uvicorn's h11 protocol, with protocol errors answered as OperationOutcomes."""

    media_type = "application/json"

    def send_400_response(self, msg: str) -> None:
        # called by uvicorn when h11 refuses the bytes received; `msg` is uvicorn's own text
        unread, _ = self.conn.trailing_data
        limit = self.config.h11_max_incomplete_event_size  # always set by `uvicorn_config`
        if limit is not None and len(unread) > limit:
            status, reason = 431, b"Request Header Fields Too Large"
            outcome = operation_outcome(
                "too-costly", f"the request line and headers exceed the limit of {limit} bytes"
            )
        else:
            status, reason = 400, b"Bad Request"
            outcome = operation_outcome("structure", "the request is not valid HTTP/1.1")
        body = json.dumps(outcome).encode()
        headers = [
            (b"content-type", self.media_type.encode()),
            (b"content-length", str(len(body)).encode()),
            (b"connection", b"close"),
        ]
        for event in (
            h11.Response(status_code=status, headers=headers, reason=reason),
            h11.Data(data=body),
            h11.EndOfMessage(),
        ):
            self.transport.write(self.conn.send(event) or b"")
        self.transport.close()


def protocol_for(media_type: str) -> type[H11Protocol]:
    """The h11 protocol whose protocol-level errors are bodies of `media_type`."""
    return type("ServiceH11Protocol", (_OperationOutcomeH11Protocol,), {"media_type": media_type})


def uvicorn_config(
    app: ASGIApp, settings: ServiceSettings, *, error_media_type: str, **overrides: Any
) -> uvicorn.Config:
    """The service's uvicorn configuration: h11 with the header limit, JSON logging kept."""
    options: dict[str, Any] = {
        "host": settings.http_host,
        "port": settings.http_port,
        # None keeps the JSON logging that the service's telemetry set up
        "log_config": None,
        "http": protocol_for(error_media_type),
        "h11_max_incomplete_event_size": settings.max_header_bytes,
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
