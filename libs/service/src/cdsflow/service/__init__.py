"""cdsflow service plumbing: shared settings, the Kafka broker, operational HTTP routes."""

from cdsflow.service.dead_letters import DeadLetters, record_key
from cdsflow.service.http import add_operational_routes, instrument_app, readiness_response
from cdsflow.service.kafka import ConsumingBroker, build_broker, probe_bootstrap
from cdsflow.service.settings import HttpPort, ServiceSettings

__all__ = [
    "ConsumingBroker",
    "DeadLetters",
    "HttpPort",
    "ServiceSettings",
    "add_operational_routes",
    "build_broker",
    "instrument_app",
    "probe_bootstrap",
    "readiness_response",
    "record_key",
]
