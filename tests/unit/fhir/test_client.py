"""EhrClient's own logic over httpx.MockTransport: retries, 404s, paging, conditional create.
(Against a real FHIR server it runs in every integration and e2e test.)"""

from __future__ import annotations

import json
import logging

import httpx
import pytest

from cdsflow.fhir import EhrClient, EhrError

BASE = "http://ehr.test/fhir"


def _client(handler: httpx.MockTransport) -> EhrClient:
    return EhrClient(BASE, httpx.AsyncClient(transport=handler), attempts=3)


async def test_read_retries_a_busy_ehr_then_returns_the_resource() -> None:
    answers = iter([503, 429, 200])
    seen: list[str] = []

    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(str(request.url))
        status = next(answers)
        return httpx.Response(status, json={"resourceType": "Patient", "id": "p1"})

    resource = await _client(httpx.MockTransport(handle)).read("Patient", "p1")
    assert resource == {"resourceType": "Patient", "id": "p1"}
    assert seen == [f"{BASE}/Patient/p1"] * 3


async def test_read_of_a_missing_resource_is_none() -> None:
    client = _client(httpx.MockTransport(lambda _: httpx.Response(404, json={})))
    assert await client.read("Patient", "gone") is None


async def test_refusal_is_not_retried_and_names_no_url() -> None:
    calls = 0

    def handle(_: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        return httpx.Response(400, json={"resourceType": "OperationOutcome"})

    with pytest.raises(EhrError) as caught:
        await _client(httpx.MockTransport(handle)).read("Patient", "secret-id-123")
    assert calls == 1
    assert caught.value.status_code == 400
    assert "secret-id-123" not in str(caught.value)


async def test_outage_after_every_attempt_raises_with_the_status() -> None:
    client = _client(httpx.MockTransport(lambda _: httpx.Response(503)))
    with pytest.raises(EhrError) as caught:
        await client.search("Observation", [("patient", "Patient/p1")])
    assert caught.value.status_code == 503


async def test_search_follows_next_links_on_the_ehr_only(
    caplog: pytest.LogCaptureFixture,
) -> None:
    def bundle(entries: list[str], next_url: str | None) -> dict[str, object]:
        links = [{"relation": "next", "url": next_url}] if next_url else []
        return {
            "resourceType": "Bundle",
            "link": links,
            "entry": [{"resource": {"resourceType": "Observation", "id": i}} for i in entries]
            + [
                {
                    "resource": {"resourceType": "Patient", "id": "inc"},
                    "search": {"mode": "include"},
                }
            ],
        }

    pages = {
        f"{BASE}/Observation?patient=Patient%2Fp1": bundle(["o1"], f"{BASE}/Observation?page=2"),
        f"{BASE}/Observation?page=2": bundle(["o2"], "http://elsewhere.test/fhir/page3"),
    }

    def handle(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json=pages[str(request.url)])

    with caplog.at_level(logging.WARNING, logger="cdsflow.fhir"):
        found = await _client(httpx.MockTransport(handle)).search(
            "Observation", [("patient", "Patient/p1")]
        )
    assert [r["id"] for r in found] == ["o1", "o2"]
    # the page not followed is said, once, without its URL
    [warning] = [r for r in caplog.records if r.name == "cdsflow.fhir"]
    assert "off the configured EHR base URL" in warning.getMessage()
    assert "elsewhere.test" not in caplog.text


async def test_conditional_create_sends_if_none_exist() -> None:
    sent: list[httpx.Request] = []

    def handle(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        return httpx.Response(201, json={**json.loads(request.content), "id": "r1"})

    created = await _client(httpx.MockTransport(handle)).create(
        {"resourceType": "RiskAssessment", "status": "final"}, if_none_exist="_tag=urn:x|1"
    )
    assert created["id"] == "r1"
    (request,) = sent
    assert request.method == "POST"
    assert str(request.url) == f"{BASE}/RiskAssessment"
    assert request.headers["If-None-Exist"] == "_tag=urn:x|1"
    assert request.headers["Content-Type"] == "application/fhir+json"


def test_only_urls_under_the_base_are_on_the_ehr() -> None:
    client = EhrClient(BASE, httpx.AsyncClient())
    assert client.is_on_ehr(f"{BASE}/Patient/1")
    assert not client.is_on_ehr("http://ehr.test/fhirx/Patient/1")
    assert not client.is_on_ehr("http://evil.test/fhir/Patient/1")


async def test_an_answer_that_is_not_json_is_an_ehr_error_not_a_crash() -> None:
    client = _client(httpx.MockTransport(lambda _: httpx.Response(200, content=b"<html>")))
    with pytest.raises(EhrError, match="not JSON"):
        await client.read("Patient", "p1")


async def test_a_transaction_is_posted_to_the_base_once_and_its_error_says_when_to_retry() -> None:
    seen: list[httpx.Request] = []

    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(
            503,
            headers={"Retry-After": "7"},
            json={"resourceType": "OperationOutcome", "issue": [{"code": "transient"}]},
        )

    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": []}
    with pytest.raises(EhrError) as caught:
        await _client(httpx.MockTransport(handle)).transaction(bundle)
    assert len(seen) == 1  # the caller owns the retries
    assert str(seen[0].url) == BASE
    assert json.loads(seen[0].content) == bundle
    assert caught.value.status_code == 503
    assert caught.value.retry_after_s == 7.0
    assert caught.value.issue_codes == ("transient",)


async def test_a_transaction_already_serialized_is_posted_as_it_is() -> None:
    seen: list[httpx.Request] = []

    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"resourceType": "Bundle", "type": "transaction-response"})

    body = b'{"resourceType":"Bundle","type":"transaction","entry":[]}'
    answer = await _client(httpx.MockTransport(handle)).transaction(body)

    assert answer["type"] == "transaction-response"
    [request] = seen
    assert request.content == body
    assert request.headers["content-type"] == "application/fhir+json"
    assert request.headers["prefer"] == "return=minimal"


async def test_a_refusal_names_its_issue_codes_but_never_its_diagnostics() -> None:
    outcome = {
        "resourceType": "OperationOutcome",
        "issue": [
            {"code": "invalid", "diagnostics": "Patient secret-name-123 is wrong"},
            {"code": "Patient secret-name-123"},
        ],
    }
    client = _client(httpx.MockTransport(lambda _: httpx.Response(422, json=outcome)))
    with pytest.raises(EhrError) as caught:
        await client.transaction({"resourceType": "Bundle", "type": "transaction"})
    assert caught.value.status_code == 422
    assert caught.value.issue_codes == ("invalid",)
    assert caught.value.retry_after_s is None
    assert "secret-name-123" not in str(caught.value)


@pytest.mark.parametrize(
    ("status", "body"),
    [
        (404, {"resourceType": "OperationOutcome"}),  # a read's 404 is None; a transaction's fails
        (200, {"resourceType": "OperationOutcome"}),
        (200, {"resourceType": "Bundle", "type": "searchset"}),
    ],
)
async def test_a_transaction_must_be_answered_with_a_bundle_response(
    status: int, body: dict[str, str]
) -> None:
    client = _client(httpx.MockTransport(lambda _: httpx.Response(status, json=body)))
    with pytest.raises(EhrError) as caught:
        await client.transaction({"resourceType": "Bundle", "type": "transaction"})
    assert caught.value.status_code == status
