"""Impossible vital signs are refused before the model: ranges, non-finite values, float32."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from cdsflow.reasoner.domain.errors import ImplausibleVitalSign
from cdsflow.reasoner.domain.events import VitalSignEvent, vital_sign_event
from cdsflow.reasoner.domain.model_adapter import model_inputs
from cdsflow.reasoner.domain.patient_context import PatientContext, trigger_readings
from cdsflow.reasoner.domain.plausible_ranges import (
    FLOAT32_MAX,
    Implausibility,
    PlausibleRange,
    RefusedReading,
)
from cdsflow.reasoner.domain.vital_signs import (
    VITAL_SIGN_BY_NAME,
    VITAL_SIGNS,
    VitalSign,
    VitalSignReading,
)
from cdsflow.reasoner.handlers import dlq_error

from .reasoner_fhir import EHR_BASE_URL, NOW, PATIENT, clinical_event, observation

EXPECTED_RANGES = {
    "respiratory_rate": (0, 150),
    "oxygen_saturation": (0, 100),
    "inhaled_oxygen_concentration": (0, 100),
    "systolic_blood_pressure": (0, 500),
    "heart_rate": (0, 600),
    "body_temperature": (10, 50),
    "glasgow_coma_score": (3, 15),
}


def test_every_model_input_declares_its_range() -> None:
    assert {v.name: (v.plausible.low, v.plausible.high) for v in VITAL_SIGNS} == EXPECTED_RANGES
    for vital_sign in VITAL_SIGNS:
        for bound in (vital_sign.plausible.low, vital_sign.plausible.high):
            assert float(np.float32(bound)) == bound  # exact in the model's float32


@pytest.mark.parametrize("vital_sign", VITAL_SIGNS, ids=lambda v: v.name)
def test_values_at_the_bounds_are_kept_and_just_beyond_them_refused(vital_sign: VitalSign) -> None:
    low, high = vital_sign.plausible.low, vital_sign.plausible.high
    assert vital_sign.implausibility(low) is None
    assert vital_sign.implausibility(high) is None
    assert vital_sign.implausibility((low + high) / 2) is None
    assert vital_sign.implausibility(math.nextafter(low, -math.inf)) is Implausibility.BELOW_RANGE
    assert vital_sign.implausibility(math.nextafter(high, math.inf)) is Implausibility.ABOVE_RANGE
    assert vital_sign.implausibility(low - 0.1) is Implausibility.BELOW_RANGE
    assert vital_sign.implausibility(high + 0.1) is Implausibility.ABOVE_RANGE


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (1e308, Implausibility.NOT_FLOAT32),
        (-1e308, Implausibility.NOT_FLOAT32),
        (3.5e38, Implausibility.NOT_FLOAT32),
        (FLOAT32_MAX, Implausibility.ABOVE_RANGE),
        (-5.0, Implausibility.BELOW_RANGE),
        (-273.16, Implausibility.BELOW_RANGE),
        (151.0, Implausibility.ABOVE_RANGE),
        (math.nan, Implausibility.NOT_FINITE),
        (math.inf, Implausibility.NOT_FINITE),
        (-math.inf, Implausibility.NOT_FINITE),
    ],
)
def test_impossible_respiratory_rates_are_refused_with_their_reason(
    value: float, reason: Implausibility
) -> None:
    assert VITAL_SIGN_BY_NAME["respiratory_rate"].implausibility(value) is reason


def test_a_range_is_closed() -> None:
    survivable = PlausibleRange(10, 50)
    assert [survivable.implausibility(v) for v in (10, 50)] == [None, None]


def test_a_glasgow_score_counts_whole_points_only() -> None:
    gcs = VITAL_SIGN_BY_NAME["glasgow_coma_score"].plausible
    assert [gcs.implausibility(v) for v in (3, 13.0, 15)] == [None, None, None]
    assert gcs.implausibility(13.5) == Implausibility.NOT_WHOLE
    [refused] = _refusals("9269-2", 13.5, "{score}")
    assert refused.reason == Implausibility.NOT_WHOLE
    assert "13.5" not in str(ImplausibleVitalSign((refused,)))


def _refusals(code: str, value: float, unit: str) -> tuple[RefusedReading, ...]:
    with pytest.raises(ImplausibleVitalSign) as refused:
        trigger_readings(observation("o-1", code, value, unit), None)
    return refused.value.refusals


@pytest.mark.parametrize(
    ("code", "value", "unit", "reason"),
    [
        ("9279-1", 1e308, "/min", Implausibility.NOT_FLOAT32),
        ("9279-1", -5, "/min", Implausibility.BELOW_RANGE),
        ("9279-1", -273.16, "{breaths}/min", Implausibility.BELOW_RANGE),
        ("59408-5", 100.5, "%", Implausibility.ABOVE_RANGE),
        ("3150-0", 250, "%", Implausibility.ABOVE_RANGE),
        ("8480-6", -1, "mm[Hg]", Implausibility.BELOW_RANGE),
        ("8867-4", 720, "/min", Implausibility.ABOVE_RANGE),
        ("8310-5", -273.16, "Cel", Implausibility.BELOW_RANGE),
        ("9269-2", 2, "{score}", Implausibility.BELOW_RANGE),
        ("9269-2", 16, "{score}", Implausibility.ABOVE_RANGE),
        # judged in the model's unit, after conversion
        ("8310-5", 49.9, "[degF]", Implausibility.BELOW_RANGE),  # 9.9 Cel
        ("8310-5", 122.1, "[degF]", Implausibility.ABOVE_RANGE),  # 50.06 Cel
        ("8310-5", 1e308, "[degF]", Implausibility.NOT_FINITE),  # overflows to inf
        ("8480-6", 66.7, "kPa", Implausibility.ABOVE_RANGE),  # 500.3 mmHg
        ("8480-6", -0.1, "kPa", Implausibility.BELOW_RANGE),
        ("8480-6", 1e308, "kPa", Implausibility.NOT_FINITE),
    ],
)
def test_an_impossible_trigger_reading_refuses_the_event(
    code: str, value: float, unit: str, reason: Implausibility
) -> None:
    [refused] = _refusals(code, value, unit)
    assert refused.reason is reason


@pytest.mark.parametrize(
    ("code", "value", "unit", "model_value"),
    [
        ("8310-5", 50, "[degF]", 10.0),
        ("8310-5", 122, "[degF]", 50.0),
        ("8480-6", 66.6, "kPa", 499.54),
        ("8480-6", 0, "kPa", 0.0),
        ("9279-1", 0, "/min", 0.0),
        ("59408-5", 100, "%", 100.0),
        ("9269-2", 3, "{score}", 3.0),
    ],
)
def test_converted_values_inside_the_range_are_kept(
    code: str, value: float, unit: str, model_value: float
) -> None:
    [reading] = trigger_readings(observation("o-1", code, value, unit), None)
    assert reading.value == pytest.approx(model_value, abs=0.01)


def test_the_error_names_the_vital_sign_and_the_rule_never_the_value() -> None:
    with pytest.raises(ImplausibleVitalSign) as below:
        trigger_readings(observation("o-1", "9279-1", -273.16), None)
    message = str(below.value)
    assert message == "respiratory_rate is below its plausible range (0-150 /min)"
    assert "273" not in message
    assert dlq_error(below.value) == message
    with pytest.raises(ImplausibleVitalSign) as huge:
        trigger_readings(observation("o-1", "9279-1", 1e308), None)
    assert str(huge.value) == "respiratory_rate is beyond the range of a 32-bit float"


def test_every_implausible_reading_of_the_trigger_is_named() -> None:
    oximetry = observation("ox-1", "59408-5", 101, "%")
    oximetry["component"] = [
        {
            "code": {"coding": [{"system": "http://loinc.org", "code": "3150-0"}]},
            "valueQuantity": {"value": -1, "unit": "%", "code": "%"},
        }
    ]
    with pytest.raises(ImplausibleVitalSign) as refused:
        trigger_readings(oximetry, None)
    assert refused.value.refusals == (
        RefusedReading("oxygen_saturation", Implausibility.ABOVE_RANGE),
        RefusedReading("inhaled_oxygen_concentration", Implausibility.BELOW_RANGE),
    )
    assert str(refused.value) == (
        "oxygen_saturation is above its plausible range (0-100 %); "
        "inhaled_oxygen_concentration is below its plausible range (0-100 %)"
    )


@pytest.mark.parametrize(
    ("literal", "reason"),
    [
        ("NaN", Implausibility.NOT_FINITE),
        ("Infinity", Implausibility.NOT_FINITE),
        ("-Infinity", Implausibility.NOT_FINITE),
        ("1e999", Implausibility.NOT_FINITE),  # beyond a double: json reads inf
        ("1" + "0" * 400, Implausibility.NOT_FINITE),  # an integer no float can hold
        ("1e308", Implausibility.NOT_FLOAT32),
    ],
)
def test_values_that_json_lets_through_are_refused(literal: str, reason: Implausibility) -> None:
    event = clinical_event(observation("o-1", "9279-1", 12345))
    event.resource_json = event.resource_json.replace(b"12345", literal.encode())
    assert json.loads(event.resource_json)  # the event parses
    decoded = vital_sign_event(event, EHR_BASE_URL)
    assert isinstance(decoded, VitalSignEvent)
    with pytest.raises(ImplausibleVitalSign) as refused:
        trigger_readings(decoded.observation, decoded.occurred_at)
    assert refused.value.refusals == (RefusedReading("respiratory_rate", reason),)


def _context_with(name: str, value: float) -> PatientContext:
    vital_sign = VITAL_SIGN_BY_NAME[name]
    reading = VitalSignReading(
        name, vital_sign.codes[0], value, vital_sign.unit, "Observation/o-1", NOW
    )
    return PatientContext(PATIENT, "Observation/o-1", NOW, {name: reading})


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf, 1e308, 3.5e38, -5.0, 151.0])
def test_the_model_adapter_never_builds_a_tensor_from_an_impossible_value(value: float) -> None:
    with pytest.raises(ImplausibleVitalSign, match="respiratory_rate"):
        model_inputs(_context_with("respiratory_rate", value))


def test_the_model_adapter_builds_finite_tensors_from_plausible_values() -> None:
    inputs = model_inputs(_context_with("heart_rate", 600.0))
    assert np.all(np.isfinite(inputs.vital_signs))
    assert inputs.vital_signs[0, 4] == 600.0
    assert inputs.present[0].tolist() == [False, False, False, False, True, False, False]
