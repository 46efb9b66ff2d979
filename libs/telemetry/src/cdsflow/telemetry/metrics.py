"""Prometheus metrics, one registry per service instance."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest


class MetricsRegistry:
    """Owns a `CollectorRegistry`; services declare their own metrics on it."""

    def __init__(self, service_name: str) -> None:
        self.registry = CollectorRegistry()
        self.namespace = "cdsflow"
        self.service_name = service_name

    def counter(self, name: str, documentation: str, labels: tuple[str, ...] = ()) -> Counter:
        return Counter(
            name, documentation, labels, namespace=self.namespace, registry=self.registry
        )

    def gauge(self, name: str, documentation: str, labels: tuple[str, ...] = ()) -> Gauge:
        return Gauge(name, documentation, labels, namespace=self.namespace, registry=self.registry)

    def histogram(
        self,
        name: str,
        documentation: str,
        labels: tuple[str, ...] = (),
        buckets: tuple[float, ...] = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
    ) -> Histogram:
        return Histogram(
            name,
            documentation,
            labels,
            namespace=self.namespace,
            registry=self.registry,
            buckets=buckets,
        )

    def exposition(self) -> tuple[bytes, str]:
        """Body and content type for `GET /metrics`."""
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
