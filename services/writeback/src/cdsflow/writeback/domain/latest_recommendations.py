"""The latest recommendation per patient, kept in memory for CDS Hooks calls.

Active and shadow recommendations are kept apart, so that a shadow model never hides the
active model's guidance. Each entry keeps the span context of the consumer span that
stored it, so that a hook call that serves it can link to the trace that produced it.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime

from opentelemetry.trace import SpanContext

from cdsflow.contracts import Recommendation
from cdsflow.writeback.domain.recommendations import is_active, produced_at


@dataclass(frozen=True)
class StoredRecommendation:
    recommendation: Recommendation
    produced_at: datetime
    # the consumer span that stored it; None when it arrived without a trace
    trace_link: SpanContext | None


def stored(
    recommendation: Recommendation, trace_link: SpanContext | None = None
) -> StoredRecommendation:
    """Wrap a valid recommendation (one with `produced_at`) for the store."""
    return StoredRecommendation(recommendation, produced_at(recommendation), trace_link)


class LatestRecommendations:
    """Latest active and latest shadow recommendation per patient key.

    Bounded: past `max_patients` patients, the one updated longest ago is forgotten.
    """

    def __init__(self, max_patients: int = 100_000) -> None:
        if max_patients < 1:
            raise ValueError("max_patients must be at least 1")
        self._max_patients = max_patients
        self._by_patient: OrderedDict[str, dict[bool, StoredRecommendation]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._by_patient)

    def keep(self, entry: StoredRecommendation) -> bool:
        """Store `entry` unless a newer one is already held; True when it was stored."""
        patient_key = entry.recommendation.patient_key
        active = is_active(entry.recommendation)
        slots = self._by_patient.get(patient_key, {})
        held = slots.get(active)
        if held is not None and held.produced_at > entry.produced_at:
            return False
        slots[active] = entry
        self._by_patient[patient_key] = slots
        self._by_patient.move_to_end(patient_key)
        while len(self._by_patient) > self._max_patients:
            self._by_patient.popitem(last=False)
        return True

    def latest_active(self, patient_key: str) -> StoredRecommendation | None:
        """What a clinician may be shown for this patient."""
        return self._by_patient.get(patient_key, {}).get(True)

    def latest_shadow(self, patient_key: str) -> StoredRecommendation | None:
        """What a shadow model said about this patient (measured, never shown)."""
        return self._by_patient.get(patient_key, {}).get(False)
