"""The writeback's wiring: Kafka consumer, EHR client and CDS Hooks API in one FastAPI app."""

from __future__ import annotations

import gc
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import timedelta

import httpx
from aiokafka import AIOKafkaConsumer
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from faststream import AckPolicy
from faststream.kafka import KafkaBroker
from faststream.kafka.annotations import KafkaMessage
from opentelemetry import trace
from opentelemetry.instrumentation.utils import suppress_http_instrumentation
from prometheus_client import Counter
from tritonclient.grpc.aio import InferenceServerClient

from cdsflow.contracts import Feedback
from cdsflow.fhir import FHIR_JSON, EhrClient
from cdsflow.models import ModelAdapter
from cdsflow.service import (
    BoundedAnswers,
    ClientSpans,
    ConsumingBroker,
    DeadLetters,
    EnvironmentProxies,
    KafkaConnection,
    LaneBatches,
    Record,
    add_operational_routes,
    build_broker,
    ehr_http,
    instrument_app,
    kafka_connection,
    publish_span,
    readiness_response,
    service_app,
)
from cdsflow.telemetry import Telemetry, TelemetrySettings, setup_telemetry, trace_headers
from cdsflow.writeback.adapter_files import configured_adapters
from cdsflow.writeback.client_auth import ClientAuthenticator, ClientTokenPolicy, JwksCache
from cdsflow.writeback.domain.card_snoozes import CardSnoozes
from cdsflow.writeback.domain.client_tokens import SeenTokens
from cdsflow.writeback.domain.discovery import adapter_services
from cdsflow.writeback.domain.ehr_circuit_breaker import CircuitBreaker, CircuitState
from cdsflow.writeback.domain.latest_recommendations import LatestRecommendations
from cdsflow.writeback.domain.recorded_feedback import RecordedFeedback
from cdsflow.writeback.domain.retry_schedule import RetrySchedule
from cdsflow.writeback.domain.token_claims import ClaimLedger
from cdsflow.writeback.domain.writeback_bundle import BundleWording
from cdsflow.writeback.ehr_writes import EhrWriter
from cdsflow.writeback.feedback_api import FeedbackCounter, FeedbackPublisher, feedback_router
from cdsflow.writeback.handlers import (
    HookLimits,
    RecommendationConsumer,
    WritebackMetrics,
)
from cdsflow.writeback.hook_audits import HookAuditTrail
from cdsflow.writeback.hooks_api import cds_hooks_router
from cdsflow.writeback.hooks_cors import CDS_HOOKS_PATH, CdsHooksCors
from cdsflow.writeback.model_scoring import TritonScorer
from cdsflow.writeback.on_demand import OnDemandScoring, PageBounds
from cdsflow.writeback.recommendations_tail import FeedbackSnoozing, RecommendationsTail
from cdsflow.writeback.settings import BATCH_START_WITHIN_S, Settings
from cdsflow.writeback.token_claims import ClaimMetrics, ClaimsTopic, TokenClaims

SERVICE_NAME = "writeback"
# EHR connections beyond one per patient lane: the hook audits' batch, the readiness probe,
# the SMART Backend Services token request
EHR_SPARE_CONNECTIONS = 4
logger = logging.getLogger(__name__)

# recommendations per consumed batch, per patient written back at a time: enough that lanes
# seldom wait for the batch's slowest one, few enough that a batch ends in seconds
_BATCH_RECORDS_PER_LANE = 16
# how long an empty poll waits for records (FastStream then sleeps as long again)
_BATCH_TIMEOUT_MS = 20


def create_app(settings: Settings, *, telemetry: Telemetry | None = None) -> FastAPI:
    """The writeback app; its lifespan builds the broker and the EHR client."""
    owns_telemetry = telemetry is None
    if telemetry is None:
        telemetry = setup_telemetry(SERVICE_NAME, TelemetrySettings())
    metrics = WritebackMetrics.on(telemetry.metrics)
    adapters = configured_adapters(settings.adapters)
    services = adapter_services(adapters)
    store = LatestRecommendations(
        max_patients=settings.store_max_patients,
        max_age=timedelta(seconds=settings.card_max_age_s),
        rebuilt=False,
    )
    snoozes = CardSnoozes(max_patients=settings.store_max_patients)
    recorded_feedback = RecordedFeedback(max_ids=settings.store_max_patients)
    _state_gauges(telemetry, store)
    breaker = _ehr_circuit_breaker(settings, telemetry)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        http = ehr_http(
            settings,
            telemetry,
            connections=settings.writeback_max_concurrent_patients + EHR_SPARE_CONNECTIONS,
            timeout_s=settings.ehr_timeout_s,
        )
        kafka = kafka_connection(settings)
        # one trace per recommendation, kept by the writeback itself (`record_consumer_span`):
        # FastStream's middleware would make one span per batch
        broker = build_broker(settings, telemetry, SERVICE_NAME, traced=False, kafka=kafka)
        writer = EhrWriter(
            EhrClient(settings.ehr_base_url, http),
            breaker,
            RetrySchedule(
                max_attempts=settings.writeback_max_attempts,
                initial_s=settings.writeback_backoff_initial_s,
                max_s=settings.writeback_backoff_max_s,
                retry_after_max_s=settings.writeback_retry_after_max_s,
            ),
            metrics.ehr_write_attempts,
        )
        consumer = RecommendationConsumer(
            ehr_base_url=settings.ehr_base_url,
            writer=writer,
            wordings=_bundle_wordings(adapters),
            dead_letters=DeadLetters(broker, settings.recommendations_topic),
            metrics=metrics,
            writeback_enabled=settings.writeback_enabled,
            tracer=telemetry.tracer,
        )
        _subscribe(broker, settings, consumer)
        # started in the background: the writeback comes up, not ready, while Kafka is down
        consuming = ConsumingBroker(broker, kafka)
        app.state.consuming = consuming
        token_claims = None
        if settings.hooks_auth == "on":
            token_claims = _token_claims(settings, kafka, telemetry)
        app.state.token_claims = token_claims
        # each request of the hook path to another server a CLIENT span of the hook's trace
        client_tracer = telemetry.tracer_provider.get_tracer("cdsflow.writeback.hook_clients")
        jwks_http = httpx.AsyncClient(
            timeout=settings.jwks_timeout_s,
            transport=ClientSpans(EnvironmentProxies(), client_tracer),
        )
        app.state.client_auth = _client_authenticator(settings, jwks_http, token_claims)
        # on-demand scoring: Triton, and a client for the EHR's fhirServer that carries only
        # the hook call's own bearer token (never ours), follows no redirect and reads no
        # answer over `prefetch_max_answer_bytes`
        scorer = None
        if settings.triton_grpc_url is not None:
            scorer = TritonScorer(
                InferenceServerClient(settings.triton_grpc_url),
                telemetry.tracer_provider.get_tracer("cdsflow.writeback"),
            )
        fhir_http = httpx.AsyncClient(
            timeout=settings.on_demand_deadline_ms / 1000,
            follow_redirects=False,
            transport=ClientSpans(
                BoundedAnswers(EnvironmentProxies(), settings.prefetch_max_answer_bytes),
                client_tracer,
            ),
        )
        app.state.on_demand = OnDemandScoring(
            adapters={adapter.id: adapter for adapter in adapters},
            scorer=scorer,
            fhir_http=fhir_http,
            deadline_s=settings.on_demand_deadline_ms / 1000,
            ehr_base_url=settings.ehr_base_url,
            page_bounds=PageBounds(settings.prefetch_max_pages, settings.prefetch_max_entries),
            next_pages=metrics.prefetch_next_pages,
        )
        app.state.http = http
        # every replica's card state: the topic read back and followed, apart from the group
        tail = RecommendationsTail(
            store,
            kafka,
            settings.recommendations_topic,
            ehr_base_url=settings.ehr_base_url,
            max_age=timedelta(seconds=settings.card_max_age_s),
            feedback=FeedbackSnoozing(
                settings.feedback_topic,
                snoozes,
                timedelta(seconds=settings.card_snooze_s),
                recorded_feedback,
                {service.id: service.adapter_id for service in services},
            ),
            fetch_max_wait_ms=settings.kafka_fetch_max_wait_ms,
            request_timeout_ms=round(settings.readiness_timeout_s * 1000) + 3_000,
            card_latency=metrics.event_to_card,
        )
        app.state.tail = tail
        audits = None
        if settings.hook_audit_enabled:
            audits = HookAuditTrail(
                EhrClient(settings.ehr_base_url, http),
                telemetry.metrics,
                flush_s=settings.hook_audit_flush_s,
                batch_max=settings.hook_audit_batch_max,
            )
        app.state.audits = audits
        app.state.publish_feedback = _feedback_publisher(
            consuming, settings.feedback_topic, telemetry.tracer
        )
        try:
            consuming.start()
            tail.start()
            if token_claims is not None:
                token_claims.start()
            if audits is not None:
                audits.start()
            if settings.gc_freeze_at_start:
                # what the start built (modules, the app, clients) lives as long as the
                # process: out of the collector's sight, each full collection walks only what
                # the hook calls, the card state and the queues hold (README "Inside the budget")
                gc.collect()
                gc.freeze()
            yield
        finally:
            if audits is not None:
                await audits.stop()
            await tail.stop()
            if token_claims is not None:
                await token_claims.stop()
            await consuming.stop()
            await http.aclose()
            await jwks_http.aclose()
            await fhir_http.aclose()
            if scorer is not None:
                await scorer.close()
            if owns_telemetry:
                telemetry.shutdown()

    app = service_app("cdsflow writeback", lifespan, error_media_type="application/json")
    if settings.hooks_auth == "off":
        logger.warning(
            "CDS Hooks authentication is OFF (CDSFLOW_HOOKS_AUTH=off): any caller gets cards; "
            "for a development setup only"
        )
    app.include_router(
        cds_hooks_router(
            services=services,
            store=store,
            patient_keyer=telemetry.patient_keyer,
            metrics=metrics,
            limits=HookLimits(
                max_body_bytes=settings.max_hook_request_bytes,
                allow_loopback_http_fhir_server=settings.allow_loopback_http_fhir_server,
            ),
            client_auth=None if settings.hooks_auth == "off" else lambda: app.state.client_auth,
            snoozes=snoozes,
            on_demand=lambda: app.state.on_demand,
            audits=lambda: app.state.audits,
        )
    )

    async def publish_feedback(event: Feedback) -> None:
        await app.state.publish_feedback(event)

    app.include_router(
        feedback_router(
            services=services,
            store=store,
            recorded=recorded_feedback,
            publish=publish_feedback,
            metrics=metrics,
            feedback_counter=FeedbackCounter(telemetry.metrics),
            limits=HookLimits(max_body_bytes=settings.max_hook_request_bytes),
            client_auth=None if settings.hooks_auth == "off" else lambda: app.state.client_auth,
        )
    )
    add_operational_routes(app, telemetry)
    if settings.cors_origins:
        app.add_middleware(
            CdsHooksCors,
            allowed_origins=settings.cors_origins,
            allow_credentials=settings.cors_allow_credentials,
        )

    @app.get("/readyz", include_in_schema=False)
    async def readyz(request: Request) -> JSONResponse:
        timeout = settings.readiness_timeout_s
        consuming: ConsumingBroker = request.app.state.consuming
        tail: RecommendationsTail = request.app.state.tail
        broker_ready = await consuming.is_ready(timeout)
        ehr_ready = await _ehr_answers(request.app.state.http, settings.ehr_base_url, timeout)
        checks = {
            "broker": broker_ready,
            "ehr": ehr_ready,
            "ehr_circuit_closed": breaker.state is CircuitState.CLOSED,
            "recommendations_read_back": store.rebuilt and tail.caught_up,
        }
        token_claims: TokenClaims | None = request.app.state.token_claims
        if token_claims is not None:
            # false while hook tokens cannot be checked for replays across replicas
            checks["hook_token_claims"] = token_claims.ready
        return readiness_response(checks)

    # every CDS Hooks call's server span is made the cheap way (`cdsflow.service.server_spans`)
    instrument_app(app, telemetry, spans_made_by_the_service=(CDS_HOOKS_PATH,))
    return app


def _bundle_wordings(adapters: tuple[ModelAdapter, ...]) -> dict[str, BundleWording]:
    """How each adapter's write-backs name what it assessed: its score's meaning, its title."""
    return {
        adapter.id: BundleWording(
            predicted_outcome=(
                adapter.outputs.score.meaning
                if adapter.outputs.score is not None
                else adapter.title
            ),
            issue_title=adapter.title,
        )
        for adapter in adapters
    }


def _feedback_publisher(
    consuming: ConsumingBroker, topic: str, tracer: trace.Tracer
) -> FeedbackPublisher:
    """Publishes a Feedback event (acks=all), keyed by the patient key, else the card uuid,
    in a PRODUCER span whose context goes in its headers; raises while the broker is not
    running, so that the EHR is told to send it again."""

    async def publish(event: Feedback) -> None:
        if not consuming.running:
            raise ConnectionError("the broker is not connected")
        key = (event.patient_key or event.card_uuid).encode()
        with publish_span(tracer, topic) as span:
            await consuming.broker.publish(
                event.SerializeToString(), topic=topic, key=key, headers=trace_headers(span)
            )

    return publish


def _state_gauges(telemetry: Telemetry, store: LatestRecommendations) -> None:
    """The card state's size and whether it is rebuilt, for the operator."""
    telemetry.metrics.gauge(
        "writeback_card_state_patients", "Patients with a recommendation held for cards"
    ).set_function(lambda: len(store))
    telemetry.metrics.gauge(
        "writeback_card_state_rebuilt",
        "1 once the recommendations topic was read back since start, else 0",
    ).set_function(lambda: 1 if store.rebuilt else 0)


def _ehr_circuit_breaker(settings: Settings, telemetry: Telemetry) -> CircuitBreaker:
    """The breaker of writes to the EHR, its state in `cdsflow_writeback_ehr_circuit_state`
    (0 closed, 1 half-open, 2 open) and its openings counted."""
    opened = telemetry.metrics.counter(
        "writeback_ehr_circuit_opened", "Times the EHR write circuit breaker opened"
    )
    breaker = CircuitBreaker(
        settings.ehr_circuit_failure_threshold,
        settings.ehr_circuit_open_s,
        on_open=_logged_opening(opened, settings.ehr_circuit_open_s),
        on_close=lambda: logger.warning("EHR write circuit breaker closed: the EHR answers again"),
    )
    telemetry.metrics.gauge(
        "writeback_ehr_circuit_state",
        "EHR write circuit breaker: 0 closed, 1 half-open (probing), 2 open",
    ).set_function(lambda: breaker.state.level)
    return breaker


def _logged_opening(opened: Counter, open_s: float) -> Callable[[], None]:
    def on_open() -> None:
        opened.inc()
        logger.warning("EHR write circuit breaker opened; next probe in %.1f s", open_s)

    return on_open


def _token_claims(settings: Settings, kafka: KafkaConnection, telemetry: Telemetry) -> TokenClaims:
    """Each accepted hook token claimed on the claims topic, read back by every replica;
    whether that works now in `cdsflow_writeback_hook_token_claims_ready`."""
    claims = TokenClaims(
        kafka,
        ClaimsTopic(
            name=settings.hook_token_claims_topic,
            partitions=settings.hook_token_claims_partitions,
            replication=settings.hook_token_claims_replication,
            window_s=settings.hook_token_claims_window_s,
        ),
        keyed_digest=telemetry.patient_keyer.keyed_digest,
        deadline_s=settings.hook_token_claim_deadline_ms / 1000,
        ledger=ClaimLedger(settings.hook_token_claims_max),
        metrics=ClaimMetrics.on(telemetry.metrics),
        fetch_max_wait_ms=settings.hook_token_claims_fetch_max_wait_ms,
        request_timeout_ms=round(settings.readiness_timeout_s * 1000) + 3_000,
    )
    telemetry.metrics.gauge(
        "writeback_hook_token_claims_ready",
        "1 while hook tokens can be claimed across replicas (else calls are refused 503)",
    ).set_function(lambda: 1 if claims.ready else 0)
    return claims


def _client_authenticator(
    settings: Settings, http: httpx.AsyncClient, claims: TokenClaims | None
) -> ClientAuthenticator:
    policy = ClientTokenPolicy(
        issuers={issuer.iss: issuer.trusted() for issuer in settings.trusted_issuers},
        algorithms=frozenset(settings.hook_token_algorithms),
        public_base_urls=settings.public_base_urls,
        skew_s=settings.hook_token_skew_s,
        max_lifetime_s=settings.hook_token_max_lifetime_s,
    )
    keys = JwksCache(
        http,
        ttl_s=settings.jwks_cache_ttl_s,
        refetch_interval_s=settings.jwks_refetch_interval_s,
    )
    return ClientAuthenticator(policy, keys, SeenTokens(settings.seen_tokens_max), claims=claims)


def _subscribe(broker: KafkaBroker, settings: Settings, consumer: RecommendationConsumer) -> None:
    """Recommendations in batches, written back in patient lanes: up to
    `writeback_max_concurrent_patients` patients at a time, each patient's in offset order;
    only what is finished is committed, and a record that could not be dead-lettered is
    consumed again, with the rest of its partition, after `writeback_retry_pause_s`."""
    lanes = settings.writeback_max_concurrent_patients
    batches = LaneBatches(
        consumer.handle,
        max_concurrent_patients=lanes,
        first_pause_s=settings.writeback_retry_pause_s,
        pause_max_s=settings.writeback_retry_pause_s,
        start_within_s=BATCH_START_WITHIN_S,
    )

    @broker.subscriber(
        settings.recommendations_topic,
        group_id=settings.consumer_group,
        auto_offset_reset="earliest",
        fetch_max_wait_ms=settings.kafka_fetch_max_wait_ms,
        ack_policy=AckPolicy.MANUAL,
        batch=True,
        max_records=lanes * _BATCH_RECORDS_PER_LANE,
        batch_timeout_ms=_BATCH_TIMEOUT_MS,
    )
    async def on_recommendations(message: KafkaMessage) -> None:
        records: tuple[Record, ...] = message.raw_message
        kafka_consumer: AIOKafkaConsumer = message.consumer
        await batches.handle(records, kafka_consumer)


async def _ehr_answers(http: httpx.AsyncClient, ehr_base_url: str, timeout_s: float) -> bool:
    """True when the EHR answers its capability statement (probes are not traced, and not
    authenticated)."""
    try:
        with suppress_http_instrumentation():
            response = await http.get(
                f"{ehr_base_url}/metadata",
                headers={"Accept": FHIR_JSON},
                timeout=timeout_s,
                # the capability statement is public (FHIR): no token fetched for a probe
                auth=None,
            )
    except httpx.HTTPError:
        return False
    return response.status_code == 200
