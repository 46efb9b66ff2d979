from __future__ import annotations

import pytest
from pydantic import SecretStr, ValidationError

from cdsflow.listener.settings import Settings

WEAK_SECRET = "changethis"


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    for name in list(os.environ):
        if name.startswith("CDSFLOW_"):
            monkeypatch.delenv(name)


def test_the_channel_secret_has_no_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CDSFLOW_EHR_BASE_URL", "http://ehr.test/fhir")
    with pytest.raises(ValidationError, match="channel_secret"):
        Settings()


def test_the_ehr_base_url_is_required(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CDSFLOW_CHANNEL_SECRET", "a-long-enough-channel-secret")
    with pytest.raises(ValidationError, match="ehr_base_url"):
        Settings()


def test_defaults_and_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CDSFLOW_CHANNEL_SECRET", "a-long-enough-channel-secret")
    monkeypatch.setenv("CDSFLOW_EHR_BASE_URL", "http://ehr.test/fhir/")
    monkeypatch.setenv("CDSFLOW_KAFKA_IDEMPOTENCE", "false")

    settings = Settings()

    assert settings.channel_secret.get_secret_value() == "a-long-enough-channel-secret"
    assert settings.ehr_base_url == "http://ehr.test/fhir"
    assert settings.kafka_idempotence is False
    assert settings.kafka_bootstrap == "127.0.0.1:9092"
    assert settings.clinical_events_topic == "cdsflow.clinical-events.v1"
    assert settings.http_port == 8081
    assert settings.max_notification_bytes == 1024 * 1024
    assert settings.publish_timeout_s == 5.0


def test_a_weak_secret_is_refused_without_being_echoed() -> None:
    with pytest.raises(ValidationError) as refused:
        Settings(channel_secret=SecretStr(WEAK_SECRET), ehr_base_url="http://ehr.test/fhir")
    assert "at least 16 characters" in str(refused.value)
    assert WEAK_SECRET not in str(refused.value)


def test_the_ehr_base_url_must_be_http() -> None:
    with pytest.raises(ValidationError, match="http"):
        Settings(
            channel_secret=SecretStr("a-long-enough-channel-secret"), ehr_base_url="ehr.test/fhir"
        )


def test_the_dedupe_followers_fetch_wait(monkeypatch: pytest.MonkeyPatch) -> None:
    """Its own setting, not the shared consumer one: off every notification's path, it
    defaults to 50 ms (not 5 ms: 200 fetches a second on a broker that holds each for its
    whole wait), within 1-1000 ms (0 would fetch in a loop that never rests)."""
    monkeypatch.setenv("CDSFLOW_CHANNEL_SECRET", "a-long-enough-channel-secret")
    monkeypatch.setenv("CDSFLOW_EHR_BASE_URL", "http://ehr.test/fhir")
    assert Settings().published_events_fetch_max_wait_ms == 50
    monkeypatch.setenv("CDSFLOW_PUBLISHED_EVENTS_FETCH_MAX_WAIT_MS", "5")
    assert Settings().published_events_fetch_max_wait_ms == 5
    for refused in ("-1", "0", "1001", "soon"):
        monkeypatch.setenv("CDSFLOW_PUBLISHED_EVENTS_FETCH_MAX_WAIT_MS", refused)
        with pytest.raises(ValidationError, match="published_events_fetch_max_wait_ms"):
            Settings()
