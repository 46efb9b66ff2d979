"""The shared broker's wiring, and a background start that has not reached Kafka (no network).

Starting against a real broker, and while it is down, is covered by the reasoner's and the
writeback's integration tests.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from faststream.kafka.opentelemetry import KafkaTelemetryMiddleware
from pydantic import SecretStr

from cdsflow.service import ConsumingBroker, KafkaConnection, ServiceSettings, build_broker
from cdsflow.telemetry import Telemetry, TelemetrySettings, setup_telemetry

# nothing listens here, and nothing is ever dialled in these tests
NOWHERE = "127.0.0.1:9"


@pytest.fixture
def telemetry(pseudonym_key: str) -> Iterator[Telemetry]:
    telemetry = setup_telemetry(
        "unit-service", TelemetrySettings(pseudonym_key=SecretStr(pseudonym_key))
    )
    yield telemetry
    telemetry.shutdown()


@pytest.fixture
def settings() -> ServiceSettings:
    return ServiceSettings(
        ehr_base_url="http://ehr.test/fhir", http_port=8080, kafka_bootstrap=NOWHERE
    )


def test_the_broker_is_named_after_the_service_and_propagates_traces(
    settings: ServiceSettings, telemetry: Telemetry
) -> None:
    broker = build_broker(settings, telemetry, "unit", request_timeout_ms=1234)

    assert broker.config.client_id == "cdsflow-unit"
    assert any(
        isinstance(middleware, KafkaTelemetryMiddleware)
        for middleware in broker.config.broker_middlewares
    )


def test_unknown_producer_options_are_refused(
    settings: ServiceSettings, telemetry: Telemetry
) -> None:
    with pytest.raises(TypeError):
        build_broker(settings, telemetry, "unit", no_such_option=1)


async def test_not_ready_before_it_has_started(
    settings: ServiceSettings, telemetry: Telemetry
) -> None:
    consuming = ConsumingBroker(build_broker(settings, telemetry, "unit"), KafkaConnection(NOWHERE))

    assert consuming.running is False
    assert await consuming.is_ready(0.1) is False
    await consuming.stop()  # safe without a start
    assert consuming.running is False
