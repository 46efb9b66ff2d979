"""How every Kafka client of a service connects: TLS, SASL, or neither.

`CDSFLOW_KAFKA_SECURITY_PROTOCOL` and its companions (`ServiceSettings`) are checked together
when the settings are read (`check_kafka_security`: a clear error naming the setting), then
turned once per service into a `KafkaConnection` (`kafka_connection`): the bootstrap servers,
an `ssl.SSLContext` from the CA file, the SASL credentials, or an OAUTHBEARER token provider.
The FastStream broker takes its `broker_security()`, each plain aiokafka client (producer,
consumer, admin) its `client_options()`: one place, so no client connects in plaintext by
mistake.
"""

from __future__ import annotations

import ipaddress
import ssl
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import urlsplit

from aiokafka.abc import AbstractTokenProvider
from faststream.security import (
    BaseSecurity,
    SASLOAuthBearer,
    SASLPlaintext,
    SASLScram256,
    SASLScram512,
)
from pydantic import SecretStr

from cdsflow.service.kafka_oauth import ClientCredentialsTokens

if TYPE_CHECKING:
    from cdsflow.service.settings import ServiceSettings

KafkaSecurityProtocol = Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]
KafkaSaslMechanism = Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512", "OAUTHBEARER"]

_TLS_PROTOCOLS = ("SSL", "SASL_SSL")
_SASL_PROTOCOLS = ("SASL_PLAINTEXT", "SASL_SSL")
_MECHANISM = "CDSFLOW_KAFKA_SASL_MECHANISM"
# what each kind of mechanism needs (the OAuth client secret is the SASL password's Secret key)
_PASSWORD_NEEDS = ("CDSFLOW_KAFKA_SASL_USERNAME", "CDSFLOW_KAFKA_SASL_PASSWORD")
_OAUTH_NEEDS = (
    "CDSFLOW_KAFKA_OAUTH_TOKEN_URL",
    "CDSFLOW_KAFKA_OAUTH_CLIENT_ID",
    "CDSFLOW_KAFKA_SASL_PASSWORD",
)
_SCRAM_OR_PLAIN = {
    "PLAIN": SASLPlaintext,
    "SCRAM-SHA-256": SASLScram256,
    "SCRAM-SHA-512": SASLScram512,
}


@dataclass(frozen=True)
class KafkaConnection:
    """Where the brokers are and how to reach them; `KafkaConnection("host:9092")` is the
    plaintext connection of the embedded broker and the tests."""

    bootstrap_servers: str
    security_protocol: KafkaSecurityProtocol = "PLAINTEXT"
    # set whenever the protocol uses TLS (the system's CAs when no CA file is configured)
    ssl_context: ssl.SSLContext | None = None
    sasl_mechanism: KafkaSaslMechanism | None = None
    sasl_username: str | None = None
    sasl_password: SecretStr | None = field(default=None, repr=False)
    token_provider: AbstractTokenProvider | None = None

    def client_options(self) -> dict[str, Any]:
        """The keyword arguments of an aiokafka client (`AIOKafkaProducer`,
        `AIOKafkaConsumer`, `AIOKafkaAdminClient`, `AIOKafkaClient`) for this connection."""
        options: dict[str, Any] = {
            "bootstrap_servers": self.bootstrap_servers,
            "security_protocol": self.security_protocol,
        }
        if self.ssl_context is not None:
            options["ssl_context"] = self.ssl_context
        if self.sasl_mechanism is not None:
            options["sasl_mechanism"] = self.sasl_mechanism
        if self.sasl_username is not None and self.sasl_password is not None:
            options["sasl_plain_username"] = self.sasl_username
            options["sasl_plain_password"] = self.sasl_password.get_secret_value()
        if self.token_provider is not None:
            options["sasl_oauth_token_provider"] = self.token_provider
        return options

    def broker_security(self) -> BaseSecurity | None:
        """FastStream's security object for a `KafkaBroker` (with `sasl_oauth_token_provider`
        beside it for OAUTHBEARER); None for PLAINTEXT."""
        use_ssl = self.security_protocol in _TLS_PROTOCOLS
        if self.security_protocol == "PLAINTEXT":
            return None
        if self.security_protocol == "SSL":
            return BaseSecurity(ssl_context=self.ssl_context, use_ssl=True)
        if self.sasl_mechanism == "OAUTHBEARER":
            return SASLOAuthBearer(ssl_context=self.ssl_context, use_ssl=use_ssl)
        if self.sasl_mechanism is None or self.sasl_username is None:
            raise ValueError(f"incomplete SASL settings for {self.security_protocol}")
        password = self.sasl_password.get_secret_value() if self.sasl_password else ""
        security_type = _SCRAM_OR_PLAIN[self.sasl_mechanism]
        return security_type(
            self.sasl_username, password, ssl_context=self.ssl_context, use_ssl=use_ssl
        )


def kafka_connection(settings: ServiceSettings) -> KafkaConnection:
    """The service's connection, built once in its lifespan and given to every Kafka client
    (the CA file is read now, so one that went missing since start stops the service)."""
    protocol = settings.kafka_security_protocol
    ssl_context = tls_context(settings.kafka_ssl_ca_file) if protocol in _TLS_PROTOCOLS else None
    if protocol not in _SASL_PROTOCOLS:
        return KafkaConnection(settings.kafka_bootstrap, protocol, ssl_context)
    mechanism = settings.kafka_sasl_mechanism
    if mechanism == "OAUTHBEARER":
        token_url, client_id = settings.kafka_oauth_token_url, settings.kafka_oauth_client_id
        secret = settings.kafka_sasl_password
        if token_url is None or client_id is None or secret is None:
            raise ValueError("incomplete settings for CDSFLOW_KAFKA_SASL_MECHANISM=OAUTHBEARER")
        tokens = ClientCredentialsTokens(token_url, client_id, secret, settings.kafka_oauth_scope)
        return KafkaConnection(
            settings.kafka_bootstrap, protocol, ssl_context, mechanism, token_provider=tokens
        )
    return KafkaConnection(
        settings.kafka_bootstrap,
        protocol,
        ssl_context,
        mechanism,
        settings.kafka_sasl_username,
        settings.kafka_sasl_password,
    )


def tls_context(ca_file: Path | None) -> ssl.SSLContext:
    """A client TLS context that checks the brokers' certificates and host names against
    `ca_file` (PEM), or the system's CAs; raises `ValueError` saying why the file is unusable."""
    try:
        # server authentication, host names checked, the system's CAs unless `ca_file`
        return ssl.create_default_context(cafile=ca_file)
    except OSError as exc:  # ssl.SSLError included
        why = exc.strerror or exc.__class__.__name__
        if isinstance(exc, ssl.SSLError):
            why = f"not a PEM CA certificate ({exc.reason or 'unreadable'})"
        raise ValueError(f"CDSFLOW_KAFKA_SSL_CA_FILE: {why}") from None


def check_kafka_security(settings: ServiceSettings) -> None:
    """Raise `ValueError` naming the setting when the Kafka security settings do not fit
    together: SASL settings without a SASL protocol, a mechanism without its credentials, a
    CA file without TLS, or one that cannot be read."""
    protocol = settings.kafka_security_protocol
    prefix = f"CDSFLOW_KAFKA_SECURITY_PROTOCOL={protocol}"
    if settings.kafka_ssl_ca_file is not None:
        if protocol not in _TLS_PROTOCOLS:
            raise ValueError(f"CDSFLOW_KAFKA_SSL_CA_FILE is set but {prefix} uses no TLS")
        tls_context(settings.kafka_ssl_ca_file)
    sasl_set = [name for name, value in _sasl_settings(settings) if value is not None]
    if protocol not in _SASL_PROTOCOLS:
        if sasl_set:
            raise ValueError(f"{', '.join(sasl_set)} set but {prefix} uses no SASL")
        return
    mechanism = settings.kafka_sasl_mechanism
    if mechanism is None:
        raise ValueError(f"{prefix} needs CDSFLOW_KAFKA_SASL_MECHANISM")
    oauth = mechanism == "OAUTHBEARER"
    needed = _OAUTH_NEEDS if oauth else _PASSWORD_NEEDS
    allowed = {_MECHANISM, *needed, *(("CDSFLOW_KAFKA_OAUTH_SCOPE",) if oauth else ())}
    missing = [name for name in needed if name not in sasl_set]
    if missing:
        raise ValueError(f"{_MECHANISM}={mechanism} needs {', '.join(missing)}")
    extra = [name for name in sasl_set if name not in allowed]
    if extra:
        raise ValueError(f"{', '.join(extra)} set but {_MECHANISM}={mechanism}")
    if oauth and settings.kafka_oauth_token_url is not None:
        _check_token_url(settings.kafka_oauth_token_url)


def _sasl_settings(settings: ServiceSettings) -> list[tuple[str, object | None]]:
    return [
        (_MECHANISM, settings.kafka_sasl_mechanism),
        ("CDSFLOW_KAFKA_SASL_USERNAME", settings.kafka_sasl_username),
        ("CDSFLOW_KAFKA_SASL_PASSWORD", settings.kafka_sasl_password),
        ("CDSFLOW_KAFKA_OAUTH_TOKEN_URL", settings.kafka_oauth_token_url),
        ("CDSFLOW_KAFKA_OAUTH_CLIENT_ID", settings.kafka_oauth_client_id),
        ("CDSFLOW_KAFKA_OAUTH_SCOPE", settings.kafka_oauth_scope),
    ]


def _check_token_url(url: str) -> None:
    """https, or http to this machine only: the client secret is sent with each request."""
    parts = urlsplit(url)
    if parts.scheme == "https" and parts.hostname:
        return
    if parts.scheme == "http" and parts.hostname and _is_loopback(parts.hostname):
        return
    raise ValueError("CDSFLOW_KAFKA_OAUTH_TOKEN_URL must be an https URL")


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
