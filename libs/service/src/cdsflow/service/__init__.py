"""cdsflow service plumbing: shared settings, the Kafka broker, batch consumption in patient
lanes, operational HTTP routes."""

from cdsflow.service.bounded_answers import AnswerTooLarge, BoundedAnswers
from cdsflow.service.client_spans import ClientSpans
from cdsflow.service.dead_letters import DeadLetters
from cdsflow.service.ehr_auth import ehr_auth
from cdsflow.service.ehr_http import ehr_http
from cdsflow.service.environment_proxies import EnvironmentProxies
from cdsflow.service.http import (
    add_error_answers,
    add_operational_routes,
    instrument_app,
    outcome_response,
    readiness_response,
    service_app,
)
from cdsflow.service.kafka import ConsumingBroker, build_broker, probe_bootstrap
from cdsflow.service.kafka_oauth import ClientCredentialsTokens, KafkaTokenError
from cdsflow.service.kafka_security import KafkaConnection, kafka_connection
from cdsflow.service.lane_batches import LaneBatches, RecordOutcome
from cdsflow.service.offsets import CommitPlan, FinishedOffsets, commit_plan
from cdsflow.service.patient_lanes import Record, patient_lanes
from cdsflow.service.record_spans import publish_span, record_consumer_span
from cdsflow.service.requests import (
    RequestRefused,
    body_too_large,
    is_json_media_type,
    read_bounded_body,
    require_json_media_type,
    single_header,
)
from cdsflow.service.server import serve, uvicorn_config
from cdsflow.service.settings import HttpPort, ServiceSettings
from cdsflow.service.topic_read_back import TopicReadBack

__all__ = [
    "AnswerTooLarge",
    "BoundedAnswers",
    "ClientCredentialsTokens",
    "ClientSpans",
    "CommitPlan",
    "ConsumingBroker",
    "DeadLetters",
    "EnvironmentProxies",
    "FinishedOffsets",
    "HttpPort",
    "KafkaConnection",
    "KafkaTokenError",
    "LaneBatches",
    "Record",
    "RecordOutcome",
    "RequestRefused",
    "ServiceSettings",
    "TopicReadBack",
    "add_error_answers",
    "add_operational_routes",
    "body_too_large",
    "build_broker",
    "commit_plan",
    "ehr_auth",
    "ehr_http",
    "instrument_app",
    "is_json_media_type",
    "kafka_connection",
    "outcome_response",
    "patient_lanes",
    "probe_bootstrap",
    "publish_span",
    "read_bounded_body",
    "readiness_response",
    "record_consumer_span",
    "require_json_media_type",
    "serve",
    "service_app",
    "single_header",
    "uvicorn_config",
]
