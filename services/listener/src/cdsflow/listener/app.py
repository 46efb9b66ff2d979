"""Wiring: the Kafka broker, the notification handlers, health, readiness and metrics."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial
from typing import Any

from aiokafka.errors import KafkaError
from fastapi import FastAPI, Request, Response
from faststream.exceptions import IncorrectState
from faststream.kafka import KafkaBroker
from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor

from cdsflow.contracts import (
    DLQ_ERROR_HEADER,
    DLQ_ERROR_TYPE_HEADER,
    ClinicalEvent,
    dead_letter_topic,
)
from cdsflow.fhir import FHIR_JSON, EhrClient, count_access_tokens
from cdsflow.listener.domain import UnusableResource
from cdsflow.listener.ehr_reads import ehr_http_client
from cdsflow.listener.gap_recovery import recover_gap
from cdsflow.listener.handlers import router
from cdsflow.listener.intake import ListenerMetrics, NotificationIntake, PublishUnavailable
from cdsflow.listener.published_events import PublishedEvents
from cdsflow.listener.published_events_tail import published_events_tail
from cdsflow.listener.settings import Settings
from cdsflow.listener.subscriptions import ChannelSubscriptions, SubscriptionMetrics
from cdsflow.service import (
    KafkaConnection,
    add_operational_routes,
    build_broker,
    ehr_auth,
    instrument_app,
    kafka_connection,
    probe_bootstrap,
    readiness_response,
    service_app,
)
from cdsflow.telemetry import Telemetry, TelemetrySettings, setup_telemetry

log = logging.getLogger("cdsflow.listener")

SERVICE_NAME = "listener"
# headroom over the largest accepted body for the event's other fields and headers
_RECORD_OVERHEAD_BYTES = 64 * 1024
_BROKER_ERRORS = (KafkaError, OSError, IncorrectState, TimeoutError)
# reads of an id-only notification's focus: one retry, then the EHR is asked to retry (503)
_EHR_READ_ATTEMPTS = 2


class KafkaClinicalEventPublisher:
    """Publishes clinical events through a FastStream `KafkaBroker`, keyed by patient.

    The broker may be down when the listener starts: the listener then starts anyway, reports
    not-ready, and connects again on the next notification or readiness check.
    """

    def __init__(self, broker: KafkaBroker, settings: Settings, kafka: KafkaConnection) -> None:
        self._broker = broker
        self._settings = settings
        self._kafka = kafka
        self._connect_lock = asyncio.Lock()
        self._connected = False

    async def connect(self) -> bool:
        """Connect unless connected; False (logged) when the broker cannot be reached."""
        async with self._connect_lock:
            if self._connected:
                return True
            try:
                async with asyncio.timeout(self._settings.publish_timeout_s):
                    # probe first: a FastStream connect that fails leaves an unclosed producer
                    await probe_bootstrap(self._kafka, _timeout_ms(self._settings))
                    await self._broker.connect()
                self._connected = True
            except _BROKER_ERRORS as exc:
                log.warning("Kafka broker unreachable", extra={"error_type": type(exc).__name__})
            finally:
                if not self._connected:  # failed or cancelled: drop what is half-connected
                    await self._broker.stop()
            return self._connected

    async def publish(self, event: ClinicalEvent) -> None:
        await self._publish_acked(
            event.SerializeToString(),
            topic=self._settings.clinical_events_topic,
            key=event.patient_key.encode(),
        )

    async def record_unusable(self, event: ClinicalEvent, unusable: UnusableResource) -> None:
        """On the `.dlq` twin, without a key (no patient), the reason in the DLQ headers."""
        await self._publish_acked(
            event.SerializeToString(),
            topic=dead_letter_topic(self._settings.clinical_events_topic),
            key=None,
            headers={
                DLQ_ERROR_TYPE_HEADER: unusable.error_type,
                DLQ_ERROR_HEADER: unusable.description,
            },
        )

    async def _publish_acked(
        self, body: bytes, *, topic: str, key: bytes | None, headers: dict[str, str] | None = None
    ) -> None:
        try:
            async with asyncio.timeout(self._settings.publish_timeout_s):
                if not await self.connect():
                    raise PublishUnavailable("Kafka broker unreachable")
                await self._broker.publish(body, topic=topic, key=key, headers=headers)
        except _BROKER_ERRORS as exc:
            raise PublishUnavailable(type(exc).__name__) from exc

    async def is_ready(self) -> bool:
        timeout = self._settings.readiness_timeout_s
        try:
            async with asyncio.timeout(timeout):
                if not await self.connect():
                    return False
        except TimeoutError:
            return False
        return await self._broker.ping(timeout)

    async def close(self) -> None:
        await self._broker.stop()
        self._connected = False


def build_listener_broker(
    settings: Settings, telemetry: Telemetry, kafka: KafkaConnection
) -> KafkaBroker:
    """The shared broker, with the publish timeout and room for the largest notification."""
    return build_broker(
        settings,
        telemetry,
        SERVICE_NAME,
        kafka=kafka,
        request_timeout_ms=_timeout_ms(settings),
        max_request_size=settings.max_notification_bytes + _RECORD_OVERHEAD_BYTES,
    )


def create_app(settings: Settings, *, telemetry: Telemetry | None = None) -> FastAPI:
    """The listener as an ASGI app; Kafka is connected in its lifespan."""
    owns_telemetry = telemetry is None
    if telemetry is None:
        # pydantic-settings reads the required fields from the environment
        telemetry = setup_telemetry(SERVICE_NAME, TelemetrySettings())
    metrics = ListenerMetrics.register(telemetry.metrics)
    subscription_metrics = SubscriptionMetrics.register(telemetry.metrics)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        kafka = kafka_connection(settings)
        publisher = KafkaClinicalEventPublisher(
            build_listener_broker(settings, telemetry, kafka), settings, kafka
        )
        await publisher.connect()
        published = PublishedEvents(settings.dedupe_window_s, settings.dedupe_max_events)
        metrics.published_events_remembered.set_function(lambda: len(published))
        metrics.published_event_numbers_remembered.set_function(
            lambda: published.event_numbers_remembered
        )
        tail = published_events_tail(
            published,
            kafka,
            settings.clinical_events_topic,
            fetch_max_wait_ms=settings.published_events_fetch_max_wait_ms,
            request_timeout_ms=_timeout_ms(settings),
            max_record_bytes=settings.max_notification_bytes + _RECORD_OVERHEAD_BYTES,
        )
        tail.start()
        # take notifications once the topic is read back; with Kafka down, start anyway
        # (not ready: notifications get 503 until it is)
        await published.wait_caught_up(settings.publish_timeout_s)
        auth = ehr_auth(settings)
        count_access_tokens(auth, telemetry.metrics)
        ehr_http = ehr_http_client(
            settings.ehr_read_timeout_s, settings.max_notification_bytes, auth=auth
        )
        HTTPXClientInstrumentor.instrument_client(
            ehr_http, tracer_provider=telemetry.tracer_provider
        )
        subscriptions = ChannelSubscriptions(
            settings.channels,
            settings.channel_secret.get_secret_value(),
            EhrClient(settings.ehr_base_url, ehr_http, attempts=_EHR_READ_ATTEMPTS),
            settings.notification_endpoint or "",
            settings.subscription_check_interval_s,
            subscription_metrics,
            settings.gap_grace_s,
        )
        app.state.publisher = publisher
        app.state.intake = NotificationIntake(
            settings=settings,
            publisher=publisher,
            patient_keyer=telemetry.patient_keyer,
            metrics=metrics,
            ehr=EhrClient(settings.ehr_base_url, ehr_http, attempts=_EHR_READ_ATTEMPTS),
            published=published,
            subscriptions=subscriptions,
        )
        subscriptions.recover = partial(recover_gap, app.state.intake, subscription_metrics)
        subscriptions.highest_published_number = published.highest_event_number
        # after the intake is in place: creating a Subscription makes the EHR call at once
        subscriptions.start()
        try:
            yield
        finally:
            await subscriptions.stop()
            await tail.stop()
            await ehr_http.aclose()
            await publisher.close()
            if owns_telemetry:
                telemetry.shutdown()

    app = service_app("cdsflow listener", lifespan, error_media_type=FHIR_JSON)
    app.include_router(router)
    add_operational_routes(app, telemetry)

    @app.get("/subscriptions")
    async def subscriptions_shown(request: Request) -> list[dict[str, Any]]:
        """The Subscriptions the listener keeps on the EHR, one per configured channel."""
        intake: NotificationIntake = request.app.state.intake
        if intake.subscriptions is None:
            return []
        return [state.as_json() for state in intake.subscriptions.states.values()]

    @app.get("/readyz", include_in_schema=False)
    async def readyz(request: Request) -> Response:
        publisher: KafkaClinicalEventPublisher = request.app.state.publisher
        intake: NotificationIntake = request.app.state.intake
        return readiness_response(
            {
                "broker": await publisher.is_ready(),
                "published_events_read_back": intake.published.caught_up,
            }
        )

    instrument_app(app, telemetry)
    return app


def _timeout_ms(settings: Settings) -> int:
    return max(1, round(settings.publish_timeout_s * 1000))
