"""CORS on the CDS Hooks routes (`/cds-services...`), for EHR apps that call a CDS service
from a browser (CDS Hooks: "Cross-Origin Resource Sharing").

Starlette's `CORSMiddleware` does the work; this only keeps it to the CDS Hooks paths, so
that `/healthz`, `/readyz` and `/metrics` never carry CORS headers. A preflight (`OPTIONS`
with `Origin` and `Access-Control-Request-Method`) is answered by the middleware before any
route, so without authentication; every other answer to an allowed origin, a 401 included,
carries `Access-Control-Allow-Origin`, so that the browser lets the app read it. A preflight
from an origin not allowed is refused 403 with an OperationOutcome, like every error of
this API, and without CORS headers (the browser then refuses the call).
"""

from __future__ import annotations

from starlette.datastructures import Headers
from starlette.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp, Receive, Scope, Send

from cdsflow.service import outcome_response

CDS_HOOKS_PATH = "/cds-services"
# what a CDS client sends (its JWT, and JSON); what the app may read back
ALLOWED_HEADERS = ("Authorization", "Content-Type")
EXPOSED_HEADERS = ("WWW-Authenticate",)
ALLOWED_METHODS = ("GET", "POST")
# how long a browser may cache a preflight's answer
PREFLIGHT_MAX_AGE_S = 600


class CdsHooksCors:
    """ASGI middleware: CORS for `allowed_origins` (`*`: any, only without credentials) on
    the CDS Hooks paths; other paths pass through untouched."""

    def __init__(
        self, app: ASGIApp, *, allowed_origins: tuple[str, ...], allow_credentials: bool
    ) -> None:
        if allow_credentials and "*" in allowed_origins:
            raise ValueError("CORS with credentials needs named origins, never '*'")
        self._app = app
        self._cors = CORSMiddleware(
            app,
            allow_origins=allowed_origins,
            allow_methods=ALLOWED_METHODS,
            allow_headers=ALLOWED_HEADERS,
            expose_headers=EXPOSED_HEADERS,
            allow_credentials=allow_credentials,
            max_age=PREFLIGHT_MAX_AGE_S,
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "") if scope["type"] == "http" else ""
        if not (path == CDS_HOOKS_PATH or path.startswith(CDS_HOOKS_PATH + "/")):
            await self._app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        origin = headers.get("origin")
        preflight = (
            scope["method"] == "OPTIONS"
            and origin is not None
            and "access-control-request-method" in headers
        )
        if preflight and not self._cors.is_allowed_origin(origin or ""):
            refused = outcome_response(
                403, "forbidden", "this origin may not call the CDS services from a browser"
            )
            await refused(scope, receive, send)
            return
        await self._cors(scope, receive, send)
