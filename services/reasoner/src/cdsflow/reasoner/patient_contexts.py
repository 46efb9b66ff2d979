"""Each patient's recent vital signs, kept from the clinical events themselves.

The EHR cannot take a search per event, so the reasoner keeps, per patient, the latest
plausible reading of every vital sign it has seen (from the events, and from the EHR's
history once, when the patient was first seen). It is state of the partition the patient's
events arrive on: restored from the changelog when the partition is assigned
(`context_changelog`), dropped when it goes to another replica.

Bounded: at most `max_patients` patients (the least recently seen is forgotten first; its
next event asks the EHR again), at most one reading per vital sign, and none older than the
look-back window before the patient's newest reading. A reading takes about 200 bytes.
"""

from __future__ import annotations

import sys
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from cdsflow.reasoner.domain.vital_signs import VITAL_SIGN_BY_NAME, VitalSignReading

# (observed at, POSIX seconds; value in the model's unit; LOINC code; "Observation/<id>")
StoredReading = tuple[float, float, str, str]


@dataclass(slots=True)
class _Patient:
    partition: int
    patient_key: str
    readings: dict[str, StoredReading] = field(default_factory=dict)


@dataclass(frozen=True)
class ContextSnapshot:
    """One patient's kept readings, as written to and read from the changelog."""

    partition: int
    patient_key: str
    patient_reference: str
    readings: tuple[VitalSignReading, ...]


class PatientContexts:
    def __init__(self, max_patients: int, lookback: timedelta) -> None:
        if max_patients < 1:
            raise ValueError("max_patients must be at least 1")
        self._max_patients = max_patients
        self._lookback_s = lookback.total_seconds()
        self._patients: OrderedDict[str, _Patient] = OrderedDict()
        self._changed: set[str] = set()

    def __len__(self) -> int:
        return len(self._patients)

    def readings(self, partition: int, patient_reference: str) -> list[VitalSignReading] | None:
        """The patient's kept readings; None when the patient is not held for `partition`
        (first seen, forgotten, or its events came on another partition)."""
        patient = self._patients.get(patient_reference)
        if patient is None or patient.partition != partition:
            return None
        self._patients.move_to_end(patient_reference)
        return [_reading(name, stored) for name, stored in patient.readings.items()]

    def record(
        self,
        partition: int,
        patient_key: str,
        patient_reference: str,
        readings: Iterable[VitalSignReading],
    ) -> None:
        """Keep the newest reading of each vital sign (the patient is held even with none)."""
        patient = self._patients.get(patient_reference)
        if patient is None or patient.partition != partition:
            patient = self._patients[patient_reference] = _Patient(partition, patient_key)
        self._patients.move_to_end(patient_reference)
        for reading in readings:
            stored: StoredReading = (
                reading.observed_at.timestamp(),
                reading.value,
                sys.intern(reading.code),
                reading.resource_reference,
            )
            current = patient.readings.get(reading.name)
            if current is None or stored[0] >= current[0]:
                patient.readings[sys.intern(reading.name)] = stored
        if patient.readings:
            newest = max(stored[0] for stored in patient.readings.values())
            patient.readings = {
                name: stored
                for name, stored in patient.readings.items()
                if stored[0] >= newest - self._lookback_s
            }
        self._changed.add(patient_reference)
        while len(self._patients) > self._max_patients:
            forgotten, _ = self._patients.popitem(last=False)
            self._changed.discard(forgotten)

    def restore(self, snapshot: ContextSnapshot) -> None:
        """A patient as the changelog holds it (the latest snapshot wins)."""
        self._patients.pop(snapshot.patient_reference, None)
        self.record(
            snapshot.partition,
            snapshot.patient_key,
            snapshot.patient_reference,
            snapshot.readings,
        )
        self._changed.discard(snapshot.patient_reference)

    def drop_partitions(self, partitions: Iterable[int]) -> None:
        """Forget the patients of partitions that another replica now owns."""
        dropped = set(partitions)
        for reference in [r for r, p in self._patients.items() if p.partition in dropped]:
            del self._patients[reference]
            self._changed.discard(reference)

    def take_changed(self) -> list[ContextSnapshot]:
        """Snapshots of the patients changed since the last call (to write to the changelog)."""
        snapshots = []
        for reference in self._changed:
            patient = self._patients[reference]
            readings = tuple(_reading(name, stored) for name, stored in patient.readings.items())
            snapshots.append(
                ContextSnapshot(patient.partition, patient.patient_key, reference, readings)
            )
        self._changed.clear()
        return snapshots

    def mark_changed(self, snapshots: Iterable[ContextSnapshot]) -> None:
        """Snapshots that could not be written: write them with the next ones."""
        self._changed.update(
            s.patient_reference for s in snapshots if s.patient_reference in self._patients
        )


def _reading(name: str, stored: StoredReading) -> VitalSignReading:
    observed_at, value, code, resource_reference = stored
    return VitalSignReading(
        name=name,
        code=code,
        value=value,
        unit=VITAL_SIGN_BY_NAME[name].unit,
        resource_reference=resource_reference,
        observed_at=datetime.fromtimestamp(observed_at, UTC),
    )
