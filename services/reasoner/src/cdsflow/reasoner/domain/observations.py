"""Reading vital signs out of FHIR R4 Observations (plain JSON dicts, already validated)."""

from __future__ import annotations

import math
import re
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from typing import Any

from cdsflow.fhir import is_fhir_id
from cdsflow.reasoner.domain.errors import UnprocessableEvent
from cdsflow.reasoner.domain.vital_signs import (
    LOINC,
    VITAL_SIGN_BY_CODE,
    VitalSign,
    VitalSignReading,
)

# Statuses whose values may be used; `entered-in-error`, `cancelled` and friends may not.
USABLE_STATUSES = frozenset({"final", "amended", "corrected", "preliminary"})
# A FHIR resource type name (`Patient`, `Group`, `Device`, ...).
_RESOURCE_TYPE = re.compile(r"[A-Z][A-Za-z]{1,63}")


def observation_reference(observation: Mapping[str, Any]) -> str:
    """`Observation/<id>`."""
    resource_id = observation.get("id")
    if not isinstance(resource_id, str) or not resource_id:
        raise UnprocessableEvent("the Observation has no id")
    return f"Observation/{resource_id}"


def subject_reference(observation: Mapping[str, Any]) -> str | None:
    """The `subject.reference` as written, or None when there is none.

    Which patient it names is decided by `cdsflow.fhir.local_patient_reference` only.
    """
    subject = observation.get("subject")
    reference = subject.get("reference") if isinstance(subject, Mapping) else None
    return reference if isinstance(reference, str) else None


def names_another_resource_type(reference: str) -> bool:
    """True for a relative reference to a resource that is no Patient (`Group/ward-3`,
    `Device/d-1`): an Observation about it is about no patient at all."""
    resource_type, _, resource_id = reference.partition("/")
    return (
        resource_type != "Patient"
        and bool(_RESOURCE_TYPE.fullmatch(resource_type))
        and is_fhir_id(resource_id)
    )


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


def parse_fhir_datetime(value: str) -> datetime | None:
    """A FHIR date/dateTime/instant as an aware datetime (UTC when no zone is given)."""
    text = value.strip()
    if len(text) == 4:  # year
        text += "-01-01"
    elif len(text) == 7:  # year-month
        text += "-01"
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def carries_vital_sign(observation: Mapping[str, Any]) -> bool:
    """True when the Observation or one of its components is coded as a model input."""
    return any(True for _ in _coded_values(observation))


def is_usable(observation: Mapping[str, Any]) -> bool:
    return observation.get("status") in USABLE_STATUSES


def vital_sign_readings(
    observation: Mapping[str, Any], fallback_observed_at: datetime | None = None
) -> list[VitalSignReading]:
    """Every model input the Observation carries, in the model's units.

    Raises `UnprocessableEvent` when a vital sign is recorded in a unit that cannot be
    converted. Values that are absent (`dataAbsentReason`) are simply not read. Values are
    not judged here: whether each is plausible is `VitalSign.implausibility`'s to say.
    """
    reference = observation_reference(observation)
    when = observed_at(observation) or fallback_observed_at
    if when is None:
        raise UnprocessableEvent("the Observation has no effective time")
    readings = []
    for vital_sign, code, element in _coded_values(observation):
        quantity = _quantity(element)
        if quantity is None:
            continue
        value, ucum_code = quantity
        converted = vital_sign.to_model_unit(value, ucum_code)
        if converted is None:
            raise UnprocessableEvent(f"{vital_sign.name} recorded in an unsupported unit")
        readings.append(
            VitalSignReading(
                name=vital_sign.name,
                code=code,
                value=converted,
                unit=vital_sign.unit,
                resource_reference=reference,
                observed_at=when,
            )
        )
    return readings


def _coded_values(
    observation: Mapping[str, Any],
) -> Iterator[tuple[VitalSign, str, Mapping[str, Any]]]:
    """(vital sign, LOINC code, element holding the value) for the Observation and components."""
    elements: list[Mapping[str, Any]] = [observation]
    components = observation.get("component")
    if isinstance(components, list):
        elements += [c for c in components if isinstance(c, Mapping)]
    for element in elements:
        for code in _loinc_codes(element):
            vital_sign = VITAL_SIGN_BY_CODE.get(code)
            if vital_sign is not None:
                yield vital_sign, code, element
                break


def _loinc_codes(element: Mapping[str, Any]) -> list[str]:
    concept = element.get("code")
    codings = concept.get("coding") if isinstance(concept, Mapping) else None
    if not isinstance(codings, list):
        return []
    return [
        coding["code"]
        for coding in codings
        if isinstance(coding, Mapping)
        and coding.get("system") == LOINC
        and isinstance(coding.get("code"), str)
    ]


def _quantity(element: Mapping[str, Any]) -> tuple[float, str] | None:
    """(value, UCUM code) from valueQuantity or valueInteger; None when there is no value."""
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
    """`value` as a float; an integer too large for one becomes an infinity (then refused as
    implausible) instead of an OverflowError."""
    try:
        return float(value)
    except OverflowError:
        return math.inf if value > 0 else -math.inf
