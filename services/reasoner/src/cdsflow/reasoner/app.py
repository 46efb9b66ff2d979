"""Wiring: the Kafka consumer, the EHR and Triton clients, health, readiness and metrics."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from fastapi import FastAPI, Request, Response
from faststream import AckPolicy
from faststream.kafka.annotations import KafkaMessage
from tritonclient.grpc.aio import InferenceServerClient

from cdsflow.fhir import EhrClient
from cdsflow.reasoner.context_changelog import ContextChangelog, RestoreOnAssignment
from cdsflow.reasoner.deliveries import Deliveries
from cdsflow.reasoner.dependency_health import DependencyHealth
from cdsflow.reasoner.ehr_history import EhrPatientHistory
from cdsflow.reasoner.handlers import ClinicalEventHandler
from cdsflow.reasoner.known_patients import KnownPatients
from cdsflow.reasoner.metrics import ReasonerMetrics
from cdsflow.reasoner.model_adapters import load_configured_adapters
from cdsflow.reasoner.model_client import ModelVersionClient
from cdsflow.reasoner.patient_contexts import PatientContexts, feed_windows
from cdsflow.reasoner.settings import Settings
from cdsflow.service import (
    ConsumingBroker,
    DeadLetters,
    LaneBatches,
    Record,
    add_operational_routes,
    build_broker,
    ehr_http,
    instrument_app,
    kafka_connection,
    readiness_response,
    service_app,
)
from cdsflow.telemetry import Telemetry, TelemetrySettings, setup_telemetry

SERVICE_NAME = "reasoner"
# at most this many EHR requests in flight (httpx's own pool limit, which the reasoner had
# before), each on a kept-alive connection of its own (`cdsflow.service.ehr_http`)
EHR_MAX_CONNECTIONS = 100


def create_app(settings: Settings, *, telemetry: Telemetry | None = None) -> FastAPI:
    """The reasoner as an ASGI app; Kafka, the EHR and Triton are connected in its lifespan.

    Raises `AdapterFileError` (file:line: member: why) when a configured adapter is wrong.
    """
    readers = load_configured_adapters(settings.adapters)
    owns_telemetry = telemetry is None
    if telemetry is None:
        telemetry = setup_telemetry(SERVICE_NAME, TelemetrySettings())
    metrics = ReasonerMetrics.register(telemetry.metrics)
    # the patients' recent data: state, no I/O (restored in the lifespan)
    contexts = PatientContexts(
        settings.context_max_patients,
        feed_windows(readers),
        settings.context_max_readings_per_feed,
    )
    ReasonerMetrics.watch_patients_in_context(telemetry.metrics, contexts.__len__)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # one trace per event, kept by the reasoner itself (`cdsflow.service.record_spans`)
        # recommendations and snapshots are sent without waiting for each acknowledgement, in
        # producer batches of a whole consumer batch (aiokafka's 16 KB default holds about ten
        # recommendations, and sends one batch per partition at a time)
        kafka = kafka_connection(settings)
        broker = build_broker(settings, telemetry, SERVICE_NAME, traced=False, kafka=kafka)
        deliveries = Deliveries(
            AIOKafkaProducer(
                **kafka.client_options(),
                client_id=f"cdsflow-{SERVICE_NAME}",
                acks="all",
                enable_idempotence=settings.kafka_idempotence,
                max_batch_size=settings.kafka_max_batch_bytes,
            )
        )
        http = ehr_http(
            settings,
            telemetry,
            connections=min(settings.max_concurrent_patients, EHR_MAX_CONNECTIONS),
            timeout_s=settings.ehr_timeout_s,
        )
        triton = InferenceServerClient(settings.triton_grpc_url)
        # every version that each adapter lists runs: shadow beside active
        models = {
            reader.adapter.id: tuple(
                ModelVersionClient(
                    triton,
                    reader.adapter,
                    declared.version,
                    declared.mode,
                    telemetry.tracer,
                    metrics.inference_seconds,
                    settings.inference_timeout_s,
                    settings.triton_grpc_url,
                    max_rows=settings.inference_max_rows,
                    rows_per_request=metrics.inference_rows,
                )
                for declared in reader.adapter.model.versions
            )
            for reader in readers
        }
        health = DependencyHealth()
        changelog = ContextChangelog(
            deliveries,
            contexts,
            kafka=kafka,
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
            readers=readers,
        )
        handler = ClinicalEventHandler(
            settings=settings,
            deliveries=deliveries,
            dead_letters=DeadLetters(broker, settings.clinical_events_topic),
            ehr_history=ehr_history,
            contexts=contexts,
            readers=readers,
            models=models,
            patient_keyer=telemetry.patient_keyer,
            metrics=metrics,
            tracer=telemetry.tracer,
            health=health,
        )

        async def write_changelog(finished: Sequence[Record]) -> None:
            await changelog.write_changed()

        batches = LaneBatches(
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
        consumer = ConsumingBroker(broker, kafka)
        consumer.start()
        app.state.consumer = consumer
        app.state.models = [model for versions in models.values() for model in versions]
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
        models: list[ModelVersionClient] = request.app.state.models
        health: DependencyHealth = request.app.state.health
        timeout = settings.readiness_timeout_s
        broker_ready, *models_ready = await asyncio.gather(
            consumer.is_ready(timeout), *(model.is_ready(timeout) for model in models)
        )
        # every version of every adapter must be served; Triton may say a model is ready
        # while it sheds the reasoner's requests
        model_ready = all(models_ready) and not health.is_failing("triton")
        return readiness_response({"broker": broker_ready, "model": model_ready})

    instrument_app(app, telemetry)
    return app
