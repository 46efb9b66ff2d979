"""EHR auth settings: `none`, `bearer`, `smart-backend`, validated together at start, and the
`httpx.Auth` that `ehr_auth(settings)` builds from them."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from pydantic import ValidationError

from cdsflow.fhir import SmartBackendAuth, StaticBearerAuth
from cdsflow.service import HttpPort, ServiceSettings, ehr_auth
from tests.support.signing_keys import write_key_pair


class ExampleSettings(ServiceSettings):
    http_port: HttpPort = 8089


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("CDSFLOW_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("CDSFLOW_EHR_BASE_URL", "https://ehr.test/fhir")


@pytest.fixture
def smart_backend_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    key_file = write_key_pair(tmp_path, "cdsflow", "ES384").private_key_file
    monkeypatch.setenv("CDSFLOW_EHR_AUTH", "smart-backend")
    monkeypatch.setenv("CDSFLOW_EHR_CLIENT_ID", "cdsflow-client")
    monkeypatch.setenv("CDSFLOW_EHR_PRIVATE_KEY_FILE", str(key_file))
    monkeypatch.setenv("CDSFLOW_EHR_KEY_ID", "cdsflow-key-1")
    return key_file


def _refusal(monkeypatch: pytest.MonkeyPatch, **env: str) -> str:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ValidationError) as err:
        ExampleSettings()
    return str(err.value)


def test_no_auth_by_default() -> None:
    settings = ExampleSettings()

    assert settings.ehr_auth == "none"
    assert settings.ehr_scopes == "system/*.read"
    assert settings.ehr_token_url is None
    assert ehr_auth(settings) is None


def test_a_static_bearer_token(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CDSFLOW_EHR_AUTH", "bearer")
    monkeypatch.setenv("CDSFLOW_EHR_BEARER_TOKEN", "static-token-0123456789")

    settings = ExampleSettings()

    assert "static-token" not in repr(settings)
    assert isinstance(ehr_auth(settings), StaticBearerAuth)


def test_smart_backend_services(monkeypatch: pytest.MonkeyPatch, smart_backend_env: Path) -> None:
    monkeypatch.setenv("CDSFLOW_EHR_SCOPES", "system/Observation.rs  system/Patient.rs")
    monkeypatch.setenv("CDSFLOW_EHR_TOKEN_URL", "https://auth.ehr.test/token")

    settings = ExampleSettings()
    auth = ehr_auth(settings)

    assert settings.ehr_private_key_file == smart_backend_env
    assert isinstance(auth, SmartBackendAuth)
    assert "cdsflow-client" in repr(auth)


def test_an_empty_token_url_means_discovery(
    monkeypatch: pytest.MonkeyPatch, smart_backend_env: Path
) -> None:
    monkeypatch.setenv("CDSFLOW_EHR_TOKEN_URL", "")
    assert ExampleSettings().ehr_token_url is None


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"CDSFLOW_EHR_AUTH": "basic"}, "Input should be 'none', 'bearer' or 'smart-backend'"),
        ({"CDSFLOW_EHR_AUTH": "bearer"}, "CDSFLOW_EHR_AUTH=bearer needs CDSFLOW_EHR_BEARER_TOKEN"),
        (
            {"CDSFLOW_EHR_AUTH": "bearer", "CDSFLOW_EHR_BEARER_TOKEN": "two words"},
            "one token, without whitespace",
        ),
        (
            {"CDSFLOW_EHR_BEARER_TOKEN": "static-token-0123456789"},
            "CDSFLOW_EHR_BEARER_TOKEN is set but CDSFLOW_EHR_AUTH is not `bearer`",
        ),
        (
            {"CDSFLOW_EHR_AUTH": "smart-backend"},
            "CDSFLOW_EHR_AUTH=smart-backend needs CDSFLOW_EHR_CLIENT_ID, "
            "CDSFLOW_EHR_PRIVATE_KEY_FILE, CDSFLOW_EHR_KEY_ID",
        ),
    ],
)
def test_incomplete_or_contradictory_auth_is_refused(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], message: str
) -> None:
    refusal = _refusal(monkeypatch, **env)
    assert message in refusal
    assert "static-token" not in refusal


def test_smart_backend_without_a_key_file_is_refused(
    monkeypatch: pytest.MonkeyPatch, smart_backend_env: Path
) -> None:
    monkeypatch.delenv("CDSFLOW_EHR_PRIVATE_KEY_FILE")
    assert "needs CDSFLOW_EHR_PRIVATE_KEY_FILE" in _refusal(monkeypatch)


def test_smart_backend_with_a_missing_or_unusable_key_file_is_refused(
    monkeypatch: pytest.MonkeyPatch, smart_backend_env: Path, tmp_path: Path
) -> None:
    weak = write_key_pair(tmp_path, "weak", "ES256").private_key_file

    assert "cannot read the private key file" in _refusal(
        monkeypatch, CDSFLOW_EHR_PRIVATE_KEY_FILE=str(tmp_path / "absent.pem")
    )
    assert "neither RSA (RS384) nor EC P-384 (ES384)" in _refusal(
        monkeypatch, CDSFLOW_EHR_PRIVATE_KEY_FILE=str(weak)
    )


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"CDSFLOW_EHR_SCOPES": " "}, "needs CDSFLOW_EHR_SCOPES"),
        ({"CDSFLOW_EHR_TOKEN_URL": "auth.ehr.test/token"}, "must be an http(s) URL"),
        (
            {"CDSFLOW_EHR_TOKEN_URL": "http://auth.ehr.test/token"},
            "must be https when the EHR is https",
        ),
    ],
)
def test_smart_backend_scopes_and_token_url_are_checked(
    monkeypatch: pytest.MonkeyPatch, smart_backend_env: Path, env: dict[str, str], message: str
) -> None:
    assert message in _refusal(monkeypatch, **env)


def test_a_key_file_without_smart_backend_is_refused(
    monkeypatch: pytest.MonkeyPatch, smart_backend_env: Path
) -> None:
    assert "CDSFLOW_EHR_AUTH is not `smart-backend`" in _refusal(
        monkeypatch, CDSFLOW_EHR_AUTH="none"
    )
