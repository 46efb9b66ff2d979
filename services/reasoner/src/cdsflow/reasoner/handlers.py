"""Thin: decode a clinical event, let the domain decide, call the EHR and Triton, publish.

Every message ends in exactly one of these ways:

- a vital-sign event about a patient of the configured EHR: its Recommendation is published,
  then the message is committed;
- any other event: committed, nothing published, counted by reason;
- an event that cannot be processed (not a ClinicalEvent, malformed resource, unsupported
  unit, another server's patient, a patient the EHR does not know, an impossible vital
  sign, ...): copied to the `.dlq` twin topic with the error in headers, then committed;
- Triton, the EHR or Kafka unavailable: retried with exponential backoff for up to
  `dependency_retry_s`, then handed back uncommitted (the consumer seeks back to it), so it
  is consumed again. Nothing is lost and one patient's events stay in order.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from aiokafka.errors import KafkaError
from faststream.kafka import KafkaBroker
from faststream.kafka.message import KafkaMessage
from opentelemetry import trace
from tenacity import AsyncRetrying, retry_if_exception_type, stop_after_delay, wait_exponential

from cdsflow.contracts import Mode, Recommendation
from cdsflow.fhir import EhrClient, EhrError
from cdsflow.reasoner.domain.errors import (
    ImplausibleVitalSign,
    UnknownPatient,
    UnprocessableEvent,
)
from cdsflow.reasoner.domain.events import (
    IgnoreReason,
    VitalSignEvent,
    checked_patient_key,
    confirms_patient,
    decode_clinical_event,
    vital_sign_event,
)
from cdsflow.reasoner.domain.model_adapter import model_inputs
from cdsflow.reasoner.domain.patient_context import (
    PatientContext,
    assemble_patient_context,
    history_search_params,
    trigger_readings,
)
from cdsflow.reasoner.domain.recommendation import RecommendationPolicy, build_recommendation
from cdsflow.reasoner.known_patients import KnownPatients
from cdsflow.reasoner.metrics import ReasonerMetrics
from cdsflow.reasoner.model_client import ModelUnavailable, TritonModel
from cdsflow.reasoner.settings import Settings
from cdsflow.service import DeadLetters, record_key
from cdsflow.telemetry import PatientKeyer

log = logging.getLogger("cdsflow.reasoner")

_MAX_DLQ_ERROR_CHARS = 200


class DependencyUnavailable(Exception):
    """Triton, the EHR or Kafka could not be used right now; the event is retried."""

    def __init__(self, dependency: str, detail: str) -> None:
        super().__init__(f"{dependency} unavailable ({detail})")
        self.dependency = dependency


@dataclass
class ClinicalEventHandler:
    """What one clinical event needs; built in the app's lifespan."""

    settings: Settings
    broker: KafkaBroker
    dead_letters: DeadLetters
    ehr: EhrClient
    model: TritonModel
    patient_keyer: PatientKeyer
    metrics: ReasonerMetrics
    policy: RecommendationPolicy
    known_patients: KnownPatients
    clock: Callable[[], datetime] = lambda: datetime.now(UTC)

    async def handle(self, message: KafkaMessage) -> None:
        span = trace.get_current_span()
        try:
            outcome = await self._with_retries(message.body)
        except DependencyUnavailable as exc:
            span.set_attribute("cdsflow.outcome", "retry")
            log.warning("event handed back for redelivery", extra={"dependency": exc.dependency})
            await message.nack()
            return
        except Exception as exc:  # anything else is this message's fault: dead-letter it
            span.set_attributes(
                {"cdsflow.outcome": "dead_letter", "error.type": type(exc).__name__}
            )
            await self._dead_letter(message, exc)
            return
        if isinstance(outcome, IgnoreReason):
            span.set_attributes({"cdsflow.outcome": "ignored", "cdsflow.reason": outcome.value})
            self.metrics.ignored.labels(reason=outcome.value).inc()
        else:
            span.set_attribute("cdsflow.outcome", "recommended")
        await message.ack()

    async def _with_retries(self, body: bytes) -> Recommendation | IgnoreReason:
        async for attempt in AsyncRetrying(
            retry=retry_if_exception_type(DependencyUnavailable),
            stop=stop_after_delay(self.settings.dependency_retry_s),
            wait=wait_exponential(multiplier=0.2, max=5.0),
            reraise=True,
        ):
            with attempt:
                try:
                    return await self._process(body)
                except DependencyUnavailable as exc:
                    self.metrics.dependency_failures.labels(dependency=exc.dependency).inc()
                    raise
        raise AssertionError("unreachable")  # pragma: no cover - AsyncRetrying returns or raises

    async def _process(self, body: bytes) -> Recommendation | IgnoreReason:
        event = vital_sign_event(decode_clinical_event(body), self.settings.ehr_base_url)
        if isinstance(event, IgnoreReason):
            return event
        context = await self._patient_context(event)
        recommendation = await self._recommend(event, context)
        trace.get_current_span().set_attributes(
            {
                "cdsflow.recommendation_id": recommendation.recommendation_id,
                "cdsflow.model.name": recommendation.model.name,
                "cdsflow.model.version": recommendation.model.version,
            }
        )
        await self._publish(recommendation)
        self.metrics.recommendations.labels(
            band=recommendation.scores[0].band, mode=_mode_label(recommendation)
        ).inc()
        self.metrics.count_refusals(context.implausible_history)
        return recommendation

    async def _patient_context(self, event: VitalSignEvent) -> PatientContext:
        """The trigger's readings (all plausible), completed from the patient's history on the
        EHR, once the EHR has confirmed that the patient exists."""
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
        lookback = self.policy.lookback
        as_of = max(reading.observed_at for reading in trigger)
        history = await self._known_patient_history(event.patient_reference, as_of, lookback)
        return assemble_patient_context(
            event.patient_reference,
            event.observation,
            trigger,
            history,
            lookback,
            ehr_base_url=self.settings.ehr_base_url,
        )

    async def _recommend(self, event: VitalSignEvent, context: PatientContext) -> Recommendation:
        inputs = model_inputs(context)
        try:
            outputs, model = await self.model.infer(inputs)
        except ModelUnavailable as exc:
            raise DependencyUnavailable("triton", str(exc)) from exc
        return build_recommendation(event.event, context, outputs, model, self.policy, self.clock())

    async def _known_patient_history(
        self, patient_reference: str, as_of: datetime, lookback: timedelta
    ) -> list[dict[str, Any]]:
        """The patient's history; for a patient not confirmed lately, the EHR is asked whether
        it exists at the same time as the history is searched (no added latency)."""
        if self.known_patients.is_known(patient_reference):
            self.metrics.patient_checks.labels(outcome="known").inc()
            return await self._patient_history(patient_reference, as_of, lookback)
        checked = asyncio.gather(
            self._patient_exists(patient_reference),
            self._patient_history(patient_reference, as_of, lookback),
            return_exceptions=True,
        )
        exists: bool | BaseException
        history: list[dict[str, Any]] | BaseException
        exists, history = await checked
        if isinstance(exists, BaseException):
            raise exists
        if not exists:
            self.metrics.patient_checks.labels(outcome="unknown").inc()
            raise UnknownPatient("the configured EHR does not know the event's patient")
        self.metrics.patient_checks.labels(outcome="confirmed").inc()
        self.known_patients.remember(patient_reference)
        if isinstance(history, BaseException):
            raise history
        return history

    async def _patient_exists(self, patient_reference: str) -> bool:
        patient_id = patient_reference.removeprefix("Patient/")
        try:
            patient = await self.ehr.read("Patient", patient_id)
        except (EhrError, httpx.HTTPError) as exc:
            raise DependencyUnavailable("ehr", type(exc).__name__) from exc
        return confirms_patient(patient, patient_reference)

    async def _patient_history(
        self, patient_reference: str, as_of: datetime, lookback: timedelta
    ) -> list[dict[str, Any]]:
        try:
            return await self.ehr.search(
                "Observation", history_search_params(patient_reference, as_of, lookback)
            )
        except (EhrError, httpx.HTTPError) as exc:
            raise DependencyUnavailable("ehr", type(exc).__name__) from exc

    async def _publish(self, recommendation: Recommendation) -> None:
        try:
            await self.broker.publish(
                recommendation.SerializeToString(),
                topic=self.settings.recommendations_topic,
                key=recommendation.patient_key.encode(),
            )
        except (KafkaError, OSError, TimeoutError) as exc:
            raise DependencyUnavailable("kafka", type(exc).__name__) from exc

    async def _dead_letter(self, message: KafkaMessage, exc: Exception) -> None:
        error_type = type(exc).__name__
        try:
            await self.dead_letters.send(
                message.body, record_key(message), error_type, dlq_error(exc)
            )
        except Exception as publish_error:  # the DLQ is Kafka too: try again later
            self.metrics.dependency_failures.labels(dependency="kafka").inc()
            log.warning(
                "dead-lettering failed; event handed back",
                extra={"error_type": type(publish_error).__name__},
            )
            await message.nack()
            return
        self.metrics.dead_letters.labels(error_type=error_type).inc()
        if isinstance(exc, ImplausibleVitalSign):
            self.metrics.count_refusals(exc.refusals)
        log.warning("event dead-lettered", extra={"error_type": error_type})
        await message.ack()


def dlq_error(exc: Exception) -> str:
    """A short description without patient data: our own messages, else the type only."""
    if isinstance(exc, UnprocessableEvent):
        return str(exc)[:_MAX_DLQ_ERROR_CHARS]
    return f"unexpected {type(exc).__name__} while processing the event"


def _mode_label(recommendation: Recommendation) -> str:
    return "shadow" if recommendation.mode == Mode.MODE_SHADOW else "active"
