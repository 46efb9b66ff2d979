"""Reading resources one at a time (`ResourceReader`) and building the inputs later from the
readings kept (`inputs_from_readings`) gives the tensors that the resources themselves give
(`build_model_inputs`); a value refused is refused with the same reason, never kept."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date, timedelta
from typing import Any

import numpy as np
from hypothesis import given, settings

from cdsflow.models import (
    RefusalReason,
    ResourceReader,
    build_model_inputs,
    inputs_from_readings,
)
from cdsflow.models.feature_extraction import Reading
from cdsflow.models.fhir_elements import charted_resource, parse_fhir_date, resource_reference

from .adapter_fixtures import (
    AS_OF,
    deterioration_adapter,
    medication_adapter,
    medication_request,
    observation,
    patient,
)
from .test_agreement_properties import RECORDS
from .test_deterioration_agreement import fhir_context

DETERIORATION = ResourceReader(deterioration_adapter())
MEDICATION = ResourceReader(medication_adapter())


def kept(reader: ResourceReader, resources: list[Mapping[str, Any]]) -> dict[str, list[Reading]]:
    readings: dict[str, list[Reading]] = {}
    for resource in resources:
        for name, values in reader.readings(resource).readings.items():
            readings.setdefault(name, []).extend(values)
    return readings


def birth_date_of(resources: list[Mapping[str, Any]]) -> date | None:
    births = [r.get("birthDate") for r in resources if r.get("resourceType") == "Patient"]
    return parse_fhir_date(births[0]) if births and isinstance(births[0], str) else None


def assert_same_tensors(reader: ResourceReader, resources: list[Mapping[str, Any]]) -> None:
    expected = build_model_inputs(reader.adapter, resources, AS_OF)
    built = inputs_from_readings(
        reader.adapter,
        kept(reader, resources),
        AS_OF,
        birth_date=birth_date_of(resources),
        patient_reference="Patient/p",
    )
    assert built.tensors.keys() == expected.tensors.keys()
    for name, tensor in expected.tensors.items():
        np.testing.assert_array_equal(built.tensors[name], tensor)


@settings(max_examples=100, deadline=None)
@given(RECORDS)
def test_any_charted_history_gives_the_same_tensors_from_kept_readings(
    record: dict[str, Any],
) -> None:
    assert_same_tensors(DETERIORATION, list(fhir_context(record, AS_OF)))


def test_the_medication_adapter_gives_the_same_tensors_from_kept_readings() -> None:
    cases: list[list[Mapping[str, Any]]] = [
        [],
        [observation("e-1", "98979-8", 25, "mL/min/{1.73_m2}", hours_before=24 * 10)],
        [
            observation("e-1", "98979-8", 25, "mL/min/{1.73_m2}", hours_before=24 * 100),
            medication_request("m-1"),
        ],
        [
            observation("e-1", "98979-8", 38, "mL/min/{1.73_m2}"),
            medication_request("m-1", status="draft"),
            medication_request("m-2", status="stopped"),
        ],
    ]
    for resources in cases:
        assert_same_tensors(MEDICATION, resources)


def test_a_resource_is_read_for_its_feeds_whatever_its_status() -> None:
    retracted = observation("o-1", "8867-4", 80, "/min", status="entered-in-error")
    assert DETERIORATION.reads(retracted)
    assert not DETERIORATION.usable_status(retracted)
    assert DETERIORATION.readings(retracted).readings == {}
    assert not DETERIORATION.reads(observation("w", "29463-7", 70, "kg"))
    assert not DETERIORATION.reads(medication_request("m-1"))
    assert MEDICATION.reads(medication_request("m-1", status="stopped"))
    assert not MEDICATION.usable_status(medication_request("m-1", status="stopped"))
    assert DETERIORATION.reads(patient())
    assert not MEDICATION.reads(patient())


def test_an_impossible_value_is_refused_with_its_reason_never_kept() -> None:
    saturation = DETERIORATION.readings(observation("o-1", "59408-5", 140, "%"))
    assert saturation.readings == {}
    [refused] = saturation.refused
    assert (refused.data, refused.reason, refused.resource_reference) == (
        "oxygen_saturation",
        RefusalReason.ABOVE_RANGE,
        "Observation/o-1",
    )
    pressure = DETERIORATION.readings(observation("o-2", "8310-5", 37, "mm[Hg]"))
    assert [r.reason for r in pressure.refused] == [RefusalReason.UNKNOWN_UNIT]


def test_a_value_without_a_time_takes_the_fallback_or_is_refused() -> None:
    untimed = observation("o-1", "8867-4", 80, "/min")
    del untimed["effectiveDateTime"]
    assert [r.reason for r in DETERIORATION.readings(untimed).refused] == [RefusalReason.NO_TIME]
    fallback = AS_OF - timedelta(minutes=5)
    [reading] = DETERIORATION.readings(untimed, fallback_time=fallback).readings["heart_rate"]
    assert (reading.value, reading.observed_at) == (80.0, fallback)


def test_a_patient_gives_its_birth_date_and_an_age_column() -> None:
    read = DETERIORATION.readings(patient("1950-06-15"))
    assert read.birth_date == date(1950, 6, 15)
    built = inputs_from_readings(
        DETERIORATION.adapter, {}, AS_OF, birth_date=read.birth_date, patient_reference="Patient/p"
    )
    assert built.tensors["features"][0, 14] == 76.0
    assert built.tensors["present"][0].tolist() == [False] * 14 + [True]


def test_a_charted_resource_reads_as_the_resource_itself() -> None:
    untimed = observation("o-3", "8867-4", 80, "/min")
    del untimed["effectiveDateTime"]
    fallback = AS_OF - timedelta(minutes=5)
    resources: list[Mapping[str, Any]] = [
        observation("o-1", "8867-4", 80, "/min"),
        observation("o-2", "59408-5", 140, "%"),
        observation("o-4", "8867-4", 80, "/min", status="entered-in-error"),
        observation("w", "29463-7", 70, "kg"),
        untimed,
        medication_request("m-1"),
        medication_request("m-2", status="stopped"),
        patient("1950-06-15"),
        {"resourceType": "Encounter", "id": "e-1"},
    ]
    for resource in resources:
        charted = charted_resource(resource)
        assert charted.reference == resource_reference(resource)
        for reader in (DETERIORATION, MEDICATION):
            assert reader.reads(charted) == reader.reads(resource)
            assert reader.usable_status(charted) == reader.usable_status(resource)
            assert reader.readings(charted, fallback) == reader.readings(resource, fallback)
