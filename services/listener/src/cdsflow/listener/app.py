"""Wiring: the Kafka broker, the notification handlers, health, readiness and metrics."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial
from typing import Any

from fastapi import FastAPI, Request, Response

from cdsflow.fhir import FHIR_JSON, EhrClient, count_access_tokens
from cdsflow.listener.ehr_reads import ehr_http_client
from cdsflow.listener.event_publisher import (
    RECORD_OVERHEAD_BYTES,
    SERVICE_NAME,
    KafkaClinicalEventPublisher,
    timeout_ms,
)
from cdsflow.listener.gap_recovery import recover_gap
from cdsflow.listener.handlers import REST_HOOK_ENDPOINT, router
from cdsflow.listener.intake import ListenerMetrics, NotificationIntake
from cdsflow.listener.published_events import PublishedEvents
from cdsflow.listener.published_events_tail import published_events_tail
from cdsflow.listener.settings import Settings
from cdsflow.listener.subscriptions import ChannelSubscriptions, SubscriptionMetrics
from cdsflow.service import (
    add_operational_routes,
    ehr_auth,
    instrument_app,
    kafka_connection,
    readiness_response,
    service_app,
)
from cdsflow.telemetry import Telemetry, TelemetrySettings, setup_telemetry

# reads of an id-only notification's focus: one retry, then the EHR is asked to retry (503)
_EHR_READ_ATTEMPTS = 2


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
        publisher = KafkaClinicalEventPublisher(settings, kafka, telemetry.tracer)
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
            request_timeout_ms=timeout_ms(settings),
            max_record_bytes=settings.max_notification_bytes + RECORD_OVERHEAD_BYTES,
        )
        tail.start()
        # take notifications once the topic is read back; with Kafka down, start anyway
        # (not ready: notifications get 503 until it is)
        await published.wait_caught_up(settings.publish_timeout_s)
        auth = ehr_auth(settings)
        count_access_tokens(auth, telemetry.metrics)
        ehr_http = ehr_http_client(
            settings.ehr_read_timeout_s,
            settings.max_notification_bytes,
            auth=auth,
            tracer=telemetry.tracer_provider.get_tracer("cdsflow.listener.ehr_reads"),
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

    # every notification's server span is made the cheap way (`cdsflow.service.server_spans`)
    instrument_app(app, telemetry, spans_made_by_the_service=(REST_HOOK_ENDPOINT,))
    return app
