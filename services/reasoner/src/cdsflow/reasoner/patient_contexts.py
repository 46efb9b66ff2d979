"""Each patient's recent data, kept from the clinical events themselves, compactly.

The EHR cannot take a search per event, so the reasoner keeps, per patient, what its model
adapters read: per data feed (`<adapter id>/<feed name>`), the plausible values read from
the events (and from the EHR's answer once, when the patient was first seen), each as one
small tuple — never the FHIR resource — and the patient's birth date. It is state of the
partition the patient's events arrive on: restored from the changelog when the partition is
assigned (`context_changelog`), dropped when it goes to another replica.

Bounded: at most `max_patients` patients (the least recently seen is forgotten first; its
next event asks the EHR again); per feed, only values within the feed's window before the
patient's newest value, and at most `max_readings_per_feed` of them (beyond, the second
oldest is let go, so that the oldest — which a trend reads — and the newest stay). A value
takes about 150 bytes.
"""

from __future__ import annotations

import sys
from collections import OrderedDict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime

from cdsflow.models import ResourceReader
from cdsflow.models.data_schema import ObservationData, PatientAgeData
from cdsflow.models.feature_extraction import Reading

# (observed at, POSIX seconds, None for an order without a time; value in the feed's unit;
# the code it was recorded under; "Observation/<id>")
StoredReading = tuple[float | None, float, str, str]


def feed_key(adapter_id: str, feed: str) -> str:
    return sys.intern(f"{adapter_id}/{feed}")


def feed_windows(readers: Iterable[ResourceReader]) -> dict[str, float | None]:
    """Every feed that keeps values, with its window in seconds (None: no window)."""
    windows: dict[str, float | None] = {}
    for reader in readers:
        for name, feed in reader.adapter.data.items():
            if isinstance(feed, PatientAgeData):
                continue
            window = feed.window.total_seconds() if feed.window is not None else None
            windows[feed_key(reader.adapter.id, name)] = window
    return windows


@dataclass(slots=True)
class HeldPatient:
    partition: int
    patient_key: str
    birth_date: date | None = None
    feeds: dict[str, list[StoredReading]] = field(default_factory=dict)

    def readings_for(self, reader: ResourceReader) -> dict[str, list[Reading]]:
        """The kept values of one adapter's feeds, as the adapter engine reads them."""
        adapter = reader.adapter
        readings: dict[str, list[Reading]] = {}
        for name, feed in adapter.data.items():
            stored = self.feeds.get(feed_key(adapter.id, name))
            if not stored:
                continue
            unit = feed.unit if isinstance(feed, ObservationData) else "1"
            readings[name] = [
                Reading(
                    name,
                    value,
                    unit,
                    code,
                    reference,
                    datetime.fromtimestamp(at, UTC) if at is not None else None,
                )
                for at, value, code, reference in stored
            ]
        return readings


@dataclass(frozen=True)
class ContextSnapshot:
    """One patient's kept data, as written to and read from the changelog."""

    partition: int
    patient_key: str
    patient_reference: str
    birth_date: date | None
    feeds: Mapping[str, tuple[StoredReading, ...]]


class PatientContexts:
    def __init__(
        self,
        max_patients: int,
        windows: Mapping[str, float | None],
        max_readings_per_feed: int = 8,
    ) -> None:
        if max_patients < 1 or max_readings_per_feed < 2:
            raise ValueError("max_patients must be at least 1, max_readings_per_feed 2")
        self._max_patients = max_patients
        self._windows = dict(windows)
        self._max_readings = max_readings_per_feed
        self._patients: OrderedDict[str, HeldPatient] = OrderedDict()
        self._changed: set[str] = set()

    def __len__(self) -> int:
        return len(self._patients)

    def held(self, partition: int, patient_reference: str) -> HeldPatient | None:
        """The patient's kept data; None when the patient is not held for `partition` (first
        seen, forgotten, or its events came on another partition)."""
        patient = self._patients.get(patient_reference)
        if patient is None or patient.partition != partition:
            return None
        self._patients.move_to_end(patient_reference)
        return patient

    def hold(self, partition: int, patient_key: str, patient_reference: str) -> HeldPatient:
        """The patient, held from now on (with no data when it was not held)."""
        patient = self._patients.get(patient_reference)
        if patient is None or patient.partition != partition:
            patient = self._patients[patient_reference] = HeldPatient(partition, patient_key)
        self._patients.move_to_end(patient_reference)
        self._changed.add(patient_reference)
        while len(self._patients) > self._max_patients:
            forgotten, _ = self._patients.popitem(last=False)
            self._changed.discard(forgotten)
        return patient

    def record_resource(
        self,
        partition: int,
        patient_key: str,
        patient_reference: str,
        resource_reference: str,
        readings: Iterable[tuple[str, Reading]],
    ) -> HeldPatient:
        """The values of one resource, every adapter's at once (by feed key), replace what
        the patient held from that resource before: an amended Observation or a stopped
        order changes the context, one entered in error (no readings) leaves it. The patient
        is held from now on."""
        patient = self.hold(partition, patient_key, patient_reference)
        for stored in patient.feeds.values():
            if any(r[3] == resource_reference for r in stored):
                stored[:] = [r for r in stored if r[3] != resource_reference]
        for key, reading in readings:
            if key not in self._windows:
                continue
            at = reading.observed_at.timestamp() if reading.observed_at is not None else None
            code = sys.intern(reading.code)
            patient.feeds.setdefault(key, []).append((at, reading.value, code, resource_reference))
        self._prune(patient)
        return patient

    def _prune(self, patient: HeldPatient) -> None:
        times = [r[0] for stored in patient.feeds.values() for r in stored if r[0] is not None]
        newest = max(times, default=None)
        for key in list(patient.feeds):
            stored = sorted(patient.feeds[key], key=_time_order)
            window = self._windows.get(key)
            if window is not None and newest is not None:
                stored = [r for r in stored if r[0] is None or r[0] >= newest - window]
            while len(stored) > self._max_readings:
                del stored[1]
            if stored:
                patient.feeds[key] = stored
            else:
                del patient.feeds[key]

    def forget_resource(self, partition: int, patient_reference: str, reference: str) -> bool:
        """A resource that may no longer be read (entered in error, a stopped order) leaves
        the context of a patient held here; True when the context held something of it."""
        patient = self.held(partition, patient_reference)
        if patient is None or not any(
            r[3] == reference for stored in patient.feeds.values() for r in stored
        ):
            return False
        self.record_resource(partition, patient.patient_key, patient_reference, reference, ())
        return True

    def restore(self, snapshot: ContextSnapshot) -> None:
        """A patient as the changelog holds it (the latest snapshot wins)."""
        self._patients.pop(snapshot.patient_reference, None)
        patient = self.hold(snapshot.partition, snapshot.patient_key, snapshot.patient_reference)
        patient.birth_date = snapshot.birth_date
        # codes and feed keys are a few strings shared by every patient: one copy of each
        patient.feeds = {
            sys.intern(key): [(at, value, sys.intern(code), ref) for at, value, code, ref in stored]
            for key, stored in snapshot.feeds.items()
            if key in self._windows and stored
        }
        self._prune(patient)
        self._changed.discard(snapshot.patient_reference)

    def drop_partitions(self, partitions: Iterable[int]) -> None:
        """Forget the patients of partitions that another replica now owns."""
        dropped = set(partitions)
        for reference in [r for r, p in self._patients.items() if p.partition in dropped]:
            del self._patients[reference]
            self._changed.discard(reference)

    def take_changed(self) -> list[ContextSnapshot]:
        """Snapshots of the patients changed since the last call (to write to the changelog)."""
        snapshots = [
            ContextSnapshot(
                patient.partition,
                patient.patient_key,
                reference,
                patient.birth_date,
                {key: tuple(stored) for key, stored in patient.feeds.items()},
            )
            for reference in self._changed
            if (patient := self._patients.get(reference)) is not None
        ]
        self._changed.clear()
        return snapshots

    def mark_changed(self, snapshots: Iterable[ContextSnapshot]) -> None:
        """Snapshots that could not be written: write them with the next ones."""
        self._changed.update(
            s.patient_reference for s in snapshots if s.patient_reference in self._patients
        )


def _time_order(reading: StoredReading) -> float:
    return reading[0] if reading[0] is not None else float("-inf")


def resource_updates(
    reader: ResourceReader, readings: Mapping[str, Sequence[Reading]]
) -> list[tuple[str, Reading]]:
    """One adapter's readings of a resource, by feed key, for `record_resource`."""
    return [
        (feed_key(reader.adapter.id, name), reading)
        for name, feed_readings in readings.items()
        for reading in feed_readings
    ]
