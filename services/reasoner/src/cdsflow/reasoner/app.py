"""Wiring: the Kafka consumer, the EHR and Triton clients, health, readiness and metrics."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta

import aiokafka
import httpx
from fastapi import FastAPI, Request, Response
from faststream import AckPolicy
from faststream.kafka import KafkaBroker
from faststream.kafka.annotations import KafkaMessage
from faststream.kafka.opentelemetry import KafkaTelemetryMiddleware
from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor
from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor
from tenacity import AsyncRetrying, wait_exponential
from tritonclient.grpc.aio import InferenceServerClient

from cdsflow.fhir import EhrClient
from cdsflow.reasoner.domain.cards import CardSource
from cdsflow.reasoner.domain.recommendation import RecommendationPolicy
from cdsflow.reasoner.handlers import ClinicalEventHandler, ReasonerMetrics
from cdsflow.reasoner.model_client import TritonModel
from cdsflow.reasoner.settings import Settings
from cdsflow.telemetry import Telemetry, TelemetrySettings, setup_telemetry

log = logging.getLogger("cdsflow.reasoner")

SERVICE_NAME = "reasoner"


def build_broker(settings: Settings, telemetry: Telemetry) -> KafkaBroker:
    return KafkaBroker(
        settings.kafka_bootstrap,
        client_id=f"cdsflow-{SERVICE_NAME}",
        acks="all",
        enable_idempotence=settings.kafka_idempotence,
        middlewares=[KafkaTelemetryMiddleware(tracer_provider=telemetry.tracer_provider)],
        logger=None,
    )


class ClinicalEventConsumer:
    """Starts the broker (and its subscriber) in the background, retrying until Kafka answers,
    so the service comes up, and reports not-ready, while Kafka is down."""

    def __init__(self, broker: KafkaBroker, bootstrap: str) -> None:
        self.broker = broker
        self.running = False
        self._bootstrap = bootstrap
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._start_when_reachable())

    async def _start_when_reachable(self) -> None:
        async for attempt in AsyncRetrying(wait=wait_exponential(multiplier=0.5, max=10.0)):
            with attempt:
                try:
                    # probe first: a FastStream start that fails leaves an unclosed producer
                    await self._probe_bootstrap()
                    await self.broker.start()
                except Exception as exc:
                    log.warning("Kafka unreachable", extra={"error_type": type(exc).__name__})
                    await self.broker.stop()  # drop whatever half-connected
                    raise
        self.running = True

    async def _probe_bootstrap(self) -> None:
        client = aiokafka.AIOKafkaClient(bootstrap_servers=self._bootstrap)
        try:
            await client.bootstrap()
        finally:
            await client.close()

    async def is_ready(self, timeout_s: float) -> bool:
        return self.running and await self.broker.ping(timeout_s)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self.running = False
        await self.broker.stop()


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
        broker = build_broker(settings, telemetry)
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
            ehr=EhrClient(settings.ehr_base_url, http),
            model=model,
            patient_keyer=telemetry.patient_keyer,
            metrics=metrics,
            policy=policy,
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
        consumer = ClinicalEventConsumer(broker, settings.kafka_bootstrap)
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

    app = FastAPI(title="cdsflow reasoner", lifespan=lifespan, docs_url=None, redoc_url=None)

    @app.get("/healthz", include_in_schema=False)
    async def healthz() -> Response:
        return Response("ok", media_type="text/plain")

    @app.get("/readyz", include_in_schema=False)
    async def readyz(request: Request) -> Response:
        consumer: ClinicalEventConsumer = request.app.state.consumer
        model: TritonModel = request.app.state.model
        timeout = settings.readiness_timeout_s
        broker_ready, model_ready = await asyncio.gather(
            consumer.is_ready(timeout), model.is_ready(timeout)
        )
        problems = [
            what
            for what, ok in (
                ("Kafka consumer not running", broker_ready),
                ("model not ready", model_ready),
            )
            if not ok
        ]
        if problems:
            return Response("; ".join(problems), status_code=503, media_type="text/plain")
        return Response("ready", media_type="text/plain")

    @app.get("/metrics", include_in_schema=False)
    async def prometheus_metrics() -> Response:
        body, content_type = telemetry.metrics.exposition()
        return Response(body, media_type=content_type)

    FastAPIInstrumentor.instrument_app(
        app,
        tracer_provider=telemetry.tracer_provider,
        excluded_urls="healthz,readyz,metrics",
        exclude_spans=["receive", "send"],
    )
    return app
