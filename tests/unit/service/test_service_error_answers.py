"""One error format per API: framework errors and unexpected failures as OperationOutcomes,
and the shared request checks (issue 5, defects 3, 4 and 6). In-process over ASGI."""

from __future__ import annotations

import httpx
import pytest
from fastapi import FastAPI, Request

from cdsflow.service import (
    RequestRefused,
    add_error_answers,
    is_json_media_type,
    read_bounded_body,
    require_json_media_type,
    single_header,
)

SECRET_VALUE = "Jane-Smith-1950"


@pytest.fixture
def client() -> httpx.AsyncClient:
    app = FastAPI(redirect_slashes=False)
    add_error_answers(app, media_type="application/fhir+json")

    @app.post("/things")
    async def things(request: Request) -> dict[str, int]:
        single_header(request, "authorization")
        require_json_media_type(request, ("application/json",))
        return {"bytes": len(await read_bounded_body(request, 16))}

    @app.get("/broken")
    async def broken() -> None:
        raise RuntimeError(SECRET_VALUE)

    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    return httpx.AsyncClient(transport=transport, base_url="http://svc.test")


@pytest.mark.parametrize(
    ("method", "path", "status", "code"),
    [
        ("GET", "/nowhere", 404, "not-found"),
        ("GET", "/things", 405, "not-supported"),
        ("POST", "/things/", 404, "not-found"),
    ],
)
async def test_framework_errors_are_operation_outcomes_and_nothing_redirects(
    client: httpx.AsyncClient, method: str, path: str, status: int, code: str
) -> None:
    async with client:
        response = await client.request(method, path)
    assert response.status_code == status
    assert response.headers["content-type"].startswith("application/fhir+json")
    assert response.json()["issue"][0]["code"] == code


async def test_an_unexpected_failure_is_a_500_without_its_text(
    client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    async with client:
        response = await client.get("/broken")
    assert response.status_code == 500
    assert response.json()["issue"][0]["code"] == "exception"
    assert SECRET_VALUE not in response.text
    assert "Traceback" not in response.text
    assert SECRET_VALUE not in caplog.text
    assert "RuntimeError" in str([r.__dict__ for r in caplog.records])


@pytest.mark.parametrize(
    ("headers", "body", "status"),
    [
        ({"Content-Type": "application/json"}, b"{}", 200),
        ({}, b"{}", 200),
        ({"Content-Type": "application/json"}, b"x" * 17, 413),
        ({"Content-Type": "text/plain"}, b"{}", 415),
        ([("Authorization", "a"), ("Authorization", "b")], b"{}", 400),
    ],
)
async def test_request_checks(
    client: httpx.AsyncClient,
    headers: dict[str, str] | list[tuple[str, str]],
    body: bytes,
    status: int,
) -> None:
    async with client:
        response = await client.post("/things", content=body, headers=headers)
    assert response.status_code == status


@pytest.mark.parametrize(
    ("content_type", "accepted"),
    [
        ("application/json", True),
        ("Application/JSON; charset=UTF-8", True),
        ('application/json; charset="utf-8"', True),
        ("application/json; profile=x", True),
        (";;;", False),
        ("application/json;;;", False),
        ("application/json; charset", False),
        ("application/json; =x", False),
        ("application/json; charset=utf-16", False),
        ("application/json; charset=latin-1", False),
        ("text/json", False),
    ],
)
def test_json_media_types(content_type: str, accepted: bool) -> None:
    assert is_json_media_type(content_type, ("application/json",)) is accepted


def test_a_refusal_carries_what_the_answer_needs() -> None:
    refused = RequestRefused(413, "too-costly", "too-large", "the body exceeds the limit")
    assert (refused.status_code, refused.issue_code, refused.reason) == (
        413,
        "too-costly",
        "too-large",
    )
