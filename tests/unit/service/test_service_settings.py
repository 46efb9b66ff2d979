"""The settings every service shares: required EHR URL, defaults, environment, subclasses."""

from __future__ import annotations

import os

import pytest
from pydantic import Field, SecretStr, ValidationError

from cdsflow.service import HttpPort, ServiceSettings


class ExampleSettings(ServiceSettings):
    """A service's settings the way the services write them."""

    http_port: HttpPort = 8089
    readiness_timeout_s: float = Field(default=0.5, gt=0)
    example_secret: SecretStr = SecretStr("unset-example-secret")


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("CDSFLOW_"):
            monkeypatch.delenv(name)


def test_defaults() -> None:
    settings = ServiceSettings(ehr_base_url="http://ehr.test/fhir", http_port=8080)

    assert settings.ehr_base_url == "http://ehr.test/fhir"
    assert settings.kafka_bootstrap == "127.0.0.1:9092"
    assert settings.kafka_idempotence is True
    assert settings.kafka_fetch_max_wait_ms == 5
    assert settings.http_host == "0.0.0.0"
    assert settings.http_port == 8080
    assert settings.readiness_timeout_s == 2.0
    assert settings.gc_young_threshold == 20_000


def test_read_from_cdsflow_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CDSFLOW_EHR_BASE_URL", "https://ehr.test/r4/")
    monkeypatch.setenv("CDSFLOW_KAFKA_BOOTSTRAP", "kafka-1:9092,kafka-2:9092")
    monkeypatch.setenv("CDSFLOW_KAFKA_IDEMPOTENCE", "false")
    monkeypatch.setenv("CDSFLOW_KAFKA_FETCH_MAX_WAIT_MS", "50")
    monkeypatch.setenv("CDSFLOW_HTTP_HOST", "127.0.0.1")
    monkeypatch.setenv("CDSFLOW_HTTP_PORT", "9000")
    monkeypatch.setenv("CDSFLOW_READINESS_TIMEOUT_S", "3.5")
    monkeypatch.setenv("CDSFLOW_GC_YOUNG_THRESHOLD", "5000")
    monkeypatch.setenv("CDSFLOW_SOMETHING_ELSE", "ignored")

    settings = ServiceSettings()

    assert settings.ehr_base_url == "https://ehr.test/r4"
    assert settings.kafka_bootstrap == "kafka-1:9092,kafka-2:9092"
    assert settings.kafka_idempotence is False
    assert settings.kafka_fetch_max_wait_ms == 50
    assert settings.http_host == "127.0.0.1"
    assert settings.http_port == 9000
    assert settings.readiness_timeout_s == 3.5
    assert settings.gc_young_threshold == 5000


def test_the_ehr_base_url_is_required() -> None:
    with pytest.raises(ValidationError, match="ehr_base_url"):
        ServiceSettings(http_port=8080)


@pytest.mark.parametrize("url", ["ftp://ehr.test/fhir", "ehr.test/fhir", "/fhir", ""])
def test_the_ehr_base_url_must_be_http(url: str) -> None:
    with pytest.raises(ValidationError, match="http"):
        ServiceSettings(ehr_base_url=url, http_port=8080)


def test_trailing_slashes_are_stripped_from_the_ehr_base_url() -> None:
    settings = ServiceSettings(ehr_base_url="http://ehr.test/fhir//", http_port=8080)
    assert settings.ehr_base_url == "http://ehr.test/fhir"


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("http_port", 0),
        ("http_port", 65536),
        ("kafka_fetch_max_wait_ms", -1),
        ("readiness_timeout_s", 0),
        ("gc_young_threshold", 0),
        ("gc_young_threshold", -1),
        ("gc_young_threshold", "many"),
    ],
)
def test_out_of_range_values_are_refused(field: str, value: object) -> None:
    values: dict[str, object] = {"ehr_base_url": "http://ehr.test/fhir", "http_port": 8080}
    values[field] = value
    with pytest.raises(ValidationError, match=field):
        ServiceSettings(**values)  # type: ignore[arg-type]


def test_a_service_sets_its_own_port_and_readiness_defaults(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CDSFLOW_EHR_BASE_URL", "http://ehr.test/fhir/")

    settings = ExampleSettings()

    assert settings.http_port == 8089
    assert settings.readiness_timeout_s == 0.5
    assert settings.ehr_base_url == "http://ehr.test/fhir"  # the shared validator still runs
    with pytest.raises(ValidationError, match="http_port"):
        ExampleSettings(http_port=70000)


def test_a_refused_value_is_not_echoed_in_the_error() -> None:
    leaked = "ftp://user:hunter2-password@ehr.test/fhir"
    with pytest.raises(ValidationError) as refused:
        ExampleSettings(ehr_base_url=leaked)
    assert "hunter2-password" not in str(refused.value)
