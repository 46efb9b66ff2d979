"""The operational HTTP routes every service serves, and its server spans.

Each service checks its own dependencies for `/readyz`; `readiness_response` gives every
service the same answer: 200 when all are reachable, else 503, and a JSON map of each check.
"""

from __future__ import annotations

from collections.abc import Mapping

from fastapi import FastAPI, Response
from fastapi.responses import JSONResponse
from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor

from cdsflow.telemetry import Telemetry

# probes and scrapes are not traced
UNTRACED_PATHS = "healthz,readyz,metrics"


def add_operational_routes(app: FastAPI, telemetry: Telemetry) -> None:
    """`GET /healthz` (200 `ok` while the process runs) and `GET /metrics` (Prometheus)."""

    @app.get("/healthz", include_in_schema=False)
    async def healthz() -> Response:
        return Response("ok", media_type="text/plain")

    @app.get("/metrics", include_in_schema=False)
    async def prometheus_metrics() -> Response:
        body, content_type = telemetry.metrics.exposition()
        return Response(body, media_type=content_type)


def readiness_response(checks: Mapping[str, bool]) -> JSONResponse:
    """`{"broker": true, "model": false}` with 200 when every check holds, else 503."""
    return JSONResponse(dict(checks), status_code=200 if all(checks.values()) else 503)


def instrument_app(app: FastAPI, telemetry: Telemetry) -> None:
    """One server span per request (continuing an incoming `traceparent`), none for
    `/healthz`, `/readyz` and `/metrics`, and no per-message receive/send spans."""
    FastAPIInstrumentor.instrument_app(
        app,
        tracer_provider=telemetry.tracer_provider,
        excluded_urls=UNTRACED_PATHS,
        exclude_spans=["receive", "send"],
    )
