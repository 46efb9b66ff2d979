"""Vital signs read out of FHIR Observations: LOINC codes, units, panels, missing values."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from cdsflow.reasoner.domain.errors import UnprocessableEvent
from cdsflow.reasoner.domain.observations import (
    carries_vital_sign,
    parse_fhir_datetime,
    vital_sign_readings,
)
from cdsflow.reasoner.domain.vital_signs import VitalSignReading

from .reasoner_fhir import NOW, blood_pressure_panel, component, observation


def _values(resource: dict[str, object]) -> dict[str, tuple[str, float, str]]:
    return {r.name: (r.code, round(r.value, 2), r.unit) for r in vital_sign_readings(resource)}


@pytest.mark.parametrize(
    ("code", "value", "unit", "expected"),
    [
        ("9279-1", 18, "/min", ("respiratory_rate", 18.0, "/min")),
        ("9279-1", 18, "{breaths}/min", ("respiratory_rate", 18.0, "/min")),
        ("59408-5", 95, "%", ("oxygen_saturation", 95.0, "%")),
        ("2708-6", 93, "%", ("oxygen_saturation", 93.0, "%")),
        ("3150-0", 35, "%", ("inhaled_oxygen_concentration", 35.0, "%")),
        ("8480-6", 118, "mm[Hg]", ("systolic_blood_pressure", 118.0, "mm[Hg]")),
        ("8480-6", 16, "kPa", ("systolic_blood_pressure", 120.01, "mm[Hg]")),
        ("8867-4", 88, "/min", ("heart_rate", 88.0, "/min")),
        ("8867-4", 88, "{beats}/min", ("heart_rate", 88.0, "/min")),
        ("8310-5", 38.2, "Cel", ("body_temperature", 38.2, "Cel")),
        ("8310-5", 101.3, "[degF]", ("body_temperature", 38.5, "Cel")),
        ("9269-2", 13, "{score}", ("glasgow_coma_score", 13.0, "{score}")),
    ],
)
def test_a_single_vital_sign_is_read_in_the_model_unit(
    code: str, value: float, unit: str, expected: tuple[str, float, str]
) -> None:
    name, model_value, model_unit = expected
    assert _values(observation("o-1", code, value, unit)) == {name: (code, model_value, model_unit)}


def test_a_reading_knows_its_observation_and_time() -> None:
    [reading] = vital_sign_readings(observation("o-7", "8867-4", 90))
    assert reading == VitalSignReading(
        name="heart_rate",
        code="8867-4",
        value=90.0,
        unit="/min",
        resource_reference="Observation/o-7",
        observed_at=NOW,
    )


def test_the_blood_pressure_panel_gives_its_systolic_component() -> None:
    panel = blood_pressure_panel("bp-1", systolic=96, diastolic=58)
    assert carries_vital_sign(panel)
    [reading] = vital_sign_readings(panel)
    assert (reading.name, reading.code, reading.value) == (
        "systolic_blood_pressure",
        "8480-6",
        96.0,
    )
    assert reading.resource_reference == "Observation/bp-1"


def test_a_pulse_oximetry_reading_with_inhaled_oxygen_gives_both() -> None:
    oximetry = observation("ox-1", "59408-5", 92, "%", components=[component("3150-0", 40, "%")])
    assert _values(oximetry) == {
        "oxygen_saturation": ("59408-5", 92.0, "%"),
        "inhaled_oxygen_concentration": ("3150-0", 40.0, "%"),
    }


def test_a_glasgow_coma_score_may_be_an_integer_without_unit() -> None:
    gcs = observation("g-1", "9269-2")
    gcs["valueInteger"] = 14
    assert _values(gcs) == {"glasgow_coma_score": ("9269-2", 14.0, "{score}")}


def test_an_absent_value_is_not_read() -> None:
    absent = observation("o-1", "8867-4")
    absent["dataAbsentReason"] = {"text": "patient refused"}
    assert carries_vital_sign(absent)
    assert vital_sign_readings(absent) == []


def test_an_unconvertible_unit_is_unprocessable() -> None:
    with pytest.raises(UnprocessableEvent, match="body_temperature"):
        vital_sign_readings(observation("o-1", "8310-5", 310, "K"))


def test_codes_outside_loinc_or_the_model_are_not_vital_signs() -> None:
    weight = observation("o-1", "29463-7", 70, "kg")
    local = observation("o-2", "8867-4", 70)
    local["code"]["coding"][0]["system"] = "http://hospital.example/codes"
    diastolic_only = observation("o-3", "8462-4", 70, "mm[Hg]")
    assert not any(carries_vital_sign(r) for r in (weight, local, diastolic_only))


def test_the_event_time_stands_in_for_a_missing_effective_time() -> None:
    undated = observation("o-1", "8867-4", 70)
    del undated["effectiveDateTime"]
    fallback = NOW - timedelta(minutes=3)
    [reading] = vital_sign_readings(undated, fallback_observed_at=fallback)
    assert reading.observed_at == fallback
    with pytest.raises(UnprocessableEvent, match="effective time"):
        vital_sign_readings(undated)


def test_a_period_start_or_issued_time_is_used() -> None:
    periodic = observation("o-1", "8867-4", 70)
    del periodic["effectiveDateTime"]
    periodic["effectivePeriod"] = {"start": "2025-03-01T10:00:00Z"}
    [reading] = vital_sign_readings(periodic)
    assert reading.observed_at == datetime(2025, 3, 1, 10, tzinfo=UTC)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2025-03-01T10:15:00Z", datetime(2025, 3, 1, 10, 15, tzinfo=UTC)),
        (
            "2025-03-01T10:15:00+02:00",
            datetime(2025, 3, 1, 10, 15, tzinfo=timezone(timedelta(hours=2))),
        ),
        ("2025-03-01T10:15:00", datetime(2025, 3, 1, 10, 15, tzinfo=UTC)),
        ("2025-03-01", datetime(2025, 3, 1, tzinfo=UTC)),
        ("2025-03", datetime(2025, 3, 1, tzinfo=UTC)),
        ("2025", datetime(2025, 1, 1, tzinfo=UTC)),
        ("yesterday", None),
    ],
)
def test_fhir_date_times_parse_to_aware_datetimes(text: str, expected: datetime | None) -> None:
    assert parse_fhir_datetime(text) == expected
