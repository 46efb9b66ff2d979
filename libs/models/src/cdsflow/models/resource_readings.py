"""What one FHIR resource gives each data feed of an adapter, read once, without an "as of".

A service that keeps a patient's context from a stream of resources (the reasoner) reads each
resource as it arrives and keeps only the compact readings, not the resource; later it builds
the model's inputs from the readings it kept (`inputs_from_readings`), as of any time. The
window of a feed is applied then, not here; every other rule of `extract_inputs` is the same:
the codes, the statuses, the unit conversion, the plausible range (a value refused here is
never kept, so never fed), and the time of a value.

Each method takes the resource itself or its `ChartedResource` (`charted_resource`): a
service that asks several adapters about the same resource charts it once and passes that,
so its codes, values and times are parsed once per resource, not once per adapter and call.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from cdsflow.models.adapter_schema import ModelAdapter
from cdsflow.models.data_schema import MedicationRequestData, ObservationData
from cdsflow.models.feature_extraction import Reading, RefusedValue
from cdsflow.models.fhir_elements import ChartedResource, charted_resource, parse_fhir_date
from cdsflow.models.plausible_ranges import RefusalReason
from cdsflow.models.units import canonical_unit, convert

READ_RESOURCE_TYPES = frozenset({"Observation", "MedicationRequest", "Patient"})


@dataclass(frozen=True)
class ResourceReadings:
    """The usable values a resource gives, by data feed name, and the values refused."""

    resource_reference: str
    readings: Mapping[str, tuple[Reading, ...]] = field(default_factory=dict)
    refused: tuple[RefusedValue, ...] = ()
    # for a Patient resource: its birth date (None: none, or not a date)
    birth_date: date | None = None


@dataclass(frozen=True)
class _ObservationFeed:
    name: str
    feed: ObservationData
    accepted_units: frozenset[str]


class ResourceReader:
    """One adapter's data feeds, indexed by code, to read resources one at a time."""

    def __init__(self, adapter: ModelAdapter) -> None:
        self.adapter = adapter
        self._observation_feeds: dict[str, list[_ObservationFeed]] = {}
        self._medication_feeds: dict[str, list[tuple[str, MedicationRequestData]]] = {}
        self.patient_feeds: tuple[str, ...] = ()
        for name, feed in adapter.data.items():
            if isinstance(feed, ObservationData):
                accepted = frozenset(canonical_unit(u) for u in (feed.unit, *feed.accept_units))
                for code in feed.codes:
                    entry = _ObservationFeed(name, feed, accepted)
                    self._observation_feeds.setdefault(code, []).append(entry)
            elif isinstance(feed, MedicationRequestData):
                for code in feed.codes:
                    self._medication_feeds.setdefault(code, []).append((name, feed))
            else:
                self.patient_feeds += (name,)

    def reads(self, resource: Mapping[str, Any] | ChartedResource) -> bool:
        """True when the resource is of a type and code that one of the feeds reads, whatever
        its status (a stopped order, an Observation entered in error, still change what the
        context holds)."""
        charted = _charted(resource)
        if charted.resource_type == "Observation":
            return any(
                not element.codes.isdisjoint(self._observation_feeds)
                for element in charted.elements
            )
        if charted.resource_type == "MedicationRequest":
            return not charted.medications.isdisjoint(self._medication_feeds)
        return charted.resource_type == "Patient" and bool(self.patient_feeds)

    def usable_status(self, resource: Mapping[str, Any] | ChartedResource) -> bool:
        """True when a feed that reads the resource takes it in its status."""
        charted = _charted(resource)
        status = charted.status
        if charted.resource_type == "Observation":
            return any(
                status in entry.feed.statuses
                for element in charted.elements
                for code in element.codes
                for entry in self._observation_feeds.get(code, ())
            )
        if charted.resource_type == "MedicationRequest":
            return any(
                status in feed.statuses
                for code in charted.medications
                for _, feed in self._medication_feeds.get(code, ())
            )
        return True

    def readings(
        self, resource: Mapping[str, Any] | ChartedResource, fallback_time: datetime | None = None
    ) -> ResourceReadings:
        """The resource's usable values for each feed; a value without a time of its own takes
        `fallback_time` (e.g. when the event happened), else it is refused (`no-time`)."""
        charted = _charted(resource)
        if charted.resource_type == "Observation":
            return self._observation_readings(charted, fallback_time)
        if charted.resource_type == "MedicationRequest":
            return self._medication_readings(charted)
        if charted.resource_type == "Patient":
            birth = charted.resource.get("birthDate")
            born = parse_fhir_date(birth) if isinstance(birth, str) else None
            return ResourceReadings(charted.reference, birth_date=born)
        return ResourceReadings(charted.reference)

    def _observation_readings(
        self, charted: ChartedResource, fallback_time: datetime | None
    ) -> ResourceReadings:
        status = charted.status
        reference = charted.reference
        when = charted.observed_at or fallback_time
        readings: dict[str, list[Reading]] = {}
        refused: list[RefusedValue] = []
        for element in charted.elements:
            if element.quantity is None:
                continue
            value_as_sent, unit = element.quantity
            seen: set[str] = set()
            for code in sorted(element.codes):
                for entry in self._observation_feeds.get(code, ()):
                    if entry.name in seen or status not in entry.feed.statuses:
                        continue
                    seen.add(entry.name)
                    outcome = _value_of(entry, value_as_sent, unit, when)
                    if isinstance(outcome, RefusalReason):
                        refused.append(RefusedValue(entry.name, outcome, reference))
                        continue
                    reading = Reading(entry.name, outcome, entry.feed.unit, code, reference, when)
                    readings.setdefault(entry.name, []).append(reading)
        return ResourceReadings(
            reference, {name: tuple(rs) for name, rs in readings.items()}, tuple(refused)
        )

    def _medication_readings(self, charted: ChartedResource) -> ResourceReadings:
        status = charted.status
        when = charted.observed_at
        readings: dict[str, tuple[Reading, ...]] = {}
        for code in sorted(charted.medications):
            for name, feed in self._medication_feeds.get(code, ()):
                if name not in readings and status in feed.statuses:
                    readings[name] = (Reading(name, 1.0, "1", code, charted.reference, when),)
        return ResourceReadings(charted.reference, readings)


def _charted(resource: Mapping[str, Any] | ChartedResource) -> ChartedResource:
    return resource if isinstance(resource, ChartedResource) else charted_resource(resource)


def _value_of(
    entry: _ObservationFeed, value_as_sent: float, unit: str, when: datetime | None
) -> float | RefusalReason:
    if when is None:
        return RefusalReason.NO_TIME
    if canonical_unit(unit) not in entry.accepted_units:
        return RefusalReason.UNKNOWN_UNIT
    value = convert(value_as_sent, unit, entry.feed.unit)
    if value is None:
        return RefusalReason.UNKNOWN_UNIT
    reason = entry.feed.plausible_range.refusal(value)
    return reason if reason is not None else value
