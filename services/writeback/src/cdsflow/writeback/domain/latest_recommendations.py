"""The latest recommendation per patient and model adapter, kept in memory for CDS Hooks
calls (each CDS service shows its own adapter's).

Every replica fills its own copy by reading the recommendations topic back and following it
(`recommendations_tail.py`); since `keep` decides by `produced_at` alone, replicas that read
the same records hold the same entries, whatever order the partitions interleave in.

Active and shadow recommendations are kept apart, so that a shadow model never hides the
active model's guidance. Each entry keeps the span context that produced it (from the
record's `traceparent`), so that a hook call that serves it can link to that trace.
A recommendation older than `max_age` is neither kept nor served: the topic's retention
forgets it some day, and a replica started after that could not know it.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from opentelemetry.trace import SpanContext

from cdsflow.contracts import Recommendation
from cdsflow.writeback.domain.cards import card_uuids
from cdsflow.writeback.domain.recommendations import (
    LEGACY_ADAPTER_ID,
    adapter_of,
    is_active,
    produced_at,
)


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
    """Latest active and latest shadow recommendation per patient key and adapter id.

    Bounded: past `max_patients` patients, the one updated longest ago is forgotten.
    `rebuilt` is False until the topic has been read back to where it ended at start: until
    then an entry may be an older recommendation whose successor is not read yet, so nothing
    may be shown from it.
    """

    def __init__(
        self,
        max_patients: int = 100_000,
        *,
        max_age: timedelta | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        rebuilt: bool = False,
    ) -> None:
        if max_patients < 1:
            raise ValueError("max_patients must be at least 1")
        if max_age is not None and max_age <= timedelta(0):
            raise ValueError("max_age must be positive")
        self._max_patients = max_patients
        self._max_age = max_age
        self._clock = clock
        # patient key -> (adapter id, active) -> the latest
        self._by_patient: OrderedDict[str, dict[tuple[str, bool], StoredRecommendation]] = (
            OrderedDict()
        )
        # card uuid -> the active recommendation that showed it (for feedback); superseded
        # cards stay findable until twice the patients' bound is reached
        self._by_card: OrderedDict[str, StoredRecommendation] = OrderedDict()
        self.rebuilt = rebuilt

    def __len__(self) -> int:
        return len(self._by_patient)

    def keep(self, entry: StoredRecommendation) -> bool:
        """Store `entry` unless a newer one is already held or it is past `max_age`; True when
        it was stored."""
        if not self._current(entry):
            return False
        patient_key = entry.recommendation.patient_key
        active = is_active(entry.recommendation)
        slot = (adapter_of(entry.recommendation), active)
        slots = self._by_patient.get(patient_key, {})
        held = slots.get(slot)
        if held is not None and held.produced_at > entry.produced_at:
            return False
        slots[slot] = entry
        self._by_patient[patient_key] = slots
        self._by_patient.move_to_end(patient_key)
        while len(self._by_patient) > self._max_patients:
            self._by_patient.popitem(last=False)
        if active:
            self.remember_cards(entry)
        return True

    def remember_cards(self, entry: StoredRecommendation) -> None:
        """Make the recommendation's cards findable by uuid (for feedback) without making it
        anyone's latest: for cards scored on demand in a hook call, which no topic carries."""
        for uuid in card_uuids(entry.recommendation):
            self._by_card[uuid] = entry
            self._by_card.move_to_end(uuid)
        while len(self._by_card) > 2 * self._max_patients:
            self._by_card.popitem(last=False)

    def showing_card(self, card_uuid: str) -> StoredRecommendation | None:
        """The active recommendation whose card had this uuid, if it is still known."""
        return self._by_card.get(card_uuid)

    def latest_active(
        self, patient_key: str, adapter_id: str = LEGACY_ADAPTER_ID
    ) -> StoredRecommendation | None:
        """What a clinician may be shown for this patient from this adapter's model (None
        once past `max_age`)."""
        return self._held(patient_key, adapter_id, active=True)

    def latest_shadow(
        self, patient_key: str, adapter_id: str = LEGACY_ADAPTER_ID
    ) -> StoredRecommendation | None:
        """What a shadow model said about this patient (measured, never shown)."""
        return self._held(patient_key, adapter_id, active=False)

    def _held(
        self, patient_key: str, adapter_id: str, *, active: bool
    ) -> StoredRecommendation | None:
        entry = self._by_patient.get(patient_key, {}).get((adapter_id, active))
        return entry if entry is not None and self._current(entry) else None

    def _current(self, entry: StoredRecommendation) -> bool:
        return self._max_age is None or entry.produced_at >= self._clock() - self._max_age
