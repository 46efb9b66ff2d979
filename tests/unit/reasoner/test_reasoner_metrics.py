"""A counter's child for given label values is looked up once and counts under those labels."""

from __future__ import annotations

from cdsflow.reasoner.metrics import ReasonerMetrics
from cdsflow.telemetry import MetricsRegistry


def test_a_labelled_child_is_remembered_and_counts_under_its_labels() -> None:
    registry = MetricsRegistry("reasoner")
    metrics = ReasonerMetrics.register(registry)
    active = metrics.labelled(metrics.recommendations, "deterioration-risk", "1", "active", "low")
    assert active is metrics.labelled(
        metrics.recommendations, "deterioration-risk", "1", "active", "low"
    )
    shadow = metrics.labelled(metrics.recommendations, "deterioration-risk", "2", "shadow", "low")
    assert shadow is not active
    active.inc()
    active.inc()
    shadow.inc()
    metrics.labelled(metrics.patient_contexts, "events").inc()

    def sample(name: str, **labels: str) -> float:
        return registry.registry.get_sample_value(name, labels) or 0.0

    recommendations = "cdsflow_reasoner_recommendations_total"
    labels = {"adapter": "deterioration-risk", "mode": "active", "band": "low"}
    assert sample(recommendations, version="1", **labels) == 2
    assert sample(recommendations, **{**labels, "version": "2", "mode": "shadow"}) == 1
    assert sample("cdsflow_reasoner_patient_contexts_total", source="events") == 1
