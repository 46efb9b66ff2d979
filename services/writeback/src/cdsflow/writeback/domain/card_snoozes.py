"""Cards a clinician overrode with a reason: not shown again for that patient for a while,
unless the indicator rises.

Every replica fills its own copy from the feedback topic (read back with the
recommendations), so a snooze holds whichever replica the next hook call reaches.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime

from cdsflow.contracts import Indicator

# CDS Hooks indicator names, by how urgent they are
INDICATOR_RANKS: dict[str, int] = {"info": 1, "warning": 2, "critical": 3}
INDICATOR_NAMES: dict[int, str] = {
    Indicator.INDICATOR_INFO: "info",
    Indicator.INDICATOR_WARNING: "warning",
    Indicator.INDICATOR_CRITICAL: "critical",
}


def snooze_key(patient_key: str, adapter_id: str) -> str:
    """Snoozes hold per patient and model adapter: overriding one model's card does not
    hide another model's."""
    return f"{patient_key}/{adapter_id}"


@dataclass(frozen=True)
class Snooze:
    until: datetime
    # the overridden card's indicator rank: a card above it is shown again
    indicator_rank: int


class CardSnoozes:
    """The snooze per `snooze_key` (patient and adapter), at most `max_patients` of them
    (the oldest forgotten first)."""

    def __init__(self, max_patients: int = 100_000) -> None:
        if max_patients < 1:
            raise ValueError("max_patients must be at least 1")
        self._max_patients = max_patients
        self._by_patient: OrderedDict[str, Snooze] = OrderedDict()

    def __len__(self) -> int:
        return len(self._by_patient)

    def snooze(self, patient_key: str, until: datetime, indicator: str) -> None:
        """Hide this patient's cards up to `indicator` until `until` (a later or higher
        snooze held already is kept)."""
        rank = INDICATOR_RANKS.get(indicator)
        if rank is None:
            return
        held = self._by_patient.get(patient_key)
        if held is not None:
            until = max(until, held.until)
            rank = max(rank, held.indicator_rank)
        self._by_patient[patient_key] = Snooze(until, rank)
        self._by_patient.move_to_end(patient_key)
        while len(self._by_patient) > self._max_patients:
            self._by_patient.popitem(last=False)

    def hides(self, patient_key: str, indicator: str, now: datetime) -> bool:
        """Whether a card with `indicator` is snoozed for this patient at `now`."""
        held = self._by_patient.get(patient_key)
        if held is None or now >= held.until:
            return False
        return INDICATOR_RANKS.get(indicator, 0) <= held.indicator_rank
