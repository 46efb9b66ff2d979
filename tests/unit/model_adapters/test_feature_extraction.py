"""FHIR context -> one value per column: codes, statuses, units, windows, aggregations,
plausible ranges; a column that was not observed has no value, never a normal one."""

from __future__ import annotations

import math
from datetime import timedelta
from typing import Any

import pytest

from cdsflow.models import RefusalReason, extract_inputs

from .adapter_fixtures import (
    AS_OF,
    DETERIORATION,
    LOINC,
    adapter_with,
    deterioration_adapter,
    medication_adapter,
    medication_request,
    observation,
    patient,
)

HEART_RATE = "8867-4"
SPO2 = "59408-5"
TEMPERATURE = "8310-5"
GCS = "9269-2"
SYSTOLIC = "8480-6"
EGFR = "62238-1"


def _value(resources: list[dict[str, Any]], column: str) -> float | None:
    return extract_inputs(deterioration_adapter(), resources, AS_OF).column(column).value


def test_latest_and_trend_within_the_window() -> None:
    resources = [
        observation("hr-1", HEART_RATE, 80, "/min", hours_before=20),
        observation("hr-2", HEART_RATE, 110, "/min", hours_before=1),
        observation("hr-3", HEART_RATE, 95, "/min", hours_before=8),
    ]
    extracted = extract_inputs(deterioration_adapter(), resources, AS_OF)
    assert extracted.column("heart_rate").value == 110
    assert extracted.column("heart_rate_trend").value == 30
    trend_basis = [r.resource_reference for r in extracted.column("heart_rate_trend").readings]
    assert trend_basis == ["Observation/hr-1", "Observation/hr-2"]


def test_a_trend_needs_two_values() -> None:
    resources = [observation("hr-1", HEART_RATE, 80, "/min")]
    extracted = extract_inputs(deterioration_adapter(), resources, AS_OF)
    assert extracted.column("heart_rate").present
    assert not extracted.column("heart_rate_trend").present


def test_values_outside_the_window_or_after_as_of_do_not_count() -> None:
    resources = [
        observation("old", HEART_RATE, 40, "/min", hours_before=24.5),
        observation("edge", HEART_RATE, 70, "/min", hours_before=24),
        observation("future", HEART_RATE, 150, "/min", hours_before=-1),
    ]
    assert _value(resources, "heart_rate") == 70
    assert (
        not extract_inputs(deterioration_adapter(), resources, AS_OF)
        .column("heart_rate_trend")
        .present
    )


@pytest.mark.parametrize(
    ("aggregation", "expected"),
    [("min", 60.0), ("max", 130.0), ("mean", 90.0), ("earliest", 80.0), ("count", 3.0)],
)
def test_other_aggregations(aggregation: str, expected: float) -> None:
    old = "{name: heart_rate, data: heart_rate, aggregation: latest}"
    adapter = adapter_with(DETERIORATION, old, old.replace("latest", aggregation))
    resources = [
        observation("a", HEART_RATE, 80, "/min", hours_before=10),
        observation("b", HEART_RATE, 130, "/min", hours_before=5),
        observation("c", HEART_RATE, 60, "/min", hours_before=2),
    ]
    assert extract_inputs(adapter, resources, AS_OF).column("heart_rate").value == expected


def test_fahrenheit_and_kilopascal_are_converted() -> None:
    resources = [
        observation("t", TEMPERATURE, 101.3, "[degF]"),
        observation("bp", SYSTOLIC, 12.0, "kPa"),
    ]
    assert _value(resources, "body_temperature") == pytest.approx(38.5)
    assert _value(resources, "systolic_blood_pressure") == pytest.approx(90.0, abs=0.01)


def test_the_systolic_component_of_a_blood_pressure_panel_is_read() -> None:
    panel = observation("bp-panel", "85354-9", 0, "mm[Hg]")
    del panel["valueQuantity"]
    panel["component"] = [
        {
            "code": {"coding": [{"system": LOINC, "code": SYSTOLIC}]},
            "valueQuantity": {"value": 104, "code": "mm[Hg]"},
        },
        {
            "code": {"coding": [{"system": LOINC, "code": "8462-4"}]},
            "valueQuantity": {"value": 60, "code": "mm[Hg]"},
        },
    ]
    assert _value([panel], "systolic_blood_pressure") == 104


def test_a_reading_entered_in_error_or_without_value_is_not_read() -> None:
    absent = observation("absent", HEART_RATE, 0, "/min")
    del absent["valueQuantity"]
    absent["dataAbsentReason"] = {"text": "not measured"}
    resources = [observation("err", HEART_RATE, 180, "/min", status="entered-in-error"), absent]
    extracted = extract_inputs(deterioration_adapter(), resources, AS_OF)
    assert not extracted.column("heart_rate").present
    assert extracted.refused == ()


@pytest.mark.parametrize(
    ("resource", "reason"),
    [
        (observation("spo2", SPO2, 140, "%"), RefusalReason.ABOVE_RANGE),
        (observation("hr", HEART_RATE, -5, "/min"), RefusalReason.BELOW_RANGE),
        (observation("gcs", GCS, 13.5, "{score}"), RefusalReason.NOT_WHOLE),
        (observation("t", TEMPERATURE, math.nan, "Cel"), RefusalReason.NOT_FINITE),
        (observation("hr", HEART_RATE, 1e39, "/min"), RefusalReason.NOT_FLOAT32),
        (observation("t", TEMPERATURE, 37, "mg/dL"), RefusalReason.UNKNOWN_UNIT),
    ],
)
def test_impossible_values_are_refused_with_a_reason_never_fed(
    resource: dict[str, Any], reason: RefusalReason
) -> None:
    extracted = extract_inputs(deterioration_adapter(), [resource], AS_OF)
    assert [(r.reason, r.resource_reference) for r in extracted.refused] == [
        (reason, f"Observation/{resource['id']}")
    ]
    assert all(not column.present for column in extracted.columns)


def test_a_refused_value_leaves_the_plausible_ones_in_use() -> None:
    resources = [
        observation("ok", SPO2, 93, "%", hours_before=3),
        observation("bad", SPO2, 140, "%", hours_before=1),
    ]
    extracted = extract_inputs(deterioration_adapter(), resources, AS_OF)
    assert extracted.column("oxygen_saturation").value == 93
    assert not extracted.column("oxygen_saturation_trend").present
    assert [r.data for r in extracted.refused] == ["oxygen_saturation"]


def test_a_value_without_a_time_is_refused() -> None:
    resource = observation("no-time", HEART_RATE, 80, "/min")
    del resource["effectiveDateTime"]
    extracted = extract_inputs(deterioration_adapter(), [resource], AS_OF)
    assert [r.reason for r in extracted.refused] == [RefusalReason.NO_TIME]


def test_nothing_observed_means_every_column_missing_not_normal() -> None:
    extracted = extract_inputs(deterioration_adapter(), [], AS_OF)
    assert all(column.value is None for column in extracted.columns)
    assert len(extracted.missing()) == 15


@pytest.mark.parametrize(
    ("birth_date", "age"),
    [("1950-11-29", 76.0), ("1950-11-30", 75.0), ("1950", 76.0), ("2026-11-29", 0.0)],
)
def test_age_in_completed_years_from_the_birth_date(birth_date: str, age: float) -> None:
    assert _value([patient(birth_date)], "age") == age


def test_no_birth_date_or_an_impossible_one_is_no_age() -> None:
    assert _value([patient(None)], "age") is None
    extracted = extract_inputs(deterioration_adapter(), [patient("1800-01-01")], AS_OF)
    assert extracted.column("age").value is None
    assert [r.reason for r in extracted.refused] == [RefusalReason.ABOVE_RANGE]


def test_an_active_or_draft_metformin_request_exists() -> None:
    adapter = medication_adapter()
    none = extract_inputs(adapter, [medication_request("m", status="stopped")], AS_OF)
    assert none.column("metformin_ordered").value == 0.0
    assert none.column("metformin_ordered").present  # no order is a fact, not a gap
    other_drug = extract_inputs(adapter, [medication_request("m", rxnorm="197361")], AS_OF)
    assert other_drug.column("metformin_ordered").value == 0.0
    for status in ("active", "draft"):
        found = extract_inputs(adapter, [medication_request("m", status=status)], AS_OF)
        assert found.column("metformin_ordered").value == 1.0
        assert [r.resource_reference for r in found.column("metformin_ordered").readings] == [
            "MedicationRequest/m"
        ]


def test_the_egfr_window_is_ninety_days() -> None:
    adapter = medication_adapter()
    recent = observation("e1", EGFR, 28, "mL/min/{1.73_m2}", hours_before=24 * 89)
    stale = observation("e2", EGFR, 80, "mL/min/1.73m2", hours_before=24 * 91)
    extracted = extract_inputs(adapter, [stale, recent], AS_OF)
    assert extracted.column("egfr").value == 28
    assert extract_inputs(adapter, [stale], AS_OF).column("egfr").value is None


def test_as_of_must_carry_a_time_zone() -> None:
    with pytest.raises(ValueError, match="aware"):
        extract_inputs(deterioration_adapter(), [], AS_OF.replace(tzinfo=None) + timedelta(0))


def test_a_trend_can_ask_for_more_values() -> None:
    old = "{name: heart_rate_trend, data: heart_rate, aggregation: trend}"
    adapter = adapter_with(DETERIORATION, old, old.replace("}", ", min_values: 3}"))
    two = [
        observation("a", HEART_RATE, 80, "/min", hours_before=10),
        observation("b", HEART_RATE, 100, "/min", hours_before=2),
    ]
    three = [*two, observation("c", HEART_RATE, 110, "/min", hours_before=1)]
    assert extract_inputs(adapter, two, AS_OF).column("heart_rate_trend").value is None
    assert extract_inputs(adapter, three, AS_OF).column("heart_rate_trend").value == 30
