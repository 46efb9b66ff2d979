"""Wiring: the Kafka consumer, the EHR and Triton clients, health, readiness and metrics."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta

import httpx
from fastapi import FastAPI, Request, Response
from faststream import AckPolicy
from faststream.kafka.annotations import KafkaMessage
from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor
from tritonclient.grpc.aio import InferenceServerClient

from cdsflow.fhir import EhrClient
from cdsflow.reasoner.domain.cards import CardSource
from cdsflow.reasoner.domain.recommendation import RecommendationPolicy
from cdsflow.reasoner.handlers import ClinicalEventHandler
from cdsflow.reasoner.known_patients import KnownPatients
from cdsflow.reasoner.metrics import ReasonerMetrics
from cdsflow.reasoner.model_client import TritonModel
from cdsflow.reasoner.settings import Settings
from cdsflow.service import (
    ConsumingBroker,
    DeadLetters,
    add_operational_routes,
    build_broker,
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

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        broker = build_broker(settings, telemetry, SERVICE_NAME)
        http = httpx.AsyncClient(timeout=settings.ehr_timeout_s)
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
        handler = ClinicalEventHandler(
            settings=settings,
            broker=broker,
            dead_letters=DeadLetters(broker, settings.clinical_events_topic),
            ehr=EhrClient(settings.ehr_base_url, http),
            model=model,
            patient_keyer=telemetry.patient_keyer,
            metrics=metrics,
            policy=policy,
            known_patients=KnownPatients(
                settings.known_patients_max, settings.known_patients_ttl_s
            ),
        )

        async def on_clinical_event(message: KafkaMessage) -> None:
            await handler.handle(message)

        broker.subscriber(
            settings.clinical_events_topic,
            group_id=settings.consumer_group,
            auto_offset_reset="earliest",
            fetch_max_wait_ms=settings.kafka_fetch_max_wait_ms,
            ack_policy=AckPolicy.MANUAL,
        )(on_clinical_event)
        consumer = ConsumingBroker(broker, settings.kafka_bootstrap)
        consumer.start()
        app.state.consumer = consumer
        app.state.model = model
        try:
            yield
        finally:
            await consumer.stop()
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
        timeout = settings.readiness_timeout_s
        broker_ready, model_ready = await asyncio.gather(
            consumer.is_ready(timeout), model.is_ready(timeout)
        )
        return readiness_response({"broker": broker_ready, "model": model_ready})

    instrument_app(app, telemetry)
    return app
