"""The Kafka security settings, checked together at start, and what every Kafka client of a
service is given for each protocol and mechanism (pure logic: nothing is dialled).

The embedded Tansu broker speaks neither TLS nor SASL, so a secured connection cannot be shown
end to end here; the PLAINTEXT path is what every integration test connects through."""

from __future__ import annotations

import os
import ssl
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer
from aiokafka.admin import AIOKafkaAdminClient
from faststream.security import (
    BaseSecurity,
    SASLOAuthBearer,
    SASLPlaintext,
    SASLScram256,
    SASLScram512,
)
from pydantic import SecretStr, ValidationError

from cdsflow.service import (
    ClientCredentialsTokens,
    KafkaConnection,
    ServiceSettings,
    build_broker,
    kafka_connection,
)
from cdsflow.telemetry import Telemetry, TelemetrySettings, setup_telemetry
from tests.support.tls_certificates import write_ca_certificate

PASSWORD = "a-kafka-password-0123"
OAUTH = {
    "kafka_security_protocol": "SASL_SSL",
    "kafka_sasl_mechanism": "OAUTHBEARER",
    "kafka_oauth_token_url": "https://idp.example.org/oauth2/token",
    "kafka_oauth_client_id": "cdsflow",
    "kafka_sasl_password": PASSWORD,
}


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("CDSFLOW_"):
            monkeypatch.delenv(name)


def settings(**kafka: Any) -> ServiceSettings:
    return ServiceSettings(ehr_base_url="http://ehr.test/fhir", http_port=8080, **kafka)


def scram(mechanism: str = "SCRAM-SHA-512", protocol: str = "SASL_SSL") -> ServiceSettings:
    return settings(
        kafka_security_protocol=protocol,
        kafka_sasl_mechanism=mechanism,
        kafka_sasl_username="cdsflow",
        kafka_sasl_password=PASSWORD,
    )


def test_plaintext_is_the_default_and_asks_for_nothing() -> None:
    connection = kafka_connection(settings(kafka_bootstrap="k1:9092,k2:9092"))

    assert connection.client_options() == {
        "bootstrap_servers": "k1:9092,k2:9092",
        "security_protocol": "PLAINTEXT",
    }
    assert connection.broker_security() is None


def test_the_settings_are_read_from_cdsflow_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in {
        "CDSFLOW_EHR_BASE_URL": "http://ehr.test/fhir",
        "CDSFLOW_HTTP_PORT": "8080",
        "CDSFLOW_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
        "CDSFLOW_KAFKA_SASL_MECHANISM": "SCRAM-SHA-256",
        "CDSFLOW_KAFKA_SASL_USERNAME": "cdsflow",
        "CDSFLOW_KAFKA_SASL_PASSWORD": PASSWORD,
    }.items():
        monkeypatch.setenv(name, value)

    read = ServiceSettings()

    assert read.kafka_sasl_mechanism == "SCRAM-SHA-256"
    assert read.kafka_sasl_password == SecretStr(PASSWORD)


def test_tls_checks_the_brokers_against_the_ca_file(tmp_path: Path) -> None:
    ca_file = write_ca_certificate(tmp_path)

    connection = kafka_connection(
        settings(kafka_security_protocol="SSL", kafka_ssl_ca_file=ca_file)
    )

    options = connection.client_options()
    context = options["ssl_context"]
    assert options["security_protocol"] == "SSL"
    assert isinstance(context, ssl.SSLContext)
    assert context.verify_mode == ssl.CERT_REQUIRED
    assert context.check_hostname
    assert [c["subject"] for c in context.get_ca_certs()] == [
        ((("commonName", "cdsflow test Kafka CA"),),)
    ]
    security = connection.broker_security()
    assert type(security) is BaseSecurity
    assert security.use_ssl
    assert security.ssl_context is context


def test_tls_without_a_ca_file_trusts_the_systems_cas() -> None:
    options = kafka_connection(settings(kafka_security_protocol="SSL")).client_options()

    assert options["ssl_context"].verify_mode == ssl.CERT_REQUIRED


@pytest.mark.parametrize(
    ("mechanism", "security_type"),
    [("PLAIN", SASLPlaintext), ("SCRAM-SHA-256", SASLScram256), ("SCRAM-SHA-512", SASLScram512)],
)
@pytest.mark.parametrize("protocol", ["SASL_PLAINTEXT", "SASL_SSL"])
def test_password_mechanisms(mechanism: str, security_type: type, protocol: str) -> None:
    connection = kafka_connection(scram(mechanism, protocol))

    options = connection.client_options()
    assert options["security_protocol"] == protocol
    assert options["sasl_mechanism"] == mechanism
    assert options["sasl_plain_username"] == "cdsflow"
    assert options["sasl_plain_password"] == PASSWORD
    assert ("ssl_context" in options) is (protocol == "SASL_SSL")
    security = connection.broker_security()
    assert type(security) is security_type
    assert isinstance(security, SASLPlaintext | SASLScram256 | SASLScram512)
    assert security.use_ssl is (protocol == "SASL_SSL")
    assert (security.username, security.password) == ("cdsflow", PASSWORD)


def test_oauthbearer_gives_every_client_one_token_provider() -> None:
    connection = kafka_connection(settings(**OAUTH, kafka_oauth_scope="kafka"))

    options = connection.client_options()
    assert options["sasl_mechanism"] == "OAUTHBEARER"
    assert isinstance(options["sasl_oauth_token_provider"], ClientCredentialsTokens)
    assert "sasl_plain_password" not in options
    assert type(connection.broker_security()) is SASLOAuthBearer


def test_the_password_is_in_no_repr() -> None:
    assert PASSWORD not in repr(scram())
    assert PASSWORD not in repr(kafka_connection(scram()))
    assert PASSWORD not in repr(kafka_connection(settings(**OAUTH)))


async def test_aiokafka_clients_take_the_options() -> None:
    """Built, never started: each client accepts every option (an unknown one is refused)."""
    options = kafka_connection(scram()).client_options()
    consumer = AIOKafkaConsumer(**options)
    admin = AIOKafkaAdminClient(**options)
    await consumer.stop()
    await admin.close()


def test_the_broker_connects_as_the_settings_say(pseudonym_key: str) -> None:
    telemetry: Telemetry = setup_telemetry(
        "unit-service", TelemetrySettings(pseudonym_key=SecretStr(pseudonym_key))
    )
    try:
        broker = build_broker(scram("SCRAM-SHA-256"), telemetry, "unit")
        oauth_broker = build_broker(settings(**OAUTH), telemetry, "unit")
    finally:
        telemetry.shutdown()

    params = broker.config.builder.keywords
    assert params["security_protocol"] == "SASL_SSL"
    assert params["sasl_mechanism"] == "SCRAM-SHA-256"
    assert params["sasl_plain_password"] == PASSWORD
    oauth_params = oauth_broker.config.builder.keywords
    assert isinstance(oauth_params["sasl_oauth_token_provider"], ClientCredentialsTokens)


@pytest.mark.parametrize(
    ("kafka", "error"),
    [
        ({"kafka_security_protocol": "TLS"}, "kafka_security_protocol"),
        ({"kafka_security_protocol": "SASL_SSL"}, "needs CDSFLOW_KAFKA_SASL_MECHANISM"),
        (
            {"kafka_security_protocol": "SASL_SSL", "kafka_sasl_mechanism": "GSSAPI"},
            "kafka_sasl_mechanism",
        ),
        (
            {
                "kafka_security_protocol": "SASL_SSL",
                "kafka_sasl_mechanism": "SCRAM-SHA-512",
                "kafka_sasl_username": "cdsflow",
            },
            "SCRAM-SHA-512 needs CDSFLOW_KAFKA_SASL_PASSWORD",
        ),
        (
            {
                "kafka_security_protocol": "SASL_PLAINTEXT",
                "kafka_sasl_mechanism": "PLAIN",
                "kafka_sasl_password": PASSWORD,
                "kafka_sasl_username": " ",
            },
            "PLAIN needs CDSFLOW_KAFKA_SASL_USERNAME",
        ),
        (
            {**OAUTH, "kafka_oauth_token_url": None, "kafka_oauth_client_id": ""},
            "OAUTHBEARER needs CDSFLOW_KAFKA_OAUTH_TOKEN_URL, CDSFLOW_KAFKA_OAUTH_CLIENT_ID",
        ),
        ({**OAUTH, "kafka_sasl_password": ""}, "needs CDSFLOW_KAFKA_SASL_PASSWORD"),
        (
            {**OAUTH, "kafka_sasl_username": "cdsflow"},
            "CDSFLOW_KAFKA_SASL_USERNAME set but CDSFLOW_KAFKA_SASL_MECHANISM=OAUTHBEARER",
        ),
        (
            {
                "kafka_security_protocol": "SASL_SSL",
                "kafka_sasl_mechanism": "SCRAM-SHA-256",
                "kafka_sasl_username": "cdsflow",
                "kafka_sasl_password": PASSWORD,
                "kafka_oauth_client_id": "cdsflow",
            },
            "CDSFLOW_KAFKA_OAUTH_CLIENT_ID set but CDSFLOW_KAFKA_SASL_MECHANISM=SCRAM-SHA-256",
        ),
        (
            {**OAUTH, "kafka_oauth_token_url": "http://idp.example.org/token"},
            "CDSFLOW_KAFKA_OAUTH_TOKEN_URL must be an https URL",
        ),
        (
            {**OAUTH, "kafka_oauth_token_url": "idp.example.org/token"},
            "CDSFLOW_KAFKA_OAUTH_TOKEN_URL must be an https URL",
        ),
        (
            {"kafka_sasl_mechanism": "PLAIN", "kafka_sasl_username": "cdsflow"},
            "CDSFLOW_KAFKA_SASL_MECHANISM, CDSFLOW_KAFKA_SASL_USERNAME set but "
            "CDSFLOW_KAFKA_SECURITY_PROTOCOL=PLAINTEXT uses no SASL",
        ),
        (
            {"kafka_security_protocol": "SSL", "kafka_sasl_password": PASSWORD},
            "CDSFLOW_KAFKA_SASL_PASSWORD set but CDSFLOW_KAFKA_SECURITY_PROTOCOL=SSL uses no SASL",
        ),
    ],
)
def test_incomplete_or_contradictory_settings_are_refused(
    kafka: dict[str, Any], error: str
) -> None:
    with pytest.raises(ValidationError, match=error) as refused:
        settings(**kafka)

    assert PASSWORD not in str(refused.value)


def test_a_token_url_on_this_machine_may_be_plain_http() -> None:
    local = settings(**{**OAUTH, "kafka_oauth_token_url": "http://127.0.0.1:8443/token"})
    assert local.kafka_oauth_token_url == "http://127.0.0.1:8443/token"


def test_the_ca_file_must_exist(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="CDSFLOW_KAFKA_SSL_CA_FILE: No such file"):
        settings(kafka_security_protocol="SSL", kafka_ssl_ca_file=tmp_path / "missing.crt")


def test_the_ca_file_must_hold_a_certificate(tmp_path: Path) -> None:
    not_pem = tmp_path / "ca.crt"
    not_pem.write_text("not a certificate\n")

    with pytest.raises(ValidationError, match="CDSFLOW_KAFKA_SSL_CA_FILE: not a PEM CA"):
        settings(kafka_security_protocol="SASL_SSL", kafka_ssl_ca_file=not_pem, **_scram_only())


def test_a_ca_file_without_tls_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="CDSFLOW_KAFKA_SSL_CA_FILE is set but"):
        settings(kafka_ssl_ca_file=write_ca_certificate(tmp_path))


def test_a_plain_connection_needs_only_the_bootstrap_servers() -> None:
    assert KafkaConnection("k:9092").client_options() == {
        "bootstrap_servers": "k:9092",
        "security_protocol": "PLAINTEXT",
    }


def _scram_only() -> dict[str, Any]:
    return {
        "kafka_sasl_mechanism": "SCRAM-SHA-512",
        "kafka_sasl_username": "cdsflow",
        "kafka_sasl_password": PASSWORD,
    }
