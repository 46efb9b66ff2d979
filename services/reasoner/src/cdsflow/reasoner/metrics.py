"""The reasoner's Prometheus metrics (`cdsflow_reasoner_*`): every event's outcome, by reason."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from prometheus_client import Counter, Gauge, Histogram

from cdsflow.reasoner.domain.plausible_ranges import RefusedReading
from cdsflow.telemetry import MetricsRegistry


@dataclass(frozen=True)
class ReasonerMetrics:
    recommendations: Counter
    dead_letters: Counter
    ignored: Counter
    implausible_readings: Counter
    patient_checks: Counter
    patient_contexts: Counter
    restored_snapshots: Counter
    dependency_failures: Counter
    inference_seconds: Histogram

    @classmethod
    def register(cls, registry: MetricsRegistry) -> ReasonerMetrics:
        return cls(
            recommendations=registry.counter(
                "reasoner_recommendations", "Recommendations published", ("band", "mode")
            ),
            dead_letters=registry.counter(
                "reasoner_dlq", "Clinical events sent to the dead-letter topic", ("error_type",)
            ),
            ignored=registry.counter(
                "reasoner_ignored_events", "Clinical events with nothing for the model", ("reason",)
            ),
            implausible_readings=registry.counter(
                "reasoner_implausible_readings",
                "Vital-sign readings refused as impossible (never scored)",
                ("vital_sign", "reason"),
            ),
            patient_checks=registry.counter(
                "reasoner_patient_checks",
                "Whether the event's patient exists on the EHR: known (remembered), "
                "confirmed (read from the EHR) or unknown",
                ("outcome",),
            ),
            patient_contexts=registry.counter(
                "reasoner_patient_contexts",
                "Where an event's patient context came from: events (kept from earlier "
                "events, the EHR not asked) or ehr (a patient first seen: history searched)",
                ("source",),
            ),
            restored_snapshots=registry.counter(
                "reasoner_restored_patient_contexts",
                "Patient contexts read back from the changelog when partitions were assigned",
                (),
            ),
            dependency_failures=registry.counter(
                "reasoner_dependency_failures",
                "Failed attempts to use a dependency; the event is retried",
                ("dependency",),
            ),
            inference_seconds=registry.histogram(
                "reasoner_inference_seconds", "Triton inference round trip", ("model",)
            ),
        )

    @staticmethod
    def watch_patients_in_context(registry: MetricsRegistry, held: Callable[[], int]) -> Gauge:
        """`cdsflow_reasoner_patients_in_context`: how many patients' contexts are held now."""
        gauge = Gauge(
            "reasoner_patients_in_context",
            "Patients whose recent vital signs this replica holds",
            namespace=registry.namespace,
            registry=registry.registry,
        )
        gauge.set_function(lambda: float(held()))
        return gauge

    def count_refusals(self, refusals: Iterable[RefusedReading]) -> None:
        for refused in refusals:
            self.implausible_readings.labels(
                vital_sign=refused.vital_sign, reason=refused.reason.value
            ).inc()
