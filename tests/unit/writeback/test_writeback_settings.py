"""The writeback's settings: defaults, required values, refusals."""

from __future__ import annotations

import os

import pytest
from pydantic import ValidationError

from cdsflow.writeback.settings import BATCH_START_WITHIN_S, WRITE_RETRIES_BUDGET_S, Settings


@pytest.fixture(autouse=True)
def no_cdsflow_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("CDSFLOW_"):
            monkeypatch.delenv(name)


TRUSTED = '[{"iss": "https://ehr.example.org/", "jwks_url": "https://ehr.example.org/jwks"}]'


@pytest.fixture
def trusted_ehr(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CDSFLOW_TRUSTED_ISSUERS", TRUSTED)
    monkeypatch.setenv("CDSFLOW_CDS_PUBLIC_BASE_URL", "https://cds.example.org/")


@pytest.mark.usefixtures("trusted_ehr")
def test_defaults() -> None:
    settings = Settings(ehr_base_url="http://ehr.example.org/fhir/")

    assert settings.http_port == 8083
    assert settings.recommendations_topic == "cdsflow.recommendations.v1"
    assert settings.consumer_group == "cdsflow-writeback"
    assert settings.writeback_enabled is True
    assert settings.kafka_idempotence is True
    assert settings.kafka_fetch_max_wait_ms == 50
    assert settings.gc_freeze_at_start is True
    assert settings.ehr_base_url == "http://ehr.example.org/fhir"
    assert settings.hooks_auth == "on"
    assert settings.hook_token_algorithms == ["RS384", "ES384"]
    assert settings.hook_token_skew_s == 30
    assert settings.public_base_urls == ("https://cds.example.org",)
    [issuer] = settings.trusted_issuers
    assert issuer.trusted().jwks_url == "https://ehr.example.org/jwks"


@pytest.mark.usefixtures("trusted_ehr")
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


def test_without_a_trusted_issuer_the_writeback_refuses_to_start() -> None:
    with pytest.raises(ValidationError, match="CDSFLOW_TRUSTED_ISSUERS"):
        Settings(ehr_base_url="https://ehr.example.org/fhir")


def test_authenticated_calls_need_the_public_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CDSFLOW_TRUSTED_ISSUERS", TRUSTED)
    with pytest.raises(ValidationError, match="CDSFLOW_CDS_PUBLIC_BASE_URL"):
        Settings(ehr_base_url="https://ehr.example.org/fhir")


def test_authentication_off_is_explicit(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CDSFLOW_HOOKS_AUTH", "off")
    assert Settings(ehr_base_url="https://ehr.example.org/fhir").hooks_auth == "off"
    monkeypatch.setenv("CDSFLOW_HOOKS_AUTH", "false")
    with pytest.raises(ValidationError, match="hooks_auth"):
        Settings(ehr_base_url="https://ehr.example.org/fhir")


@pytest.mark.usefixtures("trusted_ehr")
@pytest.mark.parametrize("algorithms", ['["none"]', '["HS256"]', '["ES384", "HS384"]', "[]"])
def test_none_and_hmac_cannot_be_configured(
    monkeypatch: pytest.MonkeyPatch, algorithms: str
) -> None:
    monkeypatch.setenv("CDSFLOW_HOOK_TOKEN_ALGORITHMS", algorithms)
    with pytest.raises(ValidationError, match="asymmetric"):
        Settings(ehr_base_url="https://ehr.example.org/fhir")


@pytest.mark.parametrize(
    "issuer",
    [
        '{"iss": "https://ehr.example.org/"}',
        '{"iss": "https://ehr.example.org/", "jwks_url": "http://ehr.example.org/jwks"}',
        '{"iss": "https://ehr.example.org/", "jku_allowed": ["ftp://ehr.example.org/"]}',
        '{"iss": "", "jwks_url": "https://ehr.example.org/jwks"}',
    ],
)
def test_an_issuer_needs_its_keys_over_https(monkeypatch: pytest.MonkeyPatch, issuer: str) -> None:
    monkeypatch.setenv("CDSFLOW_TRUSTED_ISSUERS", f"[{issuer}]")
    monkeypatch.setenv("CDSFLOW_CDS_PUBLIC_BASE_URL", "https://cds.example.org")
    with pytest.raises(ValidationError, match="trusted_issuers"):
        Settings(ehr_base_url="https://ehr.example.org/fhir")


def test_keys_over_http_only_from_loopback(monkeypatch: pytest.MonkeyPatch) -> None:
    issuer = '{"iss": "sandbox", "jwks_url": "http://127.0.0.1:9999/jwks.json"}'
    monkeypatch.setenv("CDSFLOW_TRUSTED_ISSUERS", f"[{issuer}]")
    monkeypatch.setenv("CDSFLOW_CDS_PUBLIC_BASE_URL", "http://127.0.0.1:8083, https://cds.x.org")
    settings = Settings(ehr_base_url="https://ehr.example.org/fhir")
    assert settings.public_base_urls == ("http://127.0.0.1:8083", "https://cds.x.org")


@pytest.mark.usefixtures("trusted_ehr")
def test_write_back_retry_and_breaker_defaults() -> None:
    settings = Settings(ehr_base_url="http://ehr.example.org/fhir")

    assert settings.writeback_max_attempts == 6
    assert settings.writeback_backoff_initial_s == 0.5
    assert settings.writeback_backoff_max_s == 20.0
    assert settings.writeback_retry_after_max_s == 30.0
    assert settings.ehr_circuit_failure_threshold == 5
    assert settings.ehr_circuit_open_s == 30.0
    # the write whose failure opens the breaker still has a try after it: an EHR outage
    # shorter than the breaker's open time is ridden out (tests/faults, case ehr-503-429)
    assert settings.writeback_max_attempts > settings.ehr_circuit_failure_threshold
    assert settings.writeback_max_concurrent_patients == 16


def test_a_batch_ends_inside_the_poll_interval() -> None:
    # the last write-back a batch may start, with all of its tries, ends before Kafka's
    # default max.poll.interval.ms (300 s) would throw the consumer out of its group
    assert BATCH_START_WITHIN_S + WRITE_RETRIES_BUDGET_S < 300


@pytest.mark.usefixtures("trusted_ehr")
@pytest.mark.parametrize("value", ["0", "-1", "257", "many"])
def test_concurrent_write_back_patients_out_of_range_are_refused(
    monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    monkeypatch.setenv("CDSFLOW_WRITEBACK_MAX_CONCURRENT_PATIENTS", value)

    with pytest.raises(ValidationError, match="writeback_max_concurrent_patients"):
        Settings(ehr_base_url="http://ehr.example.org/fhir")


@pytest.mark.usefixtures("trusted_ehr")
def test_concurrent_write_back_patients_are_read(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CDSFLOW_WRITEBACK_MAX_CONCURRENT_PATIENTS", "1")

    assert (
        Settings(ehr_base_url="http://ehr.example.org/fhir").writeback_max_concurrent_patients == 1
    )


@pytest.mark.usefixtures("trusted_ehr")
def test_retries_that_could_outlast_the_poll_interval_are_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CDSFLOW_WRITEBACK_MAX_ATTEMPTS", "10")
    monkeypatch.setenv("CDSFLOW_WRITEBACK_RETRY_AFTER_MAX_S", "60")

    with pytest.raises(ValidationError, match="could hold a message for 700 s"):
        Settings(ehr_base_url="http://ehr.example.org/fhir")


@pytest.mark.usefixtures("trusted_ehr")
@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("CDSFLOW_WRITEBACK_MAX_ATTEMPTS", "0"),
        ("CDSFLOW_EHR_CIRCUIT_FAILURE_THRESHOLD", "0"),
        ("CDSFLOW_EHR_CIRCUIT_OPEN_S", "0"),
        ("CDSFLOW_WRITEBACK_BACKOFF_INITIAL_S", "-1"),
    ],
)
def test_retry_settings_out_of_range_are_refused(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str
) -> None:
    monkeypatch.setenv(name, value)

    with pytest.raises(ValidationError):
        Settings(ehr_base_url="http://ehr.example.org/fhir")


@pytest.mark.usefixtures("trusted_ehr")
def test_on_demand_and_adapters_defaults() -> None:
    settings = Settings(ehr_base_url="http://ehr.example.org/fhir/")

    assert settings.adapters == "adapters"
    assert settings.triton_grpc_url is None
    assert settings.on_demand_deadline_ms == 400
    assert settings.hook_audit_enabled is True
    assert settings.hook_audit_flush_s == 0.2
    assert settings.hook_audit_batch_max == 500


@pytest.mark.usefixtures("trusted_ehr")
def test_the_gc_freeze_can_be_turned_off(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CDSFLOW_GC_FREEZE_AT_START", "false")
    assert Settings(ehr_base_url="http://ehr.example.org/fhir").gc_freeze_at_start is False
    monkeypatch.setenv("CDSFLOW_GC_FREEZE_AT_START", "sometimes")
    with pytest.raises(ValidationError, match="gc_freeze_at_start"):
        Settings(ehr_base_url="http://ehr.example.org/fhir")


@pytest.mark.usefixtures("trusted_ehr")
def test_the_fetch_wait_is_a_setting_and_never_negative(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CDSFLOW_KAFKA_FETCH_MAX_WAIT_MS", "5")
    assert Settings(ehr_base_url="http://ehr.example.org/fhir").kafka_fetch_max_wait_ms == 5
    with pytest.raises(ValidationError, match="kafka_fetch_max_wait_ms"):
        Settings(ehr_base_url="http://ehr.example.org/fhir", kafka_fetch_max_wait_ms=-1)


@pytest.mark.usefixtures("trusted_ehr")
@pytest.mark.parametrize("batch_max", [0, 5001])
def test_the_hook_audit_batch_is_bounded(batch_max: int) -> None:
    with pytest.raises(ValidationError, match="hook_audit_batch_max"):
        Settings(ehr_base_url="http://ehr.example.org/fhir", hook_audit_batch_max=batch_max)


def test_an_issuers_fhir_servers_are_https_or_loopback_http(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CDSFLOW_CDS_PUBLIC_BASE_URL", "https://cds.example.org/")
    allowed = (
        '[{"iss": "https://ehr.example.org/", "jwks_url": "https://ehr.example.org/jwks",'
        ' "fhir_servers": ["https://ehr.example.org/fhir", "http://127.0.0.1:8080/fhir"]}]'
    )
    monkeypatch.setenv("CDSFLOW_TRUSTED_ISSUERS", allowed)
    [issuer] = Settings(ehr_base_url="http://ehr.example.org/fhir").trusted_issuers
    trusted = issuer.trusted()
    assert trusted.may_fetch_from("https://ehr.example.org/fhir")
    assert trusted.may_fetch_from("http://127.0.0.1:8080/fhir/")
    assert not trusted.may_fetch_from("https://ehr.example.org/other")
    assert not trusted.may_fetch_from("https://evil.example.org/fhir")

    monkeypatch.setenv("CDSFLOW_TRUSTED_ISSUERS", allowed.replace("https://ehr", "http://ehr"))
    with pytest.raises(ValidationError, match="FHIR server URLs must be https"):
        Settings(ehr_base_url="http://ehr.example.org/fhir")


@pytest.mark.usefixtures("trusted_ehr")
@pytest.mark.parametrize("deadline_ms", [0, 5001])
def test_the_on_demand_deadline_is_bounded(deadline_ms: int) -> None:
    with pytest.raises(ValidationError, match="on_demand_deadline_ms"):
        Settings(ehr_base_url="http://ehr.example.org/fhir", on_demand_deadline_ms=deadline_ms)


@pytest.mark.usefixtures("trusted_ehr")
def test_prefetch_paging_defaults_and_bounds() -> None:
    settings = Settings(ehr_base_url="http://ehr.example.org/fhir")

    assert settings.prefetch_max_pages == 10
    assert settings.prefetch_max_entries == 1_000
    base = "http://ehr.example.org/fhir"
    with pytest.raises(ValidationError, match="prefetch_max_pages"):
        Settings(ehr_base_url=base, prefetch_max_pages=0)
    with pytest.raises(ValidationError, match="prefetch_max_pages"):
        Settings(ehr_base_url=base, prefetch_max_pages=101)
    with pytest.raises(ValidationError, match="prefetch_max_entries"):
        Settings(ehr_base_url=base, prefetch_max_entries=0)
    with pytest.raises(ValidationError, match="prefetch_max_entries"):
        Settings(ehr_base_url=base, prefetch_max_entries=100_001)


@pytest.mark.usefixtures("trusted_ehr")
def test_cors_is_off_by_default_and_takes_origins(monkeypatch: pytest.MonkeyPatch) -> None:
    assert Settings(ehr_base_url="http://ehr.example.org/fhir").cors_origins == ()

    monkeypatch.setenv(
        "CDSFLOW_CORS_ALLOWED_ORIGINS", "https://ehr.example.org, http://127.0.0.1:3000"
    )
    settings = Settings(ehr_base_url="http://ehr.example.org/fhir")

    assert settings.cors_origins == ("https://ehr.example.org", "http://127.0.0.1:3000")
    assert settings.cors_allow_credentials is False


@pytest.mark.usefixtures("trusted_ehr")
@pytest.mark.parametrize(
    "origin",
    ["https://ehr.example.org/", "https://ehr.example.org/app", "ehr.example.org", "ftp://x.org"],
)
def test_a_cors_origin_is_scheme_host_and_port_only(origin: str) -> None:
    with pytest.raises(ValidationError, match="CORS origins"):
        Settings(ehr_base_url="http://ehr.example.org/fhir", cors_allowed_origins=origin)


@pytest.mark.usefixtures("trusted_ehr")
def test_any_origin_only_without_credentials() -> None:
    any_origin = Settings(ehr_base_url="http://ehr.example.org/fhir", cors_allowed_origins="*")
    assert any_origin.cors_origins == ("*",)

    with pytest.raises(ValidationError, match="only without credentials"):
        Settings(
            ehr_base_url="http://ehr.example.org/fhir",
            cors_allowed_origins="*",
            cors_allow_credentials=True,
        )


@pytest.mark.usefixtures("trusted_ehr")
def test_replay_claims_across_replicas_defaults() -> None:
    settings = Settings(ehr_base_url="http://ehr.example.org/fhir")
    assert settings.hook_token_claims_topic == "cdsflow.hook-token-claims.v1"
    assert settings.hook_token_claims_partitions == 6
    assert settings.hook_token_claims_replication == 1
    assert settings.hook_token_claim_deadline_ms == 500
    assert settings.hook_token_claims_max == 250_000
    # on every hook call's path: the short wait, not the writeback's other consumers' 50 ms
    assert settings.hook_token_claims_fetch_max_wait_ms == 100
    assert settings.kafka_fetch_max_wait_ms == 50
    # a claim of any token still alive: the longest lifetime and the skew on both ends
    assert settings.hook_token_claims_window_s == 600 + 2 * 30


@pytest.mark.usefixtures("trusted_ehr")
@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("hook_token_claim_deadline_ms", 9),
        ("hook_token_claim_deadline_ms", 5001),
        ("hook_token_claims_partitions", 0),
        ("hook_token_claims_replication", 0),
        ("hook_token_claims_max", 0),
        ("hook_token_claims_topic", ""),
        ("hook_token_claims_fetch_max_wait_ms", 0),
        ("hook_token_claims_fetch_max_wait_ms", 501),
    ],
)
def test_replay_claim_settings_out_of_range_are_refused(
    monkeypatch: pytest.MonkeyPatch, name: str, value: object
) -> None:
    monkeypatch.setenv(f"CDSFLOW_{name.upper()}", str(value))
    with pytest.raises(ValidationError, match=name):
        Settings(ehr_base_url="http://ehr.example.org/fhir")


def test_an_issuer_may_list_the_tenants_it_speaks_for(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CDSFLOW_CDS_PUBLIC_BASE_URL", "https://cds.example.org/")
    monkeypatch.setenv(
        "CDSFLOW_TRUSTED_ISSUERS",
        '[{"iss": "https://ehr.example.org/", "jwks_url": "https://ehr.example.org/jwks",'
        ' "tenants": ["north-hospital", "south-clinic"]}]',
    )
    [issuer] = Settings(ehr_base_url="http://ehr.example.org/fhir").trusted_issuers
    assert issuer.trusted().tenants == frozenset({"north-hospital", "south-clinic"})


@pytest.mark.parametrize("tenant", ['""', '" north"', '"  "', "7"])
def test_a_tenant_must_be_a_plain_non_empty_string(
    monkeypatch: pytest.MonkeyPatch, tenant: str
) -> None:
    monkeypatch.setenv("CDSFLOW_CDS_PUBLIC_BASE_URL", "https://cds.example.org/")
    monkeypatch.setenv(
        "CDSFLOW_TRUSTED_ISSUERS",
        '[{"iss": "https://ehr.example.org/", "jwks_url": "https://ehr.example.org/jwks",'
        f' "tenants": [{tenant}]}}]',
    )
    with pytest.raises(ValidationError, match="tenants"):
        Settings(ehr_base_url="http://ehr.example.org/fhir")
