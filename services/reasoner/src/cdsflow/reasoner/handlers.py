"""Thin: decode a clinical event, let the domain decide, call the EHR and Triton, publish.

Every record ends in exactly one of these ways (`EventOutcome`):

- a vital-sign event about a patient of the configured EHR: its Recommendation is published
  (FINISHED);
- any other event: nothing published, counted by reason (FINISHED);
- an event that cannot be processed (not a ClinicalEvent, malformed resource, unsupported
  unit, another server's patient, a patient the EHR does not know, an impossible vital
  sign, ...): copied to the `.dlq` twin topic with the error in headers (FINISHED); one that
  fails in an unexpected way, or that Triton refuses, is tried `max_attempts` times first;
- Triton, the EHR or Kafka unavailable (down, or Triton shedding load): HANDED_BACK, not
  committed; the batch consumer pauses, then consumes it again. Nothing is lost, and the
  patient's later events wait behind it, so one patient's events stay in order.

Each record is handled inside its own CONSUMER span, continuing the trace in its headers.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import Enum

from opentelemetry import trace

from cdsflow.contracts import Mode, Recommendation
from cdsflow.reasoner.deliveries import Deliveries, Delivery
from cdsflow.reasoner.dependency_health import DependencyHealth, DependencyUnavailable
from cdsflow.reasoner.domain.errors import (
    ImplausibleVitalSign,
    UnprocessableEvent,
)
from cdsflow.reasoner.domain.events import (
    IgnoreReason,
    VitalSignEvent,
    checked_patient_key,
    decode_clinical_event,
    vital_sign_event,
)
from cdsflow.reasoner.domain.model_adapter import model_inputs
from cdsflow.reasoner.domain.observations import observation_reference
from cdsflow.reasoner.domain.patient_context import (
    PatientContext,
    context_as_of,
    trigger_readings,
)
from cdsflow.reasoner.domain.recommendation import RecommendationPolicy, build_recommendation
from cdsflow.reasoner.domain.vital_signs import VitalSignReading
from cdsflow.reasoner.ehr_history import EhrPatientHistory
from cdsflow.reasoner.event_spans import event_consumer_span, publish_span
from cdsflow.reasoner.metrics import ReasonerMetrics
from cdsflow.reasoner.model_client import ModelRequestFailed, ModelUnavailable, TritonModel
from cdsflow.reasoner.patient_contexts import PatientContexts
from cdsflow.reasoner.patient_lanes import Record
from cdsflow.reasoner.settings import Settings
from cdsflow.service import DeadLetters
from cdsflow.telemetry import PatientKeyer, trace_headers

log = logging.getLogger("cdsflow.reasoner")

_MAX_DLQ_ERROR_CHARS = 200
# the pause before an event that failed unexpectedly is tried again, doubling per attempt
_ATTEMPT_BACKOFF_S = 0.1


class EventOutcome(Enum):
    # published, ignored or dead-lettered: may be committed
    FINISHED = "finished"
    # a dependency was down: not committed, consumed again
    HANDED_BACK = "handed_back"


@dataclass
class ClinicalEventHandler:
    """What one clinical event needs; built in the app's lifespan."""

    settings: Settings
    deliveries: Deliveries
    dead_letters: DeadLetters
    ehr_history: EhrPatientHistory
    contexts: PatientContexts
    model: TritonModel
    patient_keyer: PatientKeyer
    metrics: ReasonerMetrics
    policy: RecommendationPolicy
    tracer: trace.Tracer
    health: DependencyHealth
    clock: Callable[[], datetime] = lambda: datetime.now(UTC)

    async def handle(self, record: Record) -> EventOutcome | Delivery:
        """One record, inside its own CONSUMER span: its outcome, or the delivery of its
        recommendation (finished once Kafka acknowledges it)."""
        with event_consumer_span(self.tracer, record) as span:
            return await self._handle(record, span)

    async def _handle(self, record: Record, span: trace.Span) -> EventOutcome | Delivery:
        attempt = 1
        while True:
            try:
                outcome = await self._process(record)
            except DependencyUnavailable as exc:
                self.metrics.dependency_failures.labels(dependency=exc.dependency).inc()
                self.health.failed(exc.dependency)
                span.set_attribute("cdsflow.outcome", "retry")
                return EventOutcome.HANDED_BACK
            except UnprocessableEvent as exc:  # the message's fault: dead-letter it at once
                return await self._dead_letter(record, exc, span)
            except Exception as exc:  # unexpected, or refused by Triton: try again, then DLQ
                if attempt >= self.settings.max_attempts:
                    return await self._dead_letter(record, exc, span)
                log.warning(
                    "event failed; trying again",
                    extra={"error_type": type(exc).__name__, "attempt": attempt},
                )
                await asyncio.sleep(_ATTEMPT_BACKOFF_S * 2 ** (attempt - 1))
                attempt += 1
                continue
            break
        if isinstance(outcome, IgnoreReason):
            span.set_attributes({"cdsflow.outcome": "ignored", "cdsflow.reason": outcome.value})
            self.metrics.ignored.labels(reason=outcome.value).inc()
            return EventOutcome.FINISHED
        span.set_attribute("cdsflow.outcome", "recommended")
        return outcome

    async def _process(self, record: Record) -> Delivery | IgnoreReason:
        event = vital_sign_event(
            decode_clinical_event(record.value or b""), self.settings.ehr_base_url
        )
        if isinstance(event, IgnoreReason):
            return event
        trigger, context = await self._patient_context(event, record.partition)
        recommendation = await self._recommend(event, context)
        trace.get_current_span().set_attributes(
            {
                "cdsflow.recommendation_id": recommendation.recommendation_id,
                "cdsflow.model.name": recommendation.model.name,
                "cdsflow.model.version": recommendation.model.version,
            }
        )
        delivery = await self._publish(recommendation)
        self.metrics.recommendations.labels(
            band=recommendation.scores[0].band, mode=_mode_label(recommendation)
        ).inc()
        # the event's readings join what is kept of the patient, for the next events
        self.contexts.record(
            record.partition, event.event.patient_key, event.patient_reference, trigger
        )
        return delivery

    async def _patient_context(
        self, event: VitalSignEvent, partition: int
    ) -> tuple[list[VitalSignReading], PatientContext]:
        """The trigger's readings (all plausible), completed with the patient's readings kept
        from earlier events; for a patient first seen, from its history on the EHR (and only
        once the EHR has confirmed that the patient exists)."""
        event.event.patient_key = checked_patient_key(
            event.event.patient_key, self.patient_keyer.patient_key(event.patient_reference)
        )
        trace.get_current_span().set_attributes(
            {
                "cdsflow.event_id": event.event.event_id,
                "cdsflow.resource_type": "Observation",
                "cdsflow.patient_key": event.event.patient_key,
            }
        )
        trigger = trigger_readings(event.observation, event.occurred_at)
        trigger_reference = observation_reference(event.observation)
        lookback = self.policy.lookback
        patient = event.patient_reference
        kept = self.contexts.readings(partition, patient)
        if kept is None:
            as_of = max(reading.observed_at for reading in trigger)
            kept, refused = await self.ehr_history.readings(patient, trigger_reference, as_of)
            self.metrics.count_refusals(r for r, at in refused if as_of - lookback <= at <= as_of)
            self.metrics.patient_contexts.labels(source="ehr").inc()
            self.contexts.record(partition, event.event.patient_key, patient, kept)
        else:
            await self.ehr_history.confirm_patient(patient)
            self.metrics.patient_contexts.labels(source="events").inc()
        return trigger, context_as_of(patient, trigger_reference, trigger, kept, lookback)

    async def _recommend(self, event: VitalSignEvent, context: PatientContext) -> Recommendation:
        inputs = model_inputs(context)
        try:
            outputs, model = await self.model.infer(inputs)
        except ModelUnavailable as exc:
            raise DependencyUnavailable("triton", str(exc)) from exc
        self.health.succeeded("triton")
        return build_recommendation(event.event, context, outputs, model, self.policy, self.clock())

    async def _publish(self, recommendation: Recommendation) -> Delivery:
        topic = self.settings.recommendations_topic
        with publish_span(self.tracer, topic) as headers:
            return await self.deliveries.send(
                topic,
                recommendation.SerializeToString(),
                key=recommendation.patient_key.encode(),
                headers=headers,
            )

    async def _dead_letter(self, record: Record, exc: Exception, span: trace.Span) -> EventOutcome:
        error_type = type(exc).__name__
        span.set_attributes({"cdsflow.outcome": "dead_letter", "error.type": error_type})
        try:
            await self.dead_letters.send(
                record.value or b"",
                record.key if isinstance(record.key, bytes) else None,
                error_type,
                dlq_error(exc),
                trace_headers=trace_headers(),
            )
        except Exception as publish_error:  # the DLQ is Kafka too: try again later
            self.metrics.dependency_failures.labels(dependency="kafka").inc()
            self.health.failed("kafka")
            log.warning(
                "dead-lettering failed; event handed back",
                extra={"error_type": type(publish_error).__name__},
            )
            return EventOutcome.HANDED_BACK
        self.metrics.dead_letters.labels(error_type=error_type).inc()
        if isinstance(exc, ImplausibleVitalSign):
            self.metrics.count_refusals(exc.refusals)
        log.warning("event dead-lettered", extra={"error_type": error_type})
        return EventOutcome.FINISHED


def dlq_error(exc: Exception) -> str:
    """A short description without patient data: our own messages, else the type only."""
    if isinstance(exc, UnprocessableEvent):
        return str(exc)[:_MAX_DLQ_ERROR_CHARS]
    if isinstance(exc, ModelRequestFailed):
        return f"Triton refused the inference request ({exc})"[:_MAX_DLQ_ERROR_CHARS]
    return f"unexpected {type(exc).__name__} while processing the event"


def _mode_label(recommendation: Recommendation) -> str:
    return "shadow" if recommendation.mode == Mode.MODE_SHADOW else "active"
