"""The SERVER span of each request on a service's hot paths, made the cheap way.

The listener's notifications and the writeback's CDS Hooks calls are traced: one SERVER span
per request that continues the caller's `traceparent` when it sends one, current while the
request is handled (the handlers set its `cdsflow.*` attributes and links, the producer span
is its child, log lines carry its ids). OpenTelemetry's FastAPI instrumentation made that
span at a higher cost (its ASGI middleware collects a dozen attributes from the request,
matches the route again, wraps every send, and exports a bigger span): making it here took
the listener's CPU per notification from 2.59 to 2.27 ms (see the listener's README, "Cost
per notification"). This middleware makes the same span with the stable HTTP attributes only:
`http.request.method`, `url.scheme`, `network.protocol.version`, `http.route` and
`http.response.status_code` (`error.type` and status ERROR on a 5xx). The name is
`{method} {route}`, as the instrumentation names it (the method alone when no route matched).
`instrument_app(spans_made_by_the_service=...)` puts it in front of the paths it names and
leaves every other route to the instrumentation.
"""

from __future__ import annotations

from collections.abc import Sequence

from opentelemetry import propagate, trace
from opentelemetry.trace import SpanKind, Status, StatusCode
from starlette.types import ASGIApp, Message, Receive, Scope, Send


class ServerSpans:
    """ASGI middleware: a SERVER span for each HTTP request whose path starts with one of
    `path_prefixes`; other requests pass through untouched."""

    def __init__(self, app: ASGIApp, tracer: trace.Tracer, path_prefixes: Sequence[str]) -> None:
        self._app = app
        self._tracer = tracer
        self._path_prefixes = tuple(path_prefixes)
        # the headers the propagator reads (traceparent, tracestate, baggage), as ASGI names
        self._context_headers = frozenset(
            field.encode("latin-1") for field in propagate.get_global_textmap().fields
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith(self._path_prefixes):
            await self._app(scope, receive, send)
            return
        method = scope["method"]
        carrier = {
            name.decode("latin-1"): value.decode("latin-1")
            for name, value in scope["headers"]
            if name in self._context_headers
        }
        with self._tracer.start_as_current_span(
            method,
            context=propagate.extract(carrier) if carrier else None,
            kind=SpanKind.SERVER,
            attributes={
                "http.request.method": method,
                "url.scheme": scope.get("scheme", "http"),
                "network.protocol.version": scope.get("http_version", "1.1"),
            },
        ) as span:

            async def send_with_status(message: Message) -> None:
                if message["type"] == "http.response.start":
                    status = int(message["status"])
                    span.set_attribute("http.response.status_code", status)
                    if status >= 500:
                        span.set_attributes({"error.type": str(status)})
                        span.set_status(Status(StatusCode.ERROR))
                await send(message)

            try:
                await self._app(scope, receive, send_with_status)
            finally:
                # the route's template (never the concrete path), once routing has found it
                route = getattr(scope.get("route"), "path", None)
                if isinstance(route, str):
                    span.update_name(f"{method} {route}")
                    span.set_attribute("http.route", route)
