"""A patient's FHIR resources, as of a time, become one value per declared column.

For each data feed: the matching resources (code, status), their values in the model's unit
(converted from an accepted unit), within the window before the "as of" time; a value that
cannot be used (no time, a unit the feed does not accept, outside its plausible range) is
refused with a reason and left out, never fed. Each column then aggregates its feed's values
(latest, earliest, min, max, mean, trend, count, exists) or is not observed: a column that is
not observed has no value at all, never a normal one.

The resources are one patient's: choosing them (the patient's own, the local EHR's) is the
caller's job.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from functools import lru_cache
from typing import Any

from cdsflow.models.adapter_schema import ModelAdapter
from cdsflow.models.data_schema import (
    Aggregation,
    MedicationRequestData,
    ObservationData,
    PatientAgeData,
    TensorColumn,
)
from cdsflow.models.fhir_elements import (
    CodedValue,
    age_in_years,
    authored_on,
    coded_values,
    medication_codes,
    observed_at,
    parse_fhir_date,
    resource_reference,
)
from cdsflow.models.plausible_ranges import RefusalReason
from cdsflow.models.units import canonical_unit, convert


@dataclass(frozen=True)
class Reading:
    """One usable value of a data feed, in the model's unit, and where it came from."""

    data: str
    value: float
    unit: str
    code: str
    resource_reference: str
    observed_at: datetime | None


@dataclass(frozen=True)
class RefusedValue:
    """A value left out: which feed, why and which resource; never the value itself."""

    data: str
    reason: RefusalReason
    resource_reference: str


@dataclass(frozen=True)
class ColumnValue:
    """A column's value (None: not observed) and the readings it was computed from."""

    column: TensorColumn
    label: str
    unit: str
    display_unit: str
    value: float | None
    readings: tuple[Reading, ...]

    @property
    def present(self) -> bool:
        return self.value is not None


@dataclass(frozen=True)
class ExtractedInputs:
    as_of: datetime
    columns: tuple[ColumnValue, ...]
    refused: tuple[RefusedValue, ...]

    def column(self, name: str) -> ColumnValue:
        return next(value for value in self.columns if value.column.name == name)

    def missing(self) -> list[ColumnValue]:
        return [value for value in self.columns if not value.present]

    def missing_required(self) -> list[str]:
        return [v.column.name for v in self.columns if v.column.required and not v.present]


def extract_inputs(
    adapter: ModelAdapter, resources: Iterable[Mapping[str, Any]], as_of: datetime
) -> ExtractedInputs:
    """Every declared column's value for this patient as of `as_of` (an aware datetime)."""
    if as_of.tzinfo is None:
        raise ValueError("as_of must be an aware datetime")
    context = list(resources)
    charted = [
        _ChartedObservation(resource, observed_at(resource), coded_values(resource))
        for resource in context
        if resource.get("resourceType") == "Observation"
    ]
    readings: dict[str, list[Reading]] = {}
    refused: list[RefusedValue] = []
    for name, feed in adapter.data.items():
        if isinstance(feed, ObservationData):
            usable, left_out = _observation_readings(name, feed, charted, as_of)
        elif isinstance(feed, MedicationRequestData):
            usable, left_out = _medication_readings(name, feed, context, as_of), []
        else:
            usable, left_out = _age_readings(name, feed, context, as_of)
        readings[name] = _time_ordered(usable)
        refused += left_out
    return ExtractedInputs(
        as_of=as_of, columns=_column_values(adapter, readings), refused=tuple(refused)
    )


def extract_from_readings(
    adapter: ModelAdapter,
    readings: Mapping[str, Sequence[Reading]],
    as_of: datetime,
    *,
    birth_date: date | None = None,
    patient_reference: str = "Patient/",
) -> ExtractedInputs:
    """Every declared column's value as of `as_of`, from readings kept per data feed (read
    one resource at a time by `ResourceReader`, so already plausible) and the patient's birth
    date; each feed's window is applied here, as `extract_inputs` applies it."""
    if as_of.tzinfo is None:
        raise ValueError("as_of must be an aware datetime")
    usable: dict[str, list[Reading]] = {}
    refused: list[RefusedValue] = []
    for name, feed in adapter.data.items():
        if isinstance(feed, PatientAgeData):
            if birth_date is None:
                usable[name] = []
                continue
            age = float(age_in_years(birth_date, as_of))
            reason = feed.plausible_range.refusal(age)
            if reason is not None:
                usable[name] = []
                refused.append(RefusedValue(name, reason, patient_reference))
            else:
                usable[name] = [Reading(name, age, feed.unit, "birthDate", patient_reference, None)]
            continue
        # an order without a time counts whenever it was authored, as in `extract_inputs`
        usable[name] = _time_ordered(
            [
                reading
                for reading in readings.get(name, ())
                if reading.observed_at is None
                or _in_window(reading.observed_at, as_of, feed.window)
            ]
        )
    return ExtractedInputs(
        as_of=as_of, columns=_column_values(adapter, usable), refused=tuple(refused)
    )


@dataclass(frozen=True)
class _ChartedObservation:
    """An Observation of the context, read once for every feed."""

    resource: Mapping[str, Any]
    observed_at: datetime | None
    elements: list[CodedValue]


def _in_window(when: datetime, as_of: datetime, window: timedelta | None) -> bool:
    return when <= as_of and (window is None or when >= as_of - window)


def _observation_readings(
    name: str, feed: ObservationData, charted: list[_ChartedObservation], as_of: datetime
) -> tuple[list[Reading], list[RefusedValue]]:
    codes = frozenset(feed.codes)
    accepted = {canonical_unit(unit) for unit in (feed.unit, *feed.accept_units)}
    readings: list[Reading] = []
    refused: list[RefusedValue] = []
    for observation in charted:
        matching = [
            (sorted(element.codes & codes)[0], element.quantity)
            for element in observation.elements
            if element.quantity is not None and not element.codes.isdisjoint(codes)
        ]
        if not matching or observation.resource.get("status") not in feed.statuses:
            continue
        reference = resource_reference(observation.resource)
        when = observation.observed_at
        for code, (value_as_sent, unit) in ((c, q) for c, q in matching if q is not None):
            if when is None:
                refused.append(RefusedValue(name, RefusalReason.NO_TIME, reference))
                continue
            if not _in_window(when, as_of, feed.window):
                continue
            value = (
                convert(value_as_sent, unit, feed.unit)
                if canonical_unit(unit) in accepted
                else None
            )
            if value is None:
                refused.append(RefusedValue(name, RefusalReason.UNKNOWN_UNIT, reference))
                continue
            reason = feed.plausible_range.refusal(value)
            if reason is not None:
                refused.append(RefusedValue(name, reason, reference))
                continue
            readings.append(Reading(name, value, feed.unit, code, reference, when))
    return readings, refused


def _medication_readings(
    name: str, feed: MedicationRequestData, context: Sequence[Mapping[str, Any]], as_of: datetime
) -> list[Reading]:
    codes = set(feed.codes)
    readings = []
    for resource in context:
        if resource.get("resourceType") != "MedicationRequest":
            continue
        if resource.get("status") not in feed.statuses:
            continue
        matching = sorted(medication_codes(resource) & codes)
        if not matching:
            continue
        when = authored_on(resource)
        if when is not None and not _in_window(when, as_of, feed.window):
            continue
        readings.append(Reading(name, 1.0, "1", matching[0], resource_reference(resource), when))
    return readings


def _age_readings(
    name: str, feed: PatientAgeData, context: Sequence[Mapping[str, Any]], as_of: datetime
) -> tuple[list[Reading], list[RefusedValue]]:
    patient = next((r for r in context if r.get("resourceType") == "Patient"), None)
    birth = patient.get("birthDate") if patient is not None else None
    born = parse_fhir_date(birth) if isinstance(birth, str) else None
    if patient is None or born is None:
        return [], []
    reference = resource_reference(patient)
    age = float(age_in_years(born, as_of))
    reason = feed.plausible_range.refusal(age)
    if reason is not None:
        return [], [RefusedValue(name, reason, reference)]
    return [Reading(name, age, feed.unit, "birthDate", reference, None)], []


@dataclass(frozen=True)
class _ColumnPlan:
    """What a column is, whatever the patient: its feed, unit, how the unit is shown, label."""

    column: TensorColumn
    data: str
    unit: str
    display_unit: str
    label: str


# per adapter (by identity; the adapter is kept so that its id is not reused): its columns'
# plans, worked out once rather than for every patient
_PLANS: dict[int, tuple[ModelAdapter, tuple[_ColumnPlan, ...]]] = {}
_MAX_PLANS = 256


def _column_plans(adapter: ModelAdapter) -> tuple[_ColumnPlan, ...]:
    cached = _PLANS.get(id(adapter))
    if cached is not None and cached[0] is adapter:
        return cached[1]
    plans = []
    for column in adapter.columns():
        feed = adapter.data[column.data]
        if isinstance(feed, MedicationRequestData):
            unit, display, label = _column_text(column, feed.label, "1", None, True)
        else:
            unit, display, label = _column_text(
                column, feed.label, feed.unit, feed.display_unit, False
            )
        plans.append(_ColumnPlan(column, column.data, unit, display, label))
    if len(_PLANS) >= _MAX_PLANS:
        _PLANS.clear()
    _PLANS[id(adapter)] = (adapter, tuple(plans))
    return tuple(plans)


def _column_values(
    adapter: ModelAdapter, ordered_by_feed: Mapping[str, list[Reading]]
) -> tuple[ColumnValue, ...]:
    """Every column's value, from its feed's readings (oldest first)."""
    values = []
    for plan in _column_plans(adapter):
        value, basis = _aggregate(plan.column, ordered_by_feed[plan.data])
        values.append(
            ColumnValue(plan.column, plan.label, plan.unit, plan.display_unit, value, basis)
        )
    return tuple(values)


def _time_ordered(readings: list[Reading]) -> list[Reading]:
    """Oldest first; a stable sort keeps the context's order between equal times."""
    return sorted(readings, key=_time_order) if len(readings) > 1 else readings


@lru_cache(maxsize=1024)
def _column_text(
    column: TensorColumn, label: str, feed_unit: str, display_unit: str | None, is_order: bool
) -> tuple[str, str, str]:
    """A column's unit, how its unit is shown and its label: the same for every patient."""
    counted = column.aggregation in (Aggregation.COUNT, Aggregation.EXISTS)
    unit = "1" if counted or is_order else feed_unit
    display = ""
    # a dimensionless unit ("{score}", "1") is shown as no unit at all
    if canonical_unit(unit) != "1" and not is_order:
        display = display_unit or unit
    if column.aggregation is Aggregation.TREND:
        label = f"{label} trend"
    elif column.aggregation not in (Aggregation.LATEST, Aggregation.EXISTS):
        label = f"{label} ({column.aggregation.value})"
    return unit, display, label


def _time_order(reading: Reading) -> float:
    return reading.observed_at.timestamp() if reading.observed_at is not None else float("-inf")


def _aggregate(
    column: TensorColumn, ordered: list[Reading]
) -> tuple[float | None, tuple[Reading, ...]]:
    """The column's value (None when not observed) and the readings that make it."""
    aggregation = column.aggregation
    if aggregation is Aggregation.EXISTS:
        return (1.0 if ordered else 0.0), tuple(ordered)
    if aggregation is Aggregation.COUNT:
        return float(len(ordered)), tuple(ordered)
    if len(ordered) < column.values_needed:
        return None, ()
    values = [reading.value for reading in ordered]
    if aggregation is Aggregation.LATEST:
        return values[-1], (ordered[-1],)
    if aggregation is Aggregation.EARLIEST:
        return values[0], (ordered[0],)
    if aggregation is Aggregation.TREND:
        return values[-1] - values[0], (ordered[0], ordered[-1])
    if aggregation is Aggregation.MEAN:
        return sum(values) / len(values), tuple(ordered)
    pick = min if aggregation is Aggregation.MIN else max
    chosen = pick(range(len(values)), key=lambda index: (values[index], index))
    return values[chosen], (ordered[chosen],)
