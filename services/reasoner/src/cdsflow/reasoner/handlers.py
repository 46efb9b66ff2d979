"""Thin: decode a clinical event, let the domain decide, call the EHR and Triton, publish.

Every record ends in exactly one of these ways (`RecordOutcome`):

- an event whose resource feeds some model adapters, about a patient of the configured EHR:
  every version of every such adapter runs (shadow beside active, one Triton request each,
  at the same time), and each result is published as its own Recommendation (FINISHED);
- an adapter that cannot score it (a required input not observed) is skipped and counted;
  when none can, nothing is published (FINISHED);
- any other event: nothing published, counted by reason (FINISHED);
- an event that cannot be processed (not a ClinicalEvent, malformed resource, another
  server's patient, a patient the EHR does not know, an impossible value in its own
  resource, ...): copied to the `.dlq` twin topic with the error in headers (FINISHED); one
  that fails in an unexpected way, or that Triton refuses, is tried `max_attempts` times first;
- Triton, the EHR or Kafka unavailable (down, or Triton shedding load): HANDED_BACK, not
  committed; the batch consumer pauses, then consumes it again. Nothing is lost, and the
  patient's later events wait behind it, so one patient's events stay in order.

Each record is handled inside its own CONSUMER span, continuing the trace in its headers.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

import numpy.typing as npt
from opentelemetry import trace

from cdsflow.contracts import Mode, Recommendation
from cdsflow.models import (
    MissingRequiredInputs,
    ModelInputs,
    ResourceReader,
    inputs_from_readings,
    interpret_outputs,
)
from cdsflow.models.feature_extraction import Reading
from cdsflow.models.fhir_elements import charted_resource
from cdsflow.models.recommendation_messages import RecommendationSubject, recommendation_message
from cdsflow.reasoner.deliveries import Deliveries, Delivery
from cdsflow.reasoner.dependency_health import DependencyHealth, DependencyUnavailable
from cdsflow.reasoner.domain.errors import (
    AdapterRefusal,
    ImplausibleValue,
    UnprocessableEvent,
)
from cdsflow.reasoner.domain.events import (
    IgnoreReason,
    ResourceEvent,
    checked_patient_key,
    decode_clinical_event,
    resource_event,
)
from cdsflow.reasoner.ehr_history import EhrPatientHistory, PatientHistory
from cdsflow.reasoner.metrics import ReasonerMetrics
from cdsflow.reasoner.model_client import ModelRequestFailed, ModelUnavailable, ModelVersionClient
from cdsflow.reasoner.patient_contexts import HeldPatient, PatientContexts, resource_updates
from cdsflow.reasoner.settings import Settings
from cdsflow.service import DeadLetters, Record, RecordOutcome, publish_span, record_consumer_span
from cdsflow.telemetry import PatientKeyer, trace_headers

log = logging.getLogger("cdsflow.reasoner")

_MAX_DLQ_ERROR_CHARS = 200
# the pause before an event that failed unexpectedly is tried again, doubling per attempt
_ATTEMPT_BACKOFF_S = 0.1
MISSING_REQUIRED_INPUTS = "missing-required-inputs"


@dataclass
class ClinicalEventHandler:
    """What one clinical event needs; built in the app's lifespan."""

    settings: Settings
    deliveries: Deliveries
    dead_letters: DeadLetters
    ehr_history: EhrPatientHistory
    contexts: PatientContexts
    # every configured adapter, and the model versions that each runs
    readers: Sequence[ResourceReader]
    models: Mapping[str, Sequence[ModelVersionClient]]
    patient_keyer: PatientKeyer
    metrics: ReasonerMetrics
    tracer: trace.Tracer
    health: DependencyHealth
    clock: Callable[[], datetime] = lambda: datetime.now(UTC)

    async def handle(self, record: Record) -> RecordOutcome | Delivery:
        """One record, inside its own CONSUMER span: its outcome, or the delivery of its
        recommendations (finished once Kafka acknowledges every one)."""
        with record_consumer_span(self.tracer, record) as span:
            return await self._handle(record, span)

    async def _handle(self, record: Record, span: trace.Span) -> RecordOutcome | Delivery:
        attempt = 1
        while True:
            try:
                outcome = await self._process(record)
            except DependencyUnavailable as exc:
                self.metrics.dependency_failures.labels(dependency=exc.dependency).inc()
                self.health.failed(exc.dependency)
                span.set_attribute("cdsflow.outcome", "retry")
                return RecordOutcome.HANDED_BACK
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
            self.metrics.labelled(self.metrics.ignored, outcome.value).inc()
            return RecordOutcome.FINISHED
        if outcome is None:
            span.set_attributes(
                {"cdsflow.outcome": "skipped", "cdsflow.reason": MISSING_REQUIRED_INPUTS}
            )
            return RecordOutcome.FINISHED
        span.set_attribute("cdsflow.outcome", "recommended")
        return outcome

    async def _process(self, record: Record) -> Delivery | IgnoreReason | None:
        """The delivery of the event's recommendations; why it was ignored; or None when no
        adapter could score it."""
        event = resource_event(
            decode_clinical_event(record.value or b""), self.settings.ehr_base_url, self.readers
        )
        if isinstance(event, IgnoreReason):
            return event
        event.event.patient_key = checked_patient_key(
            event.event.patient_key, self.patient_keyer.patient_key(event.patient_reference)
        )
        trace.get_current_span().set_attributes(
            {
                "cdsflow.event_id": event.event.event_id,
                "cdsflow.resource_type": event.event.resource_type,
                "cdsflow.patient_key": event.event.patient_key,
            }
        )
        reference = event.charted.reference
        own_readings: list[tuple[str, Reading]] = []
        birth_date = None
        if not event.usable:
            # entered in error, a stopped order: what it said before no longer counts, and
            # when the context held it, the adapters answer again (so that its card goes)
            forgotten = self.contexts.forget_resource(
                record.partition, event.patient_reference, reference
            )
            if not forgotten:
                return IgnoreReason.NOT_USABLE_STATUS
        else:
            own_readings, birth_date = self._own_readings(event)
        now = self.clock()
        as_of = event.as_of(now)
        patient = await self._patient_context(event, record.partition, as_of)
        # the event's own values join what is kept of the patient, replacing what the same
        # resource said before (so a redelivered event changes nothing)
        patient = self.contexts.record_resource(
            record.partition,
            event.event.patient_key,
            event.patient_reference,
            reference,
            own_readings,
        )
        if event.charted.resource_type == "Patient":
            patient.birth_date = birth_date
        runs = self._model_inputs(event, patient, as_of)
        if not runs:
            return None
        recommendations = await self._recommend(event, runs, now)
        deliveries = [await self._publish(recommendation) for recommendation in recommendations]
        for recommendation in recommendations:
            band = recommendation.scores[0].band if recommendation.scores else ""
            self.metrics.labelled(
                self.metrics.recommendations,
                recommendation.adapter_id,
                recommendation.model.version,
                _mode_label(recommendation),
                band,
            ).inc()
        # one recommendation (one adapter, one version) needs no gathering future of its own
        return deliveries[0] if len(deliveries) == 1 else asyncio.gather(*deliveries)

    def _own_readings(self, event: ResourceEvent) -> tuple[list[tuple[str, Reading]], date | None]:
        """Every fed adapter's values of the event's own resource (by feed key) and, for a
        Patient, its birth date. One value that no patient can have refuses the whole event
        (`ImplausibleValue`): nothing is scored or kept for it."""
        updates: list[tuple[str, Reading]] = []
        refusals: list[AdapterRefusal] = []
        birth_date = None
        for reader in event.readers:
            read = reader.readings(event.charted, fallback_time=event.occurred_at)
            refusals += [AdapterRefusal(reader.adapter, r) for r in read.refused]
            updates += resource_updates(reader, read.readings)
            birth_date = read.birth_date
        if refusals:
            raise ImplausibleValue(refusals)
        if event.charted.resource_type == "Observation" and not updates:
            raise UnprocessableEvent("the Observation carries no value for any model input")
        return updates, birth_date

    async def _patient_context(
        self, event: ResourceEvent, partition: int, as_of: datetime
    ) -> HeldPatient:
        """The patient's kept data; for a patient first seen, its data on the EHR (and only
        once the EHR has confirmed that the patient exists)."""
        patient_reference = event.patient_reference
        held = self.contexts.held(partition, patient_reference)
        if held is not None:
            await self.ehr_history.confirm_patient(patient_reference)
            self.metrics.labelled(self.metrics.patient_contexts, "events").inc()
            return held
        history = await self.ehr_history.history(patient_reference, as_of)
        self.metrics.patient_contexts.labels(source="ehr").inc()
        return self._hold_history(partition, event.event.patient_key, patient_reference, history)

    def _hold_history(
        self, partition: int, patient_key: str, patient_reference: str, history: PatientHistory
    ) -> HeldPatient:
        """What the EHR answered, read by every adapter (the patient's context serves them
        all); values refused are counted and left out."""
        patient = self.contexts.hold(partition, patient_key, patient_reference)
        patient.birth_date = history.birth_date
        for resource in history.resources:
            charted = charted_resource(resource)
            updates: list[tuple[str, Reading]] = []
            for reader in self.readers:
                read = reader.readings(charted)
                self.metrics.count_refusals(reader.adapter.id, read.refused)
                updates += resource_updates(reader, read.readings)
            if updates:
                self.contexts.record_resource(
                    partition, patient_key, patient_reference, charted.reference, updates
                )
        return patient

    def _model_inputs(
        self, event: ResourceEvent, patient: HeldPatient, as_of: datetime
    ) -> list[tuple[ResourceReader, ModelInputs]]:
        runs = []
        for reader in event.readers:
            adapter = reader.adapter
            try:
                inputs = inputs_from_readings(
                    adapter,
                    patient.readings_for(reader),
                    as_of,
                    birth_date=patient.birth_date,
                    patient_reference=event.patient_reference,
                )
            except MissingRequiredInputs:
                # not the event's fault, and no retry can help: counted, never imputed
                self.metrics.skipped_inferences.labels(
                    adapter=adapter.id, reason=MISSING_REQUIRED_INPUTS
                ).inc()
                continue
            self.metrics.count_refusals(adapter.id, inputs.extracted.refused)
            runs.append((reader, inputs))
        return runs

    async def _recommend(
        self,
        event: ResourceEvent,
        runs: list[tuple[ResourceReader, ModelInputs]],
        now: datetime,
    ) -> list[Recommendation]:
        """Every version of every adapter that can score the event, at the same time; all
        must answer before anything is published."""
        calls = [
            (reader, inputs, model)
            for reader, inputs in runs
            for model in self.models[reader.adapter.id]
        ]
        answers = await _all_answers([model.infer(inputs) for _, inputs, model in calls])
        failures = [answer for answer in answers if isinstance(answer, BaseException)]
        outputs = [answer for answer in answers if not isinstance(answer, BaseException)]
        outage = next((f for f in failures if isinstance(f, ModelUnavailable)), None)
        if outage is not None:
            raise DependencyUnavailable("triton", str(outage)) from outage
        if failures:
            raise failures[0]
        self.health.succeeded("triton")
        span_context = trace.get_current_span().get_span_context()
        subject = RecommendationSubject(
            event_id=event.event.event_id,
            patient_key=event.event.patient_key,
            patient_reference=event.patient_reference,
            ehr_base_url=event.event.source.ehr_base_url,
            produced_at=now,
            trace_id=format(span_context.trace_id, "032x") if span_context.is_valid else "",
            received_at=event.event.received_at if event.event.HasField("received_at") else None,
        )
        recommendations = []
        for (reader, inputs, model), tensors in zip(calls, outputs, strict=True):
            result = interpret_outputs(reader.adapter, inputs, tensors)
            recommendations.append(
                recommendation_message(
                    reader.adapter,
                    inputs,
                    result,
                    model_version=model.version,
                    mode=model.mode,
                    subject=subject,
                )
            )
        return recommendations

    async def _publish(self, recommendation: Recommendation) -> Delivery:
        topic = self.settings.recommendations_topic
        attributes = {
            "cdsflow.recommendation_id": recommendation.recommendation_id,
            "cdsflow.model.name": recommendation.model.name,
            "cdsflow.model.version": recommendation.model.version,
            "cdsflow.mode": _mode_label(recommendation),
        }
        with publish_span(self.tracer, topic, attributes) as span:
            return await self.deliveries.send(
                topic,
                recommendation.SerializeToString(),
                key=recommendation.patient_key.encode(),
                headers=trace_headers(span),
            )

    async def _dead_letter(self, record: Record, exc: Exception, span: trace.Span) -> RecordOutcome:
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
            return RecordOutcome.HANDED_BACK
        self.metrics.dead_letters.labels(error_type=error_type).inc()
        if isinstance(exc, ImplausibleValue):
            for refusal in exc.refusals:
                self.metrics.count_refusals(refusal.adapter.id, [refusal.refused])
        log.warning("event dead-lettered", extra={"error_type": error_type})
        return RecordOutcome.FINISHED


def dlq_error(exc: Exception) -> str:
    """A short description without patient data: our own messages, else the type only."""
    if isinstance(exc, UnprocessableEvent):
        return str(exc)[:_MAX_DLQ_ERROR_CHARS]
    if isinstance(exc, ModelRequestFailed):
        return f"Triton refused the inference request ({exc})"[:_MAX_DLQ_ERROR_CHARS]
    return f"unexpected {type(exc).__name__} while processing the event"


async def _all_answers(
    requests: list[Coroutine[Any, Any, dict[str, npt.NDArray[Any] | None]]],
) -> list[dict[str, npt.NDArray[Any] | None] | BaseException]:
    """Every request's answer or exception, all at the same time; one request (one adapter,
    one version: the usual event) is awaited as it is, without a task of its own."""
    if len(requests) != 1:
        return await asyncio.gather(*requests, return_exceptions=True)
    try:
        return [await requests[0]]
    except Exception as exc:
        return [exc]


def _mode_label(recommendation: Recommendation) -> str:
    return "shadow" if recommendation.mode == Mode.MODE_SHADOW else "active"
