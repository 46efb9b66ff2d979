"""The patient's context for one clinical event: the latest reading of every vital sign.

The event's own Observation is always part of it. Every other vital sign comes from the
patient's recent readings: those the reasoner kept from earlier clinical events, or, for a
patient first seen, the patient's history on the EHR (`history_readings`). The context is
taken *as of the event* (`context_as_of`): readings observed after the event's Observation,
or longer than the look-back window before it, are left out.

No implausible value reaches the context: one in the event's own Observation refuses the
event (`ImplausibleVitalSign`), one in the history is left out and reported.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from cdsflow.fhir import local_patient_reference
from cdsflow.reasoner.domain.errors import ImplausibleVitalSign, UnprocessableEvent
from cdsflow.reasoner.domain.observations import (
    carries_vital_sign,
    is_usable,
    observation_reference,
    subject_reference,
    vital_sign_readings,
)
from cdsflow.reasoner.domain.plausible_ranges import RefusedReading
from cdsflow.reasoner.domain.vital_signs import (
    LOINC,
    OBSERVATION_CODES,
    VITAL_SIGN_BY_NAME,
    VITAL_SIGNS,
    VitalSignReading,
)


@dataclass(frozen=True)
class PatientContext:
    """What the model sees: at most one reading per vital sign, keyed by name."""

    patient_reference: str
    # "Observation/<id>" of the event that triggered this context
    trigger_reference: str
    as_of: datetime
    readings: Mapping[str, VitalSignReading]
    # history readings left out because no patient can have them
    implausible_history: tuple[RefusedReading, ...] = ()

    def missing(self) -> list[str]:
        """Names of the vital signs with no reading, in model order."""
        return [v.name for v in VITAL_SIGNS if v.name not in self.readings]

    def resource_references(self) -> list[str]:
        """The trigger first, then every other contributing Observation, sorted."""
        others = {r.resource_reference for r in self.readings.values()} - {self.trigger_reference}
        return [self.trigger_reference, *sorted(others)]


def history_search_params(
    patient_reference: str, as_of: datetime, lookback: timedelta
) -> list[tuple[str, str]]:
    """FHIR search parameters for the patient's recent vital-sign Observations, newest first."""
    since = (as_of - lookback).astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return [
        ("patient", patient_reference),
        ("code", ",".join(f"{LOINC}|{code}" for code in OBSERVATION_CODES)),
        ("date", f"ge{since}"),
        ("_sort", "-date"),
        ("_count", "100"),
    ]


def trigger_readings(
    observation: Mapping[str, Any], event_occurred_at: datetime | None
) -> list[VitalSignReading]:
    """The event Observation's readings; it must carry at least one value, and every value
    must be plausible (else `ImplausibleVitalSign`: the event is not scored at all)."""
    readings = vital_sign_readings(observation, fallback_observed_at=event_occurred_at)
    if not readings:
        raise UnprocessableEvent("the vital-sign Observation carries no value")
    plausible, refused = plausible_readings(readings)
    if refused:
        raise ImplausibleVitalSign(refused)
    return plausible


def plausible_readings(
    readings: Iterable[VitalSignReading],
) -> tuple[list[VitalSignReading], list[RefusedReading]]:
    """The readings a patient can have, and the others as (vital sign, reason)."""
    plausible: list[VitalSignReading] = []
    refused: list[RefusedReading] = []
    for reading in readings:
        reason = VITAL_SIGN_BY_NAME[reading.name].implausibility(reading.value)
        if reason is None:
            plausible.append(reading)
        else:
            refused.append(RefusedReading(reading.name, reason))
    return plausible, refused


def assemble_patient_context(
    patient_reference: str,
    observation: Mapping[str, Any],
    trigger: Sequence[VitalSignReading],
    history: Iterable[Mapping[str, Any]],
    lookback: timedelta,
    *,
    ehr_base_url: str,
) -> PatientContext:
    """Latest reading per vital sign from the trigger and the EHR's history, as of the trigger
    (`history_readings`, then `context_as_of`); implausible history readings inside the
    window are listed in `implausible_history`."""
    trigger_reference = observation_reference(observation)
    as_of = max(reading.observed_at for reading in trigger)
    earliest = as_of - lookback
    known, refused = history_readings(
        patient_reference, trigger_reference, history, ehr_base_url=ehr_base_url
    )
    context = context_as_of(patient_reference, trigger_reference, trigger, known, lookback)
    in_window = tuple(r for r, at in refused if earliest <= at <= as_of)
    return replace(context, implausible_history=in_window)


def history_readings(
    patient_reference: str,
    trigger_reference: str,
    history: Iterable[Mapping[str, Any]],
    *,
    ehr_base_url: str,
) -> tuple[list[VitalSignReading], list[tuple[RefusedReading, datetime]]]:
    """The plausible readings of the patient's history, and the refused ones (with when they
    were observed).

    History entries that are not usable, are about another patient than `patient_reference`
    (by `cdsflow.fhir.local_patient_reference`), are the trigger itself (the event's copy
    wins), or cannot be read are skipped: one bad historical Observation must not block the
    patient.
    """
    plausible: list[VitalSignReading] = []
    refused: list[tuple[RefusedReading, datetime]] = []
    for resource in history:
        if resource.get("resourceType") != "Observation" or not is_usable(resource):
            continue
        if not carries_vital_sign(resource):
            continue
        subject = subject_reference(resource)
        if local_patient_reference(subject, ehr_base_url) != patient_reference:
            continue
        try:
            if observation_reference(resource) == trigger_reference:
                continue
            readings = vital_sign_readings(resource)
        except UnprocessableEvent:
            continue
        usable, implausible = plausible_readings(readings)
        plausible += usable
        when = {r.name: r.observed_at for r in readings}
        refused += [(r, when[r.vital_sign]) for r in implausible]
    return plausible, refused


def context_as_of(
    patient_reference: str,
    trigger_reference: str,
    trigger: Sequence[VitalSignReading],
    known: Iterable[VitalSignReading],
    lookback: timedelta,
) -> PatientContext:
    """Latest reading per vital sign from the trigger and the patient's known (plausible)
    readings, observed within `lookback` before the trigger and not after it."""
    as_of = max(reading.observed_at for reading in trigger)
    earliest = as_of - lookback
    candidates: list[tuple[VitalSignReading, bool]] = [(r, True) for r in trigger]
    candidates += [
        (r, False)
        for r in known
        if earliest <= r.observed_at <= as_of and r.resource_reference != trigger_reference
    ]
    latest: dict[str, tuple[VitalSignReading, bool]] = {}
    for reading, from_trigger in candidates:
        current = latest.get(reading.name)
        # newest wins; on a tie the trigger's reading wins
        if current is None or (reading.observed_at, from_trigger) > (
            current[0].observed_at,
            current[1],
        ):
            latest[reading.name] = (reading, from_trigger)
    return PatientContext(
        patient_reference=patient_reference,
        trigger_reference=trigger_reference,
        as_of=as_of,
        readings={name: reading for name, (reading, _) in latest.items()},
    )
