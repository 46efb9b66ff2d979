"""Wiring: the Kafka consumer, the EHR and Triton clients, health, readiness and metrics."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from datetime import timedelta

import httpx
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from fastapi import FastAPI, Request, Response
from faststream import AckPolicy
from faststream.kafka.annotations import KafkaMessage
from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor
from tritonclient.grpc.aio import InferenceServerClient

from cdsflow.fhir import EhrClient
from cdsflow.reasoner.context_changelog import ContextChangelog, RestoreOnAssignment
from cdsflow.reasoner.deliveries import Deliveries
from cdsflow.reasoner.dependency_health import DependencyHealth
from cdsflow.reasoner.domain.cards import CardSource
from cdsflow.reasoner.domain.recommendation import RecommendationPolicy
from cdsflow.reasoner.ehr_history import EhrPatientHistory
from cdsflow.reasoner.event_batches import EventBatches
from cdsflow.reasoner.handlers import ClinicalEventHandler
from cdsflow.reasoner.known_patients import KnownPatients
from cdsflow.reasoner.metrics import ReasonerMetrics
from cdsflow.reasoner.model_client import TritonModel
from cdsflow.reasoner.patient_contexts import PatientContexts
from cdsflow.reasoner.patient_lanes import Record
from cdsflow.reasoner.settings import Settings
from cdsflow.service import (
    ConsumingBroker,
    DeadLetters,
    add_operational_routes,
    build_broker,
    ehr_auth,
    instrument_app,
    readiness_response,
    service_app,
)
from cdsflow.telemetry import Telemetry, TelemetrySettings, setup_telemetry

SERVICE_NAME = "reasoner"


def create_app(settings: Settings, *, telemetry: Telemetry | None = None) -> FastAPI:
    """The reasoner as an ASGI app; Kafka, the EHR and Triton are connected in its lifespan."""
    owns_telemetry = telemetry is None
    if telemetry is None:
        telemetry = setup_telemetry(SERVICE_NAME, TelemetrySettings())
    metrics = ReasonerMetrics.register(telemetry.metrics)
    policy = RecommendationPolicy(
        shadow_models=settings.shadow_models,
        lookback=timedelta(hours=settings.vitals_lookback_hours),
        card_source=CardSource(label=settings.card_source_label, url=settings.card_source_url),
    )
    # the patients' recent vital signs: state, no I/O (restored in the lifespan)
    contexts = PatientContexts(settings.context_max_patients, policy.lookback)
    ReasonerMetrics.watch_patients_in_context(telemetry.metrics, contexts.__len__)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # one trace per event, kept by the reasoner itself (`event_spans`)
        # recommendations and snapshots are sent without waiting for each acknowledgement, in
        # producer batches of a whole consumer batch (aiokafka's 16 KB default holds about ten
        # recommendations, and sends one batch per partition at a time)
        broker = build_broker(settings, telemetry, SERVICE_NAME, traced=False)
        deliveries = Deliveries(
            AIOKafkaProducer(
                bootstrap_servers=settings.kafka_bootstrap,
                client_id=f"cdsflow-{SERVICE_NAME}",
                acks="all",
                enable_idempotence=settings.kafka_idempotence,
                max_batch_size=settings.kafka_max_batch_bytes,
            )
        )
        http = httpx.AsyncClient(timeout=settings.ehr_timeout_s, auth=ehr_auth(settings))
        HTTPXClientInstrumentor.instrument_client(http, tracer_provider=telemetry.tracer_provider)
        triton = InferenceServerClient(settings.triton_grpc_url)
        model = TritonModel(
            triton,
            settings.model_name,
            telemetry.tracer,
            metrics.inference_seconds,
            settings.inference_timeout_s,
            settings.triton_grpc_url,
        )
        health = DependencyHealth()
        changelog = ContextChangelog(
            deliveries,
            contexts,
            bootstrap=settings.kafka_bootstrap,
            topic=settings.context_changelog_topic,
            events_topic=settings.clinical_events_topic,
            replication_factor=settings.patient_context_replication,
        )
        ehr_history = EhrPatientHistory(
            ehr=EhrClient(settings.ehr_base_url, http),
            ehr_base_url=settings.ehr_base_url,
            known_patients=KnownPatients(
                settings.known_patients_max, settings.known_patients_ttl_s
            ),
            metrics=metrics,
            lookback=policy.lookback,
        )
        handler = ClinicalEventHandler(
            settings=settings,
            deliveries=deliveries,
            dead_letters=DeadLetters(broker, settings.clinical_events_topic),
            ehr_history=ehr_history,
            contexts=contexts,
            model=model,
            patient_keyer=telemetry.patient_keyer,
            metrics=metrics,
            policy=policy,
            tracer=telemetry.tracer,
            health=health,
        )

        async def write_changelog(finished: Sequence[Record]) -> None:
            await changelog.write_changed()

        batches = EventBatches(
            handler.handle,
            max_concurrent_patients=settings.max_concurrent_patients,
            pause_max_s=settings.dependency_retry_s,
            before_commit=write_changelog,
        )
        restore = RestoreOnAssignment(
            changelog, contexts, settings.clinical_events_topic, metrics.restored_snapshots.inc
        )

        async def on_clinical_events(message: KafkaMessage) -> None:
            records: tuple[Record, ...] = message.raw_message
            consumer: AIOKafkaConsumer = message.consumer
            await restore.wait_restored({record.partition for record in records})
            await batches.handle(records, consumer)

        broker.subscriber(
            settings.clinical_events_topic,
            group_id=settings.consumer_group,
            auto_offset_reset="earliest",
            fetch_max_wait_ms=settings.kafka_fetch_max_wait_ms,
            ack_policy=AckPolicy.MANUAL,
            batch=True,
            max_records=settings.batch_max_records,
            batch_timeout_ms=settings.batch_timeout_ms,
            listener=restore,
        )(on_clinical_events)
        consumer = ConsumingBroker(broker, settings.kafka_bootstrap)
        consumer.start()
        app.state.consumer = consumer
        app.state.model = model
        app.state.health = health
        try:
            yield
        finally:
            await consumer.stop()
            await deliveries.stop()
            await triton.close()
            await http.aclose()
            if owns_telemetry:
                telemetry.shutdown()

    app = service_app("cdsflow reasoner", lifespan, error_media_type="application/json")
    add_operational_routes(app, telemetry)

    @app.get("/readyz", include_in_schema=False)
    async def readyz(request: Request) -> Response:
        consumer: ConsumingBroker = request.app.state.consumer
        model: TritonModel = request.app.state.model
        health: DependencyHealth = request.app.state.health
        timeout = settings.readiness_timeout_s
        broker_ready, model_ready = await asyncio.gather(
            consumer.is_ready(timeout), model.is_ready(timeout)
        )
        # Triton may say the model is ready while it sheds the reasoner's requests
        model_ready = model_ready and not health.is_failing("triton")
        return readiness_response({"broker": broker_ready, "model": model_ready})

    instrument_app(app, telemetry)
    return app
