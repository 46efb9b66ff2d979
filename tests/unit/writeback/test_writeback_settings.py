"""The writeback's settings: defaults, required values, refusals."""

from __future__ import annotations

import os

import pytest
from pydantic import ValidationError

from cdsflow.writeback.settings import Settings


@pytest.fixture(autouse=True)
def no_cdsflow_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("CDSFLOW_"):
            monkeypatch.delenv(name)


def test_defaults() -> None:
    settings = Settings(ehr_base_url="http://ehr.example.org/fhir/")

    assert settings.http_port == 8083
    assert settings.recommendations_topic == "cdsflow.recommendations.v1"
    assert settings.consumer_group == "cdsflow-writeback"
    assert settings.writeback_enabled is True
    assert settings.kafka_idempotence is True
    assert settings.kafka_fetch_max_wait_ms == 5
    assert settings.ehr_base_url == "http://ehr.example.org/fhir"


def test_read_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CDSFLOW_EHR_BASE_URL", "https://ehr.example.org/r4")
    monkeypatch.setenv("CDSFLOW_WRITEBACK_ENABLED", "false")
    monkeypatch.setenv("CDSFLOW_RECOMMENDATIONS_TOPIC", "cdsflow.recommendations.v1.test")

    settings = Settings()

    assert settings.writeback_enabled is False
    assert settings.recommendations_topic == "cdsflow.recommendations.v1.test"


def test_the_ehr_has_no_default() -> None:
    with pytest.raises(ValidationError, match="ehr_base_url"):
        Settings()


def test_the_ehr_base_url_must_be_http() -> None:
    with pytest.raises(ValidationError, match="http"):
        Settings(ehr_base_url="ftp://ehr.example.org")
