"""Which dependencies failed last time they were used, for readiness and for pausing.

A dependency (`triton`, `ehr`, `kafka`) is failing from its first failed use until its next
successful one. While Triton is failing — down, or up but shedding load — `/readyz` reports
the model not ready, even when Triton itself says the model is ready.
"""

from __future__ import annotations


class DependencyUnavailable(Exception):
    """Triton, the EHR or Kafka could not be used right now; the event is handed back."""

    def __init__(self, dependency: str, detail: str) -> None:
        super().__init__(f"{dependency} unavailable ({detail})")
        self.dependency = dependency


class DependencyHealth:
    def __init__(self) -> None:
        self._failing: set[str] = set()

    def failed(self, dependency: str) -> None:
        self._failing.add(dependency)

    def succeeded(self, dependency: str) -> None:
        self._failing.discard(dependency)

    def is_failing(self, dependency: str) -> bool:
        return dependency in self._failing
