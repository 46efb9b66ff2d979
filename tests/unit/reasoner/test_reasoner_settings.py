"""The reasoner's settings: defaults, the adapter list, a required EHR."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from pydantic import ValidationError

from cdsflow.reasoner.domain.errors import UnknownPatient, UnprocessableEvent
from cdsflow.reasoner.handlers import dlq_error
from cdsflow.reasoner.settings import Settings


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("CDSFLOW_"):
            monkeypatch.delenv(name)


def test_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CDSFLOW_EHR_BASE_URL", "http://ehr.example/fhir/")
    settings = Settings()
    assert settings.ehr_base_url == "http://ehr.example/fhir"
    assert settings.http_port == 8082
    assert settings.clinical_events_topic == "cdsflow.clinical-events.v1"
    assert settings.recommendations_topic == "cdsflow.recommendations.v1"
    assert settings.consumer_group == "cdsflow-reasoner"
    assert settings.triton_grpc_url == "127.0.0.1:8001"
    assert settings.adapters == ()
    assert settings.context_max_readings_per_feed == 8
    assert settings.kafka_fetch_max_wait_ms == 5
    assert settings.kafka_idempotence is True
    assert settings.known_patients_max == 100_000
    assert settings.known_patients_ttl_s == 3600.0


def test_the_known_patients_cache_is_configurable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CDSFLOW_EHR_BASE_URL", "http://ehr.example/fhir")
    monkeypatch.setenv("CDSFLOW_KNOWN_PATIENTS_MAX", "500")
    monkeypatch.setenv("CDSFLOW_KNOWN_PATIENTS_TTL_S", "0")
    settings = Settings()
    assert (settings.known_patients_max, settings.known_patients_ttl_s) == (500, 0.0)
    for name, value in (("MAX", "-1"), ("TTL_S", "-0.5")):
        monkeypatch.setenv(f"CDSFLOW_KNOWN_PATIENTS_{name}", value)
        with pytest.raises(ValidationError):
            Settings()
        monkeypatch.setenv(f"CDSFLOW_KNOWN_PATIENTS_{name}", "1")


def test_adapters_are_a_comma_list_of_files_or_folders(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CDSFLOW_EHR_BASE_URL", "http://ehr.example/fhir")
    monkeypatch.setenv("CDSFLOW_ADAPTERS", " adapters/deterioration-risk.yaml, /etc/cdsflow ,")
    settings = Settings()
    assert settings.adapters == (Path("adapters/deterioration-risk.yaml"), Path("/etc/cdsflow"))


def test_the_ehr_is_required_and_must_be_http() -> None:
    with pytest.raises(ValidationError):
        Settings()
    with pytest.raises(ValidationError):
        Settings(ehr_base_url="ftp://ehr.example/fhir")


def test_dead_letter_errors_never_echo_foreign_exception_messages() -> None:
    assert dlq_error(UnprocessableEvent("resource_json is not JSON")) == "resource_json is not JSON"
    assert dlq_error(UnknownPatient("no such patient")) == "no such patient"
    leaky = KeyError("Patient/p-1 Ada Lovelace")
    assert dlq_error(leaky) == "unexpected KeyError while processing the event"
