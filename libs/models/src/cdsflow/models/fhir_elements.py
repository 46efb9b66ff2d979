"""Reading the elements an adapter needs out of FHIR R4 resources (plain JSON dicts).

Nothing here judges a value: whether it is plausible is the adapter's range's to say.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any


@dataclass(frozen=True)
class CodedValue:
    """An element of an Observation (itself or a component): its codes and its value."""

    codes: frozenset[str]  # system|code
    # (value, UCUM code as sent, "" when none); None when the element has no value
    quantity: tuple[float, str] | None


@dataclass(frozen=True)
class ChartedResource:
    """A resource with what the adapters read of it parsed once (its coded elements, when it
    was observed, its reference), however many adapters and feeds then read it."""

    resource: Mapping[str, Any]
    resource_type: str | None
    reference: str
    status: object
    # an Observation's elements (itself, then its components); () for other resources
    elements: tuple[CodedValue, ...]
    # a MedicationRequest's `system|code`s; empty for other resources
    medications: frozenset[str]
    # an Observation's `observed_at`; a MedicationRequest's `authoredOn`; else None
    observed_at: datetime | None


def charted_resource(resource: Mapping[str, Any]) -> ChartedResource:
    """Read the resource's elements once, for every adapter and feed that reads it."""
    resource_type = resource.get("resourceType")
    elements: tuple[CodedValue, ...] = ()
    medications: frozenset[str] = frozenset()
    when = None
    if resource_type == "Observation":
        elements = tuple(coded_values(resource))
        when = observed_at(resource)
    elif resource_type == "MedicationRequest":
        medications = frozenset(medication_codes(resource))
        when = authored_on(resource)
    return ChartedResource(
        resource,
        resource_type if isinstance(resource_type, str) else None,
        resource_reference(resource),
        resource.get("status"),
        elements,
        medications,
        when,
    )


def resource_reference(resource: Mapping[str, Any]) -> str:
    """`Type/id`, or `Type/` when the resource has no id (a draft order may have none)."""
    resource_id = resource.get("id")
    return f"{resource.get('resourceType')}/{resource_id if isinstance(resource_id, str) else ''}"


def parse_fhir_datetime(value: str) -> datetime | None:
    """A FHIR date/dateTime/instant as an aware datetime (UTC when no zone is given)."""
    text = value.strip()
    if len(text) == 4:
        text += "-01-01"
    elif len(text) == 7:
        text += "-01"
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def parse_fhir_date(value: str) -> date | None:
    """A FHIR date (YYYY, YYYY-MM or YYYY-MM-DD); a partial date takes its first day."""
    parsed = parse_fhir_datetime(value)
    return parsed.date() if parsed is not None else None


def observed_at(observation: Mapping[str, Any]) -> datetime | None:
    """When the value was observed: effective[x] (a period's start), else `issued`."""
    period = observation.get("effectivePeriod")
    candidates = (
        observation.get("effectiveDateTime"),
        observation.get("effectiveInstant"),
        period.get("start") if isinstance(period, Mapping) else None,
        observation.get("issued"),
    )
    for candidate in candidates:
        if isinstance(candidate, str) and (parsed := parse_fhir_datetime(candidate)):
            return parsed
    return None


def authored_on(request: Mapping[str, Any]) -> datetime | None:
    value = request.get("authoredOn")
    return parse_fhir_datetime(value) if isinstance(value, str) else None


def concept_codes(concept: object) -> set[str]:
    """`system|code` of every coding of a CodeableConcept."""
    codings = concept.get("coding") if isinstance(concept, Mapping) else None
    if not isinstance(codings, list):
        return set()
    return {
        f"{coding['system']}|{coding['code']}"
        for coding in codings
        if isinstance(coding, Mapping)
        and isinstance(coding.get("system"), str)
        and isinstance(coding.get("code"), str)
    }


def coded_values(observation: Mapping[str, Any]) -> list[CodedValue]:
    """The Observation's coded elements (itself, then its components), each with its value.

    An element without a value (a `dataAbsentReason`) has `quantity` None.
    """
    elements: list[Mapping[str, Any]] = [observation]
    components = observation.get("component")
    if isinstance(components, list):
        elements += [c for c in components if isinstance(c, Mapping)]
    return [
        CodedValue(frozenset(concept_codes(element.get("code"))), _quantity(element))
        for element in elements
    ]


def _quantity(element: Mapping[str, Any]) -> tuple[float, str] | None:
    quantity = element.get("valueQuantity")
    if isinstance(quantity, Mapping):
        value = quantity.get("value")
        if isinstance(value, int | float) and not isinstance(value, bool):
            unit = quantity.get("code") or quantity.get("unit") or ""
            return _as_float(value), str(unit)
        return None
    integer = element.get("valueInteger")
    if isinstance(integer, int) and not isinstance(integer, bool):
        return _as_float(integer), ""
    return None


def _as_float(value: float) -> float:
    """An integer too large for a float becomes an infinity (then refused), not an error."""
    try:
        return float(value)
    except OverflowError:
        return math.inf if value > 0 else -math.inf


def medication_codes(request: Mapping[str, Any]) -> set[str]:
    return concept_codes(request.get("medicationCodeableConcept"))


def age_in_years(birth_date: date, as_of: datetime) -> int:
    """Completed years of life on the day of `as_of` (in its own time zone)."""
    day = as_of.date()
    had_birthday = (day.month, day.day) >= (birth_date.month, birth_date.day)
    return day.year - birth_date.year - (0 if had_birthday else 1)
