"""The CDS Hooks bare baseline: an ASGI endpoint that reads the hook request and answers one
fixed card — no JWT, no validation, no lookup, no tracing, no product code.

Run as `python -m bench.bare_cds_hooks PORT`.
"""

from __future__ import annotations

import sys

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

FIXED_CARD = {
    "uuid": "6b9f0c1e-5d2a-4c1b-9e57-0f3c2a8d4e11",
    "summary": "High risk of clinical deterioration: 53% within 24 h",
    "indicator": "critical",
    "detail": "A fixed card.",
    "source": {"label": "bare baseline"},
}


async def answer(request: Request) -> Response:
    await request.body()
    return JSONResponse({"cards": [FIXED_CARD]})


async def healthz(_request: Request) -> Response:
    return Response(b"ok")


def main() -> None:
    app = Starlette(
        routes=[
            Route("/cds-services/{service_id}", answer, methods=["POST"]),
            Route("/healthz", healthz),
        ]
    )
    uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning", http="httptools")


if __name__ == "__main__":
    main()
