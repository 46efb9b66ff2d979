"""The operational HTTP routes every service serves, and its server spans.

Each service checks its own dependencies for `/readyz`; `readiness_response` gives every
service the same answer: 200 when all are reachable, else 503, and a JSON map of each check.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping, Sequence

from fastapi import FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Lifespan, Message, Receive, Scope, Send

from cdsflow.fhir import operation_outcome
from cdsflow.service.requests import RequestRefused
from cdsflow.service.server_spans import ServerSpans
from cdsflow.telemetry import Telemetry

log = logging.getLogger("cdsflow.service.http")

# probes and scrapes are not traced
UNTRACED_PATHS = "healthz,readyz,metrics"


def service_app(title: str, lifespan: Lifespan[FastAPI], *, error_media_type: str) -> FastAPI:
    """The FastAPI app every service starts from: no docs or schema routes, `/path/` a 404
    (never a redirect a client would not follow), every error an OperationOutcome."""
    app = FastAPI(
        title=title,
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
        redirect_slashes=False,
    )
    add_error_answers(app, media_type=error_media_type)
    return app


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


def instrument_app(
    app: FastAPI, telemetry: Telemetry, *, spans_made_by_the_service: Sequence[str] = ()
) -> None:
    """One server span per request (continuing an incoming `traceparent`), none for
    `/healthz`, `/readyz` and `/metrics`, and no per-message receive/send spans.

    `spans_made_by_the_service`: path prefixes on a hot path (the listener's notifications,
    the writeback's CDS Hooks calls) whose server spans are made the cheap way
    (`server_spans.ServerSpans`, added here as the outermost of the app's own middleware);
    the instrumentation leaves them alone. Call it once the app's other middleware is added."""
    if spans_made_by_the_service:
        app.add_middleware(
            ServerSpans, tracer=telemetry.tracer, path_prefixes=tuple(spans_made_by_the_service)
        )
    # the instrumentation's exclusions are searched for in the whole URL: each prefix is
    # anchored just after the URL's authority
    own = [f"//[^/]+{re.escape(prefix)}" for prefix in spans_made_by_the_service]
    FastAPIInstrumentor.instrument_app(
        app,
        tracer_provider=telemetry.tracer_provider,
        excluded_urls=",".join([UNTRACED_PATHS, *own]),
        exclude_spans=["receive", "send"],
    )


_ISSUE_CODES = {401: "security", 403: "forbidden", 404: "not-found", 405: "not-supported"}


def outcome_response(
    status_code: int,
    code: str,
    diagnostics: str,
    *,
    media_type: str = "application/json",
    headers: Mapping[str, str] | None = None,
) -> JSONResponse:
    """An OperationOutcome answer with one issue (no value from the request in it)."""
    return JSONResponse(
        operation_outcome(code, diagnostics),
        status_code=status_code,
        media_type=media_type,
        headers=headers,
    )


def add_error_answers(app: FastAPI, *, media_type: str) -> None:
    """Every error the framework would answer on its own becomes an OperationOutcome of
    `media_type`: unknown paths (404), wrong methods (405), refused requests (4xx), and an
    unexpected failure (500, logged by type only, no trace-back to the client)."""

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> Response:
        code = _ISSUE_CODES.get(exc.status_code, "processing")
        return outcome_response(
            exc.status_code,
            code,
            f"HTTP {exc.status_code}",
            media_type=media_type,
            headers=exc.headers,
        )

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> Response:
        return outcome_response(400, "invalid", "the request is malformed", media_type=media_type)

    @app.exception_handler(RequestRefused)
    async def refused(request: Request, exc: RequestRefused) -> Response:
        return outcome_response(
            exc.status_code, exc.issue_code, exc.description, media_type=media_type
        )

    app.add_middleware(UnexpectedErrorAnswer, media_type=media_type)


class UnexpectedErrorAnswer:
    """An exception nobody handled becomes a 500 OperationOutcome, logged by its type only.

    Starlette's own last-resort handler would re-raise it to uvicorn, which logs the
    trace-back and the exception's text — and that text can quote what the client sent.
    """

    def __init__(self, app: ASGIApp, media_type: str) -> None:
        self._app = app
        self._media_type = media_type

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self._app(scope, receive, tracking_send)
        except Exception as exc:
            log.error(
                "unexpected error answering a request", extra={"error_type": type(exc).__name__}
            )
            if started:
                return  # the answer is under way; the connection closes short
            answer = outcome_response(
                500,
                "exception",
                "internal error; the request was not processed",
                media_type=self._media_type,
            )
            await answer(scope, receive, send)
