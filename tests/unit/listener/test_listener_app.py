"""The app's own routes, in-process without its lifespan (so without a broker)."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from pydantic import SecretStr

from cdsflow.listener.app import create_app
from cdsflow.listener.settings import Settings
from cdsflow.telemetry import Telemetry, TelemetrySettings, setup_telemetry

from .vital_signs import CHANNEL_SECRET, EHR_BASE_URL


@pytest.fixture
def telemetry(pseudonym_key: str) -> Iterator[Telemetry]:
    telemetry = setup_telemetry(
        "listener", TelemetrySettings(pseudonym_key=SecretStr(pseudonym_key))
    )
    yield telemetry
    telemetry.shutdown()


@pytest.fixture
def client(telemetry: Telemetry) -> httpx.AsyncClient:
    settings = Settings(channel_secret=SecretStr(CHANNEL_SECRET), ehr_base_url=EHR_BASE_URL)
    app = create_app(settings, telemetry=telemetry)
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://l.test")


async def test_alive_without_a_broker(client: httpx.AsyncClient) -> None:
    async with client:
        assert (await client.get("/healthz")).status_code == 200


async def test_metrics_declare_the_notification_counter(client: httpx.AsyncClient) -> None:
    async with client:
        response = await client.get("/metrics")
    assert response.status_code == 200
    assert "# TYPE cdsflow_listener_notifications_total counter" in response.text
    assert "# TYPE cdsflow_listener_publish_seconds histogram" in response.text


@pytest.mark.parametrize(
    ("method", "path", "status_code", "issue_code"),
    [
        ("GET", "/fhir/notifications/rest-hook/Observation/obs-1", 405, "not-supported"),
        ("DELETE", "/fhir/notifications/rest-hook", 405, "not-supported"),
        ("GET", "/fhir/Observation/obs-1", 404, "not-found"),
    ],
)
async def test_unknown_routes_and_methods_answer_operation_outcomes(
    client: httpx.AsyncClient, method: str, path: str, status_code: int, issue_code: str
) -> None:
    async with client:
        response = await client.request(method, path)
    assert response.status_code == status_code
    assert response.headers["content-type"].startswith("application/fhir+json")
    assert response.json()["issue"][0]["code"] == issue_code
