"""What every notification handler shares: the injected clients, the metrics, and the
answers (published, recorded as unusable, refused, retry later)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Annotated, Any, Protocol

from fastapi import Depends, Request, Response
from fastapi.responses import JSONResponse
from opentelemetry import trace
from prometheus_client import Counter, Gauge, Histogram

from cdsflow.contracts import ClinicalEvent
from cdsflow.fhir import FHIR_JSON, EhrClient, operation_outcome
from cdsflow.listener.domain import UnusableResource
from cdsflow.listener.published_events import PublishedEvents
from cdsflow.listener.settings import Settings
from cdsflow.listener.subscriptions import ChannelState, ChannelSubscriptions
from cdsflow.service import RequestRefused
from cdsflow.telemetry import MetricsRegistry, PatientKeyer

log = logging.getLogger("cdsflow.listener")


class PublishUnavailable(Exception):
    """The broker did not acknowledge in time, or cannot be reached: the EHR should retry."""


class ClinicalEventPublisher(Protocol):
    """Publishes to Kafka and returns once the broker acknowledged."""

    async def publish(self, event: ClinicalEvent) -> None:
        """The event on the clinical-events topic; raise `PublishUnavailable` if not acked."""

    async def record_unusable(self, event: ClinicalEvent, unusable: UnusableResource) -> None:
        """The event on the `.dlq` twin with its reason; raise `PublishUnavailable` if not
        acked."""


@dataclass(frozen=True)
class ListenerMetrics:
    notifications: Counter
    unusable_resources: Counter
    duplicate_events: Counter
    published_events_remembered: Gauge
    published_event_numbers_remembered: Gauge
    publish_seconds: Histogram
    additional_context: Counter

    @classmethod
    def register(cls, registry: MetricsRegistry) -> ListenerMetrics:
        return cls(
            notifications=registry.counter(
                "listener_notifications",
                "Notifications received, by kind and outcome",
                ("kind", "outcome"),
            ),
            unusable_resources=registry.counter(
                "listener_unusable_resources",
                "Acknowledged resources that cdsflow cannot use, recorded on the .dlq twin",
                ("resource_type", "reason"),
            ),
            duplicate_events=registry.counter(
                "listener_duplicate_events",
                "Events of a redelivered notification, already on the topic: not published again",
                ("resource_type",),
            ),
            published_events_remembered=registry.gauge(
                "listener_published_events_remembered",
                "Event ids in the dedupe memory (read back from the topic, within the window)",
            ),
            published_event_numbers_remembered=registry.gauge(
                "listener_published_event_numbers_remembered",
                "(Subscription, event number) pairs in the dedupe memory (within the window)",
            ),
            publish_seconds=registry.histogram(
                "listener_publish_seconds",
                "Time from publish to the broker's acknowledgement of a clinical event",
            ),
            additional_context=registry.counter(
                "listener_additional_context",
                "Additional-context resources of notification events, by outcome: carried "
                "(published unless already on the topic), invalid, unusable (no patient here), "
                "not-carried (referenced only: not read)",
                ("outcome",),
            ),
        )


@dataclass(frozen=True)
class NotificationIntake:
    """What the handlers need; built in the app's lifespan and kept on `app.state.intake`.

    `ehr` reads what id-only notifications leave out, from the configured EHR only;
    `published` is the dedupe memory (the events already on the topic), and `publishing` the
    events whose publish is under way in this process.
    """

    settings: Settings
    publisher: ClinicalEventPublisher
    patient_keyer: PatientKeyer
    metrics: ListenerMetrics
    ehr: EhrClient
    published: PublishedEvents
    # the Subscriptions the listener keeps on the EHR (none when it manages none)
    subscriptions: ChannelSubscriptions | None = None
    publishing: dict[str, asyncio.Future[None]] = field(default_factory=dict)

    def channel_of(self, authorization: str | None) -> ChannelState | None:
        """The managed channel whose secret `authorization` carries, if any."""
        return self.subscriptions.channel_of(authorization) if self.subscriptions else None

    def count(self, kind: str, outcome: str) -> None:
        self.metrics.notifications.labels(kind, outcome).inc()


async def notification_intake(request: Request) -> NotificationIntake:
    # async: FastAPI runs a plain function dependency in its thread pool, a thread hop for
    # every notification
    intake = getattr(request.app.state, "intake", None)
    if not isinstance(intake, NotificationIntake):
        raise RuntimeError("the listener's lifespan has not run")
    return intake


Intake = Annotated[NotificationIntake, Depends(notification_intake)]


async def publish_acked(intake: NotificationIntake, event: ClinicalEvent) -> bool:
    """Publish and wait for the broker's ack; False, publishing nothing, when the event is
    already on the topic (a redelivery). `PublishUnavailable` when there is no ack, or when
    the topic is not read back within the publish timeout (a "not seen" could be wrong)."""
    event_id = event.event_id
    # the same event arriving twice at once: the second waits for the first's outcome
    while (pending := intake.publishing.get(event_id)) is not None:
        await asyncio.wait([pending])
    if not await intake.published.wait_caught_up(intake.settings.publish_timeout_s):
        raise PublishUnavailable("the clinical-events topic is not read back yet")
    if event_id in intake.published:
        intake.metrics.duplicate_events.labels(event.resource_type or "unknown").inc()
        log.info("clinical event already published", extra={"event_id": event_id})
        return False
    done = asyncio.get_running_loop().create_future()
    intake.publishing[event_id] = done
    try:
        started = time.perf_counter()
        await intake.publisher.publish(event)
        intake.metrics.publish_seconds.observe(time.perf_counter() - started)
        intake.published.remember_event(event)
    finally:
        del intake.publishing[event_id]
        done.set_result(None)
    log.info(
        "clinical event published",
        extra={
            "event_id": event_id,
            "patient_key": event.patient_key,
            "resource_type": event.resource_type,
        },
    )
    return True


async def record_unusable_acked(
    intake: NotificationIntake, event: ClinicalEvent, unusable: UnusableResource
) -> None:
    """Record on the `.dlq` twin and wait for the ack; counted by resource type and reason."""
    await intake.publisher.record_unusable(event, unusable)
    intake.metrics.unusable_resources.labels(
        event.resource_type or "unknown", unusable.reason
    ).inc()
    log.info(
        "resource recorded as unusable",
        extra={"event_id": event.event_id, "reason": unusable.reason},
    )


def unusable_outcome(unusable: UnusableResource) -> dict[str, Any]:
    return operation_outcome(
        "business-rule",
        f"acknowledged and recorded, not used ({unusable.reason}): {unusable.description}",
        "warning",
        expression=list(unusable.expression),
    )


def retry_later(
    intake: NotificationIntake, kind: str, exc: Exception, what: str = "the event broker"
) -> Response:
    """503 with `Retry-After`: nothing is lost, the EHR sends the notification again."""
    intake.count(kind, "unavailable" if what == "the event broker" else "ehr-unavailable")
    trace.get_current_span().set_attribute("cdsflow.outcome", "unavailable")
    log.warning(
        "not acknowledged; asking the EHR to retry",
        extra={"unavailable": what, "error_type": type(exc.__cause__ or exc).__name__},
    )
    return outcome_response(
        503,
        operation_outcome("transient", f"{what} is unavailable; retry later"),
        headers={"Retry-After": str(intake.settings.retry_after_s)},
    )


@contextmanager
def counting_failures(intake: NotificationIntake, kind: str) -> Iterator[None]:
    """Counts an unexpected failure as outcome `error` before it becomes a 500."""
    try:
        yield
    except Exception:
        intake.count(kind, "error")
        raise


def refused(intake: NotificationIntake, kind: str, refusal: RequestRefused) -> Response:
    intake.count(kind, refusal.reason)
    log.info("notification refused", extra={"kind": kind, "reason": refusal.reason})
    headers = {"WWW-Authenticate": "Bearer"} if refusal.status_code == 401 else None
    outcome = operation_outcome(
        refusal.issue_code, refusal.description, expression=list(refusal.expression)
    )
    return outcome_response(refusal.status_code, outcome, headers=headers)


def outcome_response(
    status_code: int, outcome: dict[str, Any], headers: Mapping[str, str] | None = None
) -> Response:
    """An OperationOutcome answer as `application/fhir+json`."""
    return JSONResponse(outcome, status_code=status_code, media_type=FHIR_JSON, headers=headers)
