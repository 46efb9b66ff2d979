"""The reasoner's Prometheus metrics (`cdsflow_reasoner_*`): every event's outcome, by reason."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from prometheus_client import Counter, Gauge, Histogram

from cdsflow.models import RefusedValue
from cdsflow.telemetry import MetricsRegistry


@dataclass(frozen=True)
class ReasonerMetrics:
    recommendations: Counter
    dead_letters: Counter
    ignored: Counter
    refused_values: Counter
    skipped_inferences: Counter
    patient_checks: Counter
    patient_contexts: Counter
    restored_snapshots: Counter
    dependency_failures: Counter
    inference_seconds: Histogram
    inference_rows: Histogram
    # each counter's children by label values, looked up once rather than for every event
    _children: dict[tuple[int, tuple[str, ...]], Counter] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )

    def labelled(self, counter: Counter, *values: str) -> Counter:
        """`counter.labels(*values)` (values in the order of its label names), remembered."""
        key = (id(counter), values)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = counter.labels(*values)
        return child

    @classmethod
    def register(cls, registry: MetricsRegistry) -> ReasonerMetrics:
        return cls(
            recommendations=registry.counter(
                "reasoner_recommendations",
                "Recommendations published, one per model version run (shadow beside active)",
                ("adapter", "version", "mode", "band"),
            ),
            dead_letters=registry.counter(
                "reasoner_dlq", "Clinical events sent to the dead-letter topic", ("error_type",)
            ),
            ignored=registry.counter(
                "reasoner_ignored_events", "Clinical events with nothing for the model", ("reason",)
            ),
            refused_values=registry.counter(
                "reasoner_refused_values",
                "Values refused by an adapter's data feed (impossible, unknown unit, no time): "
                "never fed to a model",
                ("adapter", "data", "reason"),
            ),
            skipped_inferences=registry.counter(
                "reasoner_skipped_inferences",
                "Events an adapter did not score (e.g. a required input not observed)",
                ("adapter", "reason"),
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
                "reasoner_inference_seconds",
                "Triton inference round trip, as each event waited for its row",
                ("model", "version"),
            ),
            inference_rows=registry.histogram(
                "reasoner_inference_rows",
                "Rows (events) per Triton request: those asked for at the same moment go together",
                ("model", "version"),
                buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256),
            ),
        )

    @staticmethod
    def watch_patients_in_context(registry: MetricsRegistry, held: Callable[[], int]) -> Gauge:
        """`cdsflow_reasoner_patients_in_context`: how many patients' contexts are held now."""
        gauge = Gauge(
            "reasoner_patients_in_context",
            "Patients whose recent data this replica holds",
            namespace=registry.namespace,
            registry=registry.registry,
        )
        gauge.set_function(lambda: float(held()))
        return gauge

    def count_refusals(self, adapter_id: str, refusals: Iterable[RefusedValue]) -> None:
        for refused in refusals:
            self.refused_values.labels(
                adapter=adapter_id, data=refused.data, reason=refused.reason.value
            ).inc()
