"""The patient's context: the latest reading of every vital sign, as of the event."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from cdsflow.reasoner.domain.patient_context import (
    PatientContext,
    assemble_patient_context,
    context_as_of,
    history_search_params,
    trigger_readings,
)
from cdsflow.reasoner.domain.plausible_ranges import Implausibility, RefusedReading

from .reasoner_fhir import EHR_BASE_URL, NOW, PATIENT, blood_pressure_panel, observation

DAY = timedelta(hours=24)


def _context(trigger: dict[str, Any], history: list[dict[str, Any]]) -> PatientContext:
    readings = trigger_readings(trigger, None)
    return assemble_patient_context(
        PATIENT, trigger, readings, history, DAY, ehr_base_url=EHR_BASE_URL
    )


def _values(context: PatientContext) -> dict[str, float]:
    return {name: reading.value for name, reading in context.readings.items()}


def test_the_event_is_completed_with_the_latest_of_every_other_vital_sign() -> None:
    trigger = observation("rr-new", "9279-1", 26)
    history = [
        observation("hr-new", "8867-4", 118, effective=NOW - timedelta(minutes=5)),
        observation("hr-old", "8867-4", 80, effective=NOW - timedelta(hours=4)),
        blood_pressure_panel("bp-1", 92, 60, effective=NOW - timedelta(minutes=10)),
        observation("t-1", "8310-5", 38.6, "Cel", effective=NOW - timedelta(hours=2)),
    ]
    context = _context(trigger, history)
    assert _values(context) == {
        "respiratory_rate": 26,
        "heart_rate": 118,
        "systolic_blood_pressure": 92,
        "body_temperature": 38.6,
    }
    assert context.as_of == NOW
    assert context.trigger_reference == "Observation/rr-new"
    assert context.missing() == [
        "oxygen_saturation",
        "inhaled_oxygen_concentration",
        "glasgow_coma_score",
    ]
    assert context.resource_references() == [
        "Observation/rr-new",
        "Observation/bp-1",
        "Observation/hr-new",
        "Observation/t-1",
    ]


def test_readings_after_the_event_or_before_the_look_back_are_left_out() -> None:
    trigger = observation("rr-1", "9279-1", 18)
    history = [
        observation("hr-later", "8867-4", 140, effective=NOW + timedelta(minutes=1)),
        observation("t-stale", "8310-5", 39.5, "Cel", effective=NOW - DAY - timedelta(minutes=1)),
        observation("spo2-edge", "59408-5", 93, "%", effective=NOW - DAY),
    ]
    assert _values(_context(trigger, history)) == {"respiratory_rate": 18, "oxygen_saturation": 93}


def test_the_events_copy_of_its_observation_wins_over_the_ehrs() -> None:
    trigger = observation("hr-1", "8867-4", 130)
    same_observation_on_ehr = observation("hr-1", "8867-4", 75)
    simultaneous = observation("hr-2", "8867-4", 60)
    context = _context(trigger, [same_observation_on_ehr, simultaneous])
    assert _values(context) == {"heart_rate": 130}
    assert context.readings["heart_rate"].resource_reference == "Observation/hr-1"


def test_unusable_or_unreadable_history_is_skipped() -> None:
    trigger = observation("rr-1", "9279-1", 18)
    retracted = observation("hr-x", "8867-4", 150, status="entered-in-error")
    kelvin = observation("t-k", "8310-5", 312, "K")
    undated = observation("hr-u", "8867-4", 150)
    del undated["effectiveDateTime"]
    not_an_observation = {"resourceType": "OperationOutcome"}
    context = _context(trigger, [retracted, kelvin, undated, not_an_observation])
    assert _values(context) == {"respiratory_rate": 18}


def test_the_history_search_asks_for_the_patients_recent_vital_signs_newest_first() -> None:
    params = dict(history_search_params(PATIENT, NOW, DAY))
    assert params["patient"] == PATIENT
    assert params["date"] == "ge2025-02-28T12:00:00Z"
    assert params["_sort"] == "-date"
    codes = params["code"].split(",")
    assert "http://loinc.org|85354-9" in codes  # the blood pressure panel
    assert {
        "http://loinc.org|9279-1",
        "http://loinc.org|59408-5",
        "http://loinc.org|2708-6",
        "http://loinc.org|3150-0",
        "http://loinc.org|8480-6",
        "http://loinc.org|8867-4",
        "http://loinc.org|8310-5",
        "http://loinc.org|9269-2",
    } <= set(codes)


def test_an_implausible_history_reading_is_left_out_and_reported() -> None:
    trigger = observation("hr-1", "8867-4", 88)
    minutes = [NOW - timedelta(minutes=m) for m in (5, 10, 30)]
    impossible_rate = observation("rr-bad", "9279-1", -5, effective=minutes[0])
    huge_rate = observation("rr-huge", "9279-1", 1e308, effective=minutes[1])
    older_rate = observation("rr-ok", "9279-1", 22, effective=minutes[2])
    oximetry = observation("ox-1", "59408-5", 93, "%", effective=minutes[0])
    oximetry["component"] = [
        {
            "code": {"coding": [{"system": "http://loinc.org", "code": "3150-0"}]},
            "valueQuantity": {"value": 250, "unit": "%", "code": "%"},
        }
    ]
    context = _context(trigger, [impossible_rate, huge_rate, older_rate, oximetry])
    # the latest plausible rate is used; the saturation beside an impossible FiO2 is kept
    assert _values(context) == {"heart_rate": 88, "respiratory_rate": 22, "oxygen_saturation": 93}
    assert context.readings["respiratory_rate"].resource_reference == "Observation/rr-ok"
    assert context.implausible_history == (
        RefusedReading("respiratory_rate", Implausibility.BELOW_RANGE),
        RefusedReading("respiratory_rate", Implausibility.NOT_FLOAT32),
        RefusedReading("inhaled_oxygen_concentration", Implausibility.ABOVE_RANGE),
    )


def test_implausible_readings_outside_the_window_are_not_reported() -> None:
    trigger = observation("hr-1", "8867-4", 88)
    stale = observation("rr-stale", "9279-1", -5, effective=NOW - DAY - timedelta(minutes=1))
    assert _context(trigger, [stale]).implausible_history == ()


@pytest.mark.parametrize(
    "subject",
    [
        "Patient/p-2",
        "http://other.example/fhir/Patient/p-1",
        "//other.example/fhir/Patient/p-1",
        "a/b/c/Patient/p-1",
        "http://ehr.example/fhir/../other/Patient/p-1",
        "Patient/..",
        "Group/g-1",
    ],
)
def test_history_about_another_patient_is_skipped(subject: str) -> None:
    trigger = observation("rr-1", "9279-1", 18)
    foreign = observation("hr-x", "8867-4", 150, subject=subject)
    no_subject = observation("t-x", "8310-5", 39.9, "Cel")
    del no_subject["subject"]
    own = [
        observation("spo2-1", "59408-5", 95, "%", subject="Patient/p-1/_history/4"),
        observation(
            "gcs-1", "9269-2", 14, "{score}", subject="http://ehr.example/fhir/Patient/p-1"
        ),
    ]
    context = _context(trigger, [foreign, no_subject, *own])
    assert _values(context) == {
        "respiratory_rate": 18,
        "oxygen_saturation": 95,
        "glasgow_coma_score": 14,
    }


def test_kept_readings_complete_the_event_as_of_it() -> None:
    trigger = trigger_readings(observation("rr-new", "9279-1", 26), None)
    kept = trigger_readings(
        observation("hr-before", "8867-4", 118, effective=NOW - timedelta(minutes=5)), None
    )
    kept += trigger_readings(
        observation("t-after", "8310-5", 38.6, "Cel", effective=NOW + timedelta(minutes=1)), None
    )
    kept += trigger_readings(
        observation("spo2-old", "59408-5", 91, "%", effective=NOW - DAY - timedelta(seconds=1)),
        None,
    )
    context = context_as_of(PATIENT, "Observation/rr-new", trigger, kept, DAY)
    assert _values(context) == {"respiratory_rate": 26, "heart_rate": 118}
    assert context.resource_references() == ["Observation/rr-new", "Observation/hr-before"]
