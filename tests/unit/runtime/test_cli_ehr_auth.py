"""The CLI's own calls to the EHR use the services' EHR auth (`CDSFLOW_EHR_AUTH`), read
from the same environment by the same settings."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from cdsflow.runtime.cli import main
from cdsflow.runtime.ehr_setup import EhrAuthMisconfigured, ehr_http_client
from cdsflow.runtime.sandbox_ehr_client import HookSigningKey, new_private_key

EHR = "http://127.0.0.1:8080/fhir"
TOKEN = "cli-static-token-0123456789"


@pytest.fixture(autouse=True)
def no_ehr_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("CDSFLOW_EHR_AUTH", "CDSFLOW_EHR_BEARER_TOKEN", "CDSFLOW_EHR_BASE_URL"):
        monkeypatch.delenv(name, raising=False)


async def _authorization(client: httpx.AsyncClient) -> str | None:
    async with client:
        answer = await client.get(f"{EHR}/metadata")
    authorization = answer.json()["authorization"]
    assert authorization is None or isinstance(authorization, str)
    return authorization


def _echo(request: httpx.Request) -> httpx.Response:
    return httpx.Response(200, json={"authorization": request.headers.get("authorization")})


async def test_without_settings_the_ehr_is_called_without_credentials() -> None:
    client = ehr_http_client(EHR, 5, transport=httpx.MockTransport(_echo))
    assert await _authorization(client) is None


async def test_a_static_bearer_from_the_environment_goes_on_each_call(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CDSFLOW_EHR_AUTH", "bearer")
    monkeypatch.setenv("CDSFLOW_EHR_BEARER_TOKEN", TOKEN)
    client = ehr_http_client(EHR, 5, transport=httpx.MockTransport(_echo))
    assert await _authorization(client) == f"Bearer {TOKEN}"


def test_incomplete_settings_are_named_without_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CDSFLOW_EHR_AUTH", "smart-backend")
    monkeypatch.setenv("CDSFLOW_EHR_BEARER_TOKEN", TOKEN)
    with pytest.raises(EhrAuthMisconfigured) as refused:
        ehr_http_client(EHR, 5)
    assert "CDSFLOW_EHR" in str(refused.value)
    assert TOKEN not in str(refused.value)


def test_hook_with_incomplete_ehr_settings_fails_with_a_message(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("CDSFLOW_EHR_AUTH", "bearer")  # and no token
    key_file = tmp_path / "key.pem"
    HookSigningKey(new_private_key(), issuer="http://127.0.0.1:2").save(key_file)
    endpoints = tmp_path / "endpoints.json"
    endpoints.write_text(
        json.dumps(
            {
                "cds_services": "http://127.0.0.1:1/cds-services",
                "ehr": EHR,
                "ehr_client_issuer": "http://127.0.0.1:2",
                "ehr_client_key": str(key_file),
            }
        )
    )

    code = main(["hook", "patient-view", "--patient", "p-1", "--endpoints-file", str(endpoints)])

    assert code == 1
    error = capsys.readouterr().err
    assert "cdsflow hook: the EHR settings are incomplete" in error
    assert "CDSFLOW_EHR_BEARER_TOKEN" in error
