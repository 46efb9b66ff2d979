"""A static bearer token on every request to the EHR (`CDSFLOW_EHR_AUTH=bearer`)."""

from __future__ import annotations

from collections.abc import Generator

import httpx


class StaticBearerAuth(httpx.Auth):
    """`Authorization: Bearer <token>`, the same token always; a 401 is the caller's to see."""

    def __init__(self, token: str) -> None:
        if not token or token.strip() != token:
            raise ValueError("a bearer token must be non-empty, without surrounding whitespace")
        self._token = token

    def __repr__(self) -> str:
        return "StaticBearerAuth(token=**********)"

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        request.headers["Authorization"] = f"Bearer {self._token}"
        yield request
