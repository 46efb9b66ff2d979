"""Patients the EHR has confirmed to exist, remembered for a while to spare it a read per event.

Bounded (the least recently seen patient is forgotten first) and time-limited: a confirmation
is trusted for `ttl_s` after the EHR gave it, then the EHR is asked again, so a patient that
was deleted or merged stops getting recommendations within that time. In memory, per
replica: after a rebalance a replica asks again for the patients it did not know.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable


class KnownPatients:
    """`Patient/<id>` references the EHR confirmed, each with the time its trust runs out."""

    def __init__(
        self,
        max_patients: int,
        ttl_s: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_patients < 0 or ttl_s < 0:
            raise ValueError("max_patients and ttl_s must not be negative")
        self._max_patients = max_patients
        self._ttl_s = ttl_s
        self._clock = clock
        self._expiry_by_patient: OrderedDict[str, float] = OrderedDict()

    def __len__(self) -> int:
        return len(self._expiry_by_patient)

    def is_known(self, patient_reference: str) -> bool:
        """True while the EHR's confirmation of this patient is younger than `ttl_s`."""
        expires_at = self._expiry_by_patient.get(patient_reference)
        if expires_at is None:
            return False
        if self._clock() >= expires_at:
            del self._expiry_by_patient[patient_reference]
            return False
        self._expiry_by_patient.move_to_end(patient_reference)
        return True

    def remember(self, patient_reference: str) -> None:
        """The EHR has just confirmed this patient; forget the least recently seen if full."""
        if self._max_patients == 0 or self._ttl_s == 0:
            return
        self._expiry_by_patient[patient_reference] = self._clock() + self._ttl_s
        self._expiry_by_patient.move_to_end(patient_reference)
        while len(self._expiry_by_patient) > self._max_patients:
            self._expiry_by_patient.popitem(last=False)
