"""Thin handlers: a consumed `Recommendation` (store it, write it back) and CDS Hooks calls.

Failure policy for a consumed recommendation, so that none is lost and none loops forever:
- undecodable, invalid or from another EHR -> published to the `.dlq` twin topic with
  `cdsflow-error-type`/`cdsflow-error` headers, then acknowledged;
- the write-back refused by the EHR (a 4xx other than 408/409/429) -> dead-lettered at once,
  with the status and the OperationOutcome's issue codes;
- the EHR unreachable, timing out, 408, 409, 429 or 5xx -> tried again with jittered backoff
  (honouring `Retry-After`) through the circuit breaker (`ehr_writes.py`); after the last of
  `CDSFLOW_WRITEBACK_MAX_ATTEMPTS` tries, dead-lettered with the attempts in the headers;
- the `.dlq` publish itself failing -> handed back: neither it nor the rest of its partition
  is committed, and they are consumed again after a pause (`CDSFLOW_WRITEBACK_RETRY_PAUSE_S`).

Recommendations are consumed in batches and written back up to
`CDSFLOW_WRITEBACK_MAX_CONCURRENT_PATIENTS` patients at a time, each patient's in offset order
(`cdsflow.service.LaneBatches`); each record is handled inside its own CONSUMER span
(`<topic> process`), continuing the trace in its headers, so the write-back's Provenance names
the recommendation's trace.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

from fastapi.responses import JSONResponse
from google.protobuf.message import DecodeError
from opentelemetry import trace
from opentelemetry.trace import Status, StatusCode
from prometheus_client import Counter, Histogram

from cdsflow.contracts import Recommendation
from cdsflow.fhir import EhrError
from cdsflow.service import (
    DeadLetters,
    Record,
    RecordOutcome,
    outcome_response,
    publish_span,
    record_consumer_span,
)
from cdsflow.telemetry import MetricsRegistry, trace_headers
from cdsflow.writeback.domain.recommendations import (
    adapter_of,
    comes_from_ehr,
    is_active,
    mode_name,
    recommendation_problems,
    seconds_since_received,
)
from cdsflow.writeback.domain.retry_schedule import CircuitOpen
from cdsflow.writeback.domain.writeback_bundle import BundleWording, writeback_bundle
from cdsflow.writeback.ehr_writes import EhrWriter, WriteFailed

logger = logging.getLogger(__name__)


# seconds: the pipeline's end-to-end latencies (tens of ms at ease, seconds under outages)
END_TO_END_BUCKETS = (0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


@dataclass(frozen=True)
class WritebackMetrics:
    cards_served: Counter
    writebacks: Counter
    hook_duration: Histogram
    hook_refusals: Counter
    token_rejections: Counter
    ehr_write_attempts: Counter
    dead_letters: Counter
    answers_before_rebuild: Counter
    on_demand: Counter
    prefetch_next_pages: Counter
    system_actions_served: Counter
    event_to_ehr_write: Histogram
    event_to_card: Histogram

    @classmethod
    def on(cls, registry: MetricsRegistry) -> WritebackMetrics:
        return cls(
            cards_served=registry.counter(
                "writeback_cards_served", "CDS Hooks cards returned to the EHR", ("indicator",)
            ),
            writebacks=registry.counter(
                "writeback_risk_assessments",
                "Consumed recommendations by write-back outcome (written, skipped_shadow, "
                "skipped_disabled, dead_lettered)",
                ("outcome",),
            ),
            ehr_write_attempts=registry.counter(
                "writeback_ehr_write_attempts",
                "Tries to send a write-back transaction to the EHR, by result (created, "
                "unchanged, outage, conflict, refused, circuit_open, error)",
                ("result",),
            ),
            dead_letters=registry.counter(
                "writeback_dead_letters",
                "Recommendations published to the .dlq topic, by error type",
                ("reason",),
            ),
            hook_duration=registry.histogram(
                "writeback_hook_duration_seconds", "Time to answer a CDS Hooks call", ("hook",)
            ),
            hook_refusals=registry.counter(
                "writeback_hook_refusals",
                "CDS Hooks calls refused as client mistakes (4xx), by reason",
                ("reason",),
            ),
            token_rejections=registry.counter(
                "writeback_hook_token_rejections",
                "CDS Hooks calls refused 401 because of their JWT, by reason",
                ("reason",),
            ),
            answers_before_rebuild=registry.counter(
                "writeback_hook_answers_before_rebuild",
                "CDS Hooks calls answered with no cards because the recommendations topic "
                "was not read back yet",
            ),
            on_demand=registry.counter(
                "writeback_on_demand",
                "Hook calls scored on demand, by outcome (scored, deadline, model-unavailable, "
                "model-error, missing-inputs, no-model)",
                ("outcome",),
            ),
            prefetch_next_pages=registry.counter(
                "writeback_prefetch_next_pages",
                "Searchset next links met while gathering prefetch on demand, by result "
                "(followed, bounded: not followed past CDSFLOW_PREFETCH_MAX_PAGES/_ENTRIES)",
                ("result",),
            ),
            system_actions_served=registry.counter(
                "writeback_system_actions_served",
                "CDS Hooks systemActions returned to the EHR (active recommendations only)",
            ),
            event_to_ehr_write=registry.histogram(
                "writeback_event_to_ehr_write_seconds",
                "End to end: from the listener receiving a change to its active "
                "recommendation written into the EHR (first writes only), by adapter",
                ("adapter",),
                buckets=END_TO_END_BUCKETS,
            ),
            event_to_card=registry.histogram(
                "writeback_event_to_card_seconds",
                "End to end: from the listener receiving a change to its active "
                "recommendation's cards ready on this replica (live, not read back at start), "
                "by adapter",
                ("adapter",),
                buckets=END_TO_END_BUCKETS,
            ),
        )


class RecommendationConsumer:
    """The consumer group's part: writes each active recommendation back into the EHR, once.

    The cards do not come from here: every replica keeps them by reading the topic itself
    (`recommendations_tail.py`), whichever partitions the group gives it."""

    def __init__(
        self,
        *,
        ehr_base_url: str,
        writer: EhrWriter,
        wordings: Mapping[str, BundleWording] | None = None,
        dead_letters: DeadLetters,
        metrics: WritebackMetrics,
        writeback_enabled: bool,
        tracer: trace.Tracer,
    ) -> None:
        self._ehr_base_url = ehr_base_url
        self._writer = writer
        # adapter id -> how its resources name what it assessed
        self._wordings = dict(wordings or {})
        self._dead_letters = dead_letters
        self._metrics = metrics
        self._writeback_enabled = writeback_enabled
        self._tracer = tracer

    async def handle(self, record: Record) -> RecordOutcome:
        """One consumed record, inside its own CONSUMER span: FINISHED once written back,
        skipped or dead-lettered; HANDED_BACK when it could not be dead-lettered."""
        with record_consumer_span(self._tracer, record) as span:
            key = record.key if isinstance(record.key, bytes) else None
            return await self._handle(record.value or b"", key, span)

    async def _handle(self, body: bytes, key: bytes | None, span: trace.Span) -> RecordOutcome:
        try:
            recommendation = Recommendation.FromString(body)
        except DecodeError:
            return await self._dead_letter(
                body, key, "UndecodableRecommendation", "the body is not a Recommendation"
            )
        problems = recommendation_problems(recommendation)
        if problems:
            return await self._dead_letter(body, key, "InvalidRecommendation", "; ".join(problems))
        if not comes_from_ehr(recommendation, self._ehr_base_url):
            # its patient ids are another EHR's: never show it, never write it here
            return await self._dead_letter(
                body, key, "ForeignEhr", "the recommendation names another EHR than ours"
            )
        span.set_attributes(
            {
                "cdsflow.recommendation_id": recommendation.recommendation_id,
                "cdsflow.event_id": recommendation.event_id,
                "cdsflow.patient_key": recommendation.patient_key,
                "cdsflow.mode": mode_name(recommendation),
                "cdsflow.model.name": recommendation.model.name,
                "cdsflow.model.version": recommendation.model.version,
            }
        )
        return await self._write_back(recommendation, body, key)

    async def _write_back(
        self, recommendation: Recommendation, body: bytes, key: bytes | None
    ) -> RecordOutcome:
        """Write an active recommendation into the EHR, once; report how it went."""
        if not is_active(recommendation):
            return self._done("skipped_shadow")
        if not self._writeback_enabled:
            return self._done("skipped_disabled")
        bundle = writeback_bundle(
            recommendation,
            trace_id=_current_trace_id(),
            recorded=datetime.now(UTC),
            ehr_base_url=self._ehr_base_url,
            described_as=self._wordings.get(adapter_of(recommendation)),
        )
        try:
            done = await self._writer.write(bundle)
        except WriteFailed as failed:
            error_type, error = _write_failure(failed)
            details = {"cdsflow-attempts": str(failed.attempts)}
            if failed.status_code is not None:
                details["cdsflow-ehr-status"] = str(failed.status_code)
            return await self._dead_letter(body, key, error_type, error, details)
        trace.get_current_span().set_attributes(
            {"cdsflow.ehr.attempts": done.attempts, "cdsflow.ehr.created": done.created}
        )
        latency = seconds_since_received(recommendation, time.time())
        if done.created and latency is not None:
            self._metrics.event_to_ehr_write.labels(adapter_of(recommendation)).observe(latency)
        return self._done("written")

    def _done(self, outcome: str) -> RecordOutcome:
        self._metrics.writebacks.labels(outcome=outcome).inc()
        trace.get_current_span().set_attribute("cdsflow.outcome", outcome)
        return RecordOutcome.FINISHED

    async def _dead_letter(
        self,
        body: bytes,
        key: bytes | None,
        error_type: str,
        error: str,
        details: Mapping[str, str] | None = None,
    ) -> RecordOutcome:
        self._mark_failed("dead_lettered", error_type)
        try:
            with publish_span(self._tracer, self._dead_letters.topic) as publish:
                await self._dead_letters.send(
                    body, key, error_type, error, details, trace_headers=trace_headers(publish)
                )
        except Exception as exc:
            logger.error(
                "could not dead-letter a recommendation (%s); it is consumed again after a pause",
                type(exc).__name__,
            )
            return RecordOutcome.HANDED_BACK
        self._metrics.writebacks.labels(outcome="dead_lettered").inc()
        self._metrics.dead_letters.labels(reason=error_type).inc()
        logger.warning(
            "recommendation dead-lettered to %s (%s)", self._dead_letters.topic, error_type
        )
        return RecordOutcome.FINISHED

    @staticmethod
    def _mark_failed(outcome: str, error_type: str) -> None:
        span = trace.get_current_span()
        span.set_attributes({"cdsflow.outcome": outcome, "error.type": error_type})
        span.set_status(Status(StatusCode.ERROR))


def _current_trace_id() -> str | None:
    """The 32-hex id of the consumer span's trace (the recommendation's, continued from the
    Kafka headers); None without a valid span."""
    context = trace.get_current_span().get_span_context()
    return format(context.trace_id, "032x") if context.is_valid else None


def _write_failure(failed: WriteFailed) -> tuple[str, str]:
    """The `.dlq` error type and description of a failed write; free of patient data (a
    status, issue codes, an exception type)."""
    cause = failed.cause
    tries = f"{failed.attempts} attempt{'s' if failed.attempts != 1 else ''}"
    if failed.retried:
        last = str(cause) if isinstance(cause, EhrError | CircuitOpen) else type(cause).__name__
        return "EhrUnavailable", f"the EHR did not take the write-back after {tries}; last: {last}"
    if isinstance(cause, EhrError):
        codes = f" (issue codes: {', '.join(cause.issue_codes)})" if cause.issue_codes else ""
        return "EhrRefused", f"the EHR refused the write-back: {cause}{codes}; not retried"
    return "WritebackFailed", f"the write-back failed ({type(cause).__name__}); not retried"


@dataclass(frozen=True)
class HookLimits:
    """What a CDS Hooks request may be: its body size, and whether `fhirServer` may be http
    on loopback (the embedded stack only)."""

    max_body_bytes: int
    allow_loopback_http_fhir_server: bool = False


def unauthenticated_response() -> JSONResponse:
    """401, the same for every reason (which check failed is in the metric, not the answer)."""
    return outcome_response(
        401, "login", "authentication required", headers={"WWW-Authenticate": "Bearer"}
    )


def replay_check_unavailable_response() -> JSONResponse:
    """503 when a token's claim across replicas could not be confirmed in time (the broker is
    down): the call is not answered unverified; the EHR may call again with a new token."""
    return outcome_response(
        503,
        "transient",
        "the call could not be authenticated now; try again",
        headers={"Retry-After": "1"},
    )


def problem_response(status_code: int, code: str, diagnostics: str) -> JSONResponse:
    """An OperationOutcome naming what was wrong; never a value from the request."""
    return outcome_response(status_code, code, diagnostics)
