"""Patients' kept readings: newest per vital sign, bounded, per partition, and their snapshots."""

from __future__ import annotations

from datetime import timedelta

from cdsflow.reasoner.context_changelog import parse_snapshot, snapshot_body
from cdsflow.reasoner.domain.vital_signs import VitalSignReading
from cdsflow.reasoner.patient_contexts import ContextSnapshot, PatientContexts

from .reasoner_fhir import NOW

DAY = timedelta(hours=24)


def reading(name: str, value: float, minutes_ago: float, ref: str = "") -> VitalSignReading:
    units = {"heart_rate": "/min", "respiratory_rate": "/min", "body_temperature": "Cel"}
    codes = {"heart_rate": "8867-4", "respiratory_rate": "9279-1", "body_temperature": "8310-5"}
    return VitalSignReading(
        name=name,
        code=codes[name],
        value=value,
        unit=units[name],
        resource_reference=ref or f"Observation/{name}-{value}",
        observed_at=NOW - timedelta(minutes=minutes_ago),
    )


def values(readings: list[VitalSignReading] | None) -> dict[str, float]:
    assert readings is not None
    return {r.name: r.value for r in readings}


def test_a_patient_first_seen_is_a_miss_then_held_even_without_readings() -> None:
    contexts = PatientContexts(max_patients=10, lookback=DAY)
    assert contexts.readings(0, "Patient/a") is None
    contexts.record(0, "key-a", "Patient/a", [])
    assert contexts.readings(0, "Patient/a") == []


def test_the_newest_reading_of_each_vital_sign_is_kept() -> None:
    contexts = PatientContexts(max_patients=10, lookback=DAY)
    contexts.record(0, "key-a", "Patient/a", [reading("heart_rate", 80, 30)])
    contexts.record(0, "key-a", "Patient/a", [reading("heart_rate", 120, 10)])
    contexts.record(0, "key-a", "Patient/a", [reading("heart_rate", 70, 20)])  # late, older
    contexts.record(0, "key-a", "Patient/a", [reading("respiratory_rate", 22, 5)])
    kept = contexts.readings(0, "Patient/a")
    assert values(kept) == {"heart_rate": 120, "respiratory_rate": 22}
    assert kept is not None
    heart_rate = next(r for r in kept if r.name == "heart_rate")
    assert heart_rate == reading("heart_rate", 120, 10)


def test_readings_older_than_the_window_before_the_newest_are_dropped() -> None:
    contexts = PatientContexts(max_patients=10, lookback=DAY)
    contexts.record(0, "k", "Patient/a", [reading("body_temperature", 38.5, 60 * 25)])
    contexts.record(0, "k", "Patient/a", [reading("heart_rate", 90, 0)])
    assert values(contexts.readings(0, "Patient/a")) == {"heart_rate": 90}


def test_the_least_recently_seen_patient_is_forgotten_first() -> None:
    contexts = PatientContexts(max_patients=2, lookback=DAY)
    contexts.record(0, "ka", "Patient/a", [])
    contexts.record(0, "kb", "Patient/b", [])
    contexts.readings(0, "Patient/a")  # seen again
    contexts.record(0, "kc", "Patient/c", [])
    assert len(contexts) == 2
    assert contexts.readings(0, "Patient/b") is None
    assert contexts.readings(0, "Patient/a") == []


def test_a_patient_is_held_for_its_partition_and_dropped_with_it() -> None:
    contexts = PatientContexts(max_patients=10, lookback=DAY)
    contexts.record(0, "ka", "Patient/a", [reading("heart_rate", 80, 1)])
    contexts.record(1, "kb", "Patient/b", [reading("heart_rate", 90, 1)])
    assert contexts.readings(1, "Patient/a") is None
    contexts.drop_partitions([0])
    assert contexts.readings(0, "Patient/a") is None
    assert values(contexts.readings(1, "Patient/b")) == {"heart_rate": 90}


def test_changed_patients_are_taken_once_and_given_back_when_not_written() -> None:
    contexts = PatientContexts(max_patients=10, lookback=DAY)
    contexts.record(3, "ka", "Patient/a", [reading("heart_rate", 80, 1)])
    [snapshot] = contexts.take_changed()
    assert (snapshot.partition, snapshot.patient_key, snapshot.patient_reference) == (
        3,
        "ka",
        "Patient/a",
    )
    assert contexts.take_changed() == []
    contexts.mark_changed([snapshot])
    assert contexts.take_changed() == [snapshot]


def test_a_snapshot_reads_back_as_written_and_restores_without_being_written_again() -> None:
    snapshot = ContextSnapshot(
        2,
        "ka",
        "Patient/a",
        (reading("heart_rate", 80, 3), reading("body_temperature", 38.2, 7)),
    )
    body = snapshot_body(snapshot)
    assert parse_snapshot(2, "ka", body) == snapshot
    contexts = PatientContexts(max_patients=10, lookback=DAY)
    contexts.restore(snapshot)
    assert values(contexts.readings(2, "Patient/a")) == {"heart_rate": 80, "body_temperature": 38.2}
    assert contexts.take_changed() == []


def test_a_snapshot_that_cannot_be_read_is_a_miss_not_a_crash() -> None:
    for body in (b"not json", b'{"v": 2, "patient": "Patient/a", "readings": []}', b"[]"):
        assert parse_snapshot(0, "k", body) is None
    unknown_vital_sign = b'{"v":1,"patient":"Patient/a","readings":[["pain",null,1,"O/1",0]]}'
    assert parse_snapshot(0, "k", unknown_vital_sign) is None
