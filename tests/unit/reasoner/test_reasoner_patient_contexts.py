"""Patients' kept data: compact readings per adapter feed, bounded, per partition, replaced
by resource, built into the adapters' inputs, and written to and read from snapshots."""

from __future__ import annotations

from datetime import date, timedelta

import numpy as np

from cdsflow.models import build_model_inputs, inputs_from_readings
from cdsflow.reasoner.context_changelog import parse_snapshot, snapshot_body
from cdsflow.reasoner.patient_contexts import (
    ContextSnapshot,
    PatientContexts,
    feed_windows,
    resource_updates,
)

from .reasoner_fhir import NOW, READERS, metformin_order, observation

DETERIORATION = next(r for r in READERS if r.adapter.id == "deterioration-risk")
MEDICATION = next(r for r in READERS if r.adapter.id == "medication-safety")
HEART_RATE = "deterioration-risk/heart_rate"


def contexts(max_patients: int = 10, per_feed: int = 8) -> PatientContexts:
    return PatientContexts(max_patients, feed_windows(READERS), per_feed)


def keep(held: PatientContexts, resource: dict[str, object], patient: str = "Patient/a") -> None:
    updates = []
    for reader in READERS:
        updates += resource_updates(reader, reader.readings(resource).readings)
    held.record_resource(
        0, "key-a", patient, f"{resource['resourceType']}/{resource['id']}", updates
    )


def heart_rate(minutes_ago: float, value: float, observation_id: str = "") -> dict[str, object]:
    return observation(
        observation_id or f"hr-{minutes_ago}",
        "8867-4",
        value,
        effective=NOW - timedelta(minutes=minutes_ago),
    )


def kept_values(held: PatientContexts, key: str = HEART_RATE) -> list[float]:
    patient = held.held(0, "Patient/a")
    assert patient is not None
    return [value for _, value, _, _ in patient.feeds.get(key, [])]


def test_a_patient_first_seen_is_a_miss_then_held_even_without_data() -> None:
    held = contexts()
    assert held.held(0, "Patient/a") is None
    held.hold(0, "key-a", "Patient/a")
    patient = held.held(0, "Patient/a")
    assert patient is not None
    assert patient.feeds == {}
    assert held.held(1, "Patient/a") is None  # another partition's patient is a miss


def test_values_are_kept_in_time_order_and_a_resource_replaces_what_it_said_before() -> None:
    held = contexts()
    keep(held, heart_rate(30, 80))
    keep(held, heart_rate(10, 120))
    keep(held, heart_rate(20, 70))  # late: kept in its place
    assert kept_values(held) == [80, 70, 120]
    keep(held, heart_rate(10, 125))  # the same Observation, amended
    assert kept_values(held) == [80, 70, 125]


def test_an_order_no_longer_active_leaves_the_context() -> None:
    held = contexts()
    keep(held, metformin_order("m-1"))
    assert kept_values(held, "medication-safety/metformin") == [1.0]
    keep(held, metformin_order("m-1", "stopped"))
    assert kept_values(held, "medication-safety/metformin") == []
    keep(held, metformin_order("m-1"))
    held.forget_resource(0, "Patient/a", "MedicationRequest/m-1")
    assert kept_values(held, "medication-safety/metformin") == []


def test_values_older_than_the_feeds_window_before_the_newest_are_dropped() -> None:
    held = contexts()
    keep(held, heart_rate(60 * 25, 90))
    keep(
        held,
        observation("egfr", "98979-8", 40, "mL/min/{1.73_m2}", effective=NOW - timedelta(days=30)),
    )
    keep(held, heart_rate(0, 95))
    assert kept_values(held) == [95]  # 25 h before the newest: outside the 24 h window
    assert kept_values(held, "medication-safety/egfr") == [40]  # 90 days


def test_at_most_n_values_per_feed_the_oldest_and_newest_stay() -> None:
    held = contexts(per_feed=3)
    for minutes_ago, value in ((50, 60), (40, 70), (30, 80), (20, 90), (10, 100)):
        keep(held, heart_rate(minutes_ago, value))
    assert kept_values(held) == [60, 90, 100]


def test_the_least_recently_seen_patient_is_forgotten_first() -> None:
    held = contexts(max_patients=2)
    for patient in ("Patient/a", "Patient/b"):
        keep(held, heart_rate(5, 80), patient)
    assert held.held(0, "Patient/a") is not None  # a is now the most recent
    keep(held, heart_rate(5, 80), "Patient/c")
    assert held.held(0, "Patient/b") is None
    assert len(held) == 2


def test_kept_readings_build_the_same_tensors_as_the_resources_themselves() -> None:
    resources = [
        heart_rate(60 * 5, 90),
        heart_rate(20, 128),
        observation("rr", "9279-1", 27, effective=NOW - timedelta(minutes=10)),
        observation("t", "8310-5", 102.2, "[degF]", effective=NOW - timedelta(minutes=15)),
        observation("too-old", "59408-5", 91, "%", effective=NOW - timedelta(hours=30)),
    ]
    patient_resource = {"resourceType": "Patient", "id": "a", "birthDate": "1948-05-02"}
    expected = build_model_inputs(DETERIORATION.adapter, [*resources, patient_resource], NOW)
    held = contexts()
    for resource in resources:
        keep(held, resource)
    patient = held.held(0, "Patient/a")
    assert patient is not None
    built = inputs_from_readings(
        DETERIORATION.adapter,
        patient.readings_for(DETERIORATION),
        NOW,
        birth_date=date(1948, 5, 2),
        patient_reference="Patient/a",
    )
    for name, tensor in expected.tensors.items():
        np.testing.assert_allclose(built.tensors[name], tensor, rtol=1e-6)
    present = built.tensors["present"][0]
    assert present.sum() == 5  # rr, hr, temperature, heart-rate trend, age: none imputed


def test_a_snapshot_round_trips_and_an_old_or_damaged_one_is_not_read() -> None:
    held = contexts()
    keep(held, heart_rate(10, 120))
    keep(held, metformin_order("m-1"))
    patient = held.held(0, "Patient/a")
    assert patient is not None
    patient.birth_date = date(1950, 2, 1)
    [snapshot] = held.take_changed()
    assert held.take_changed() == []
    parsed = parse_snapshot(0, "key-a", snapshot_body(snapshot))
    assert parsed == snapshot
    restored = contexts()
    restored.restore(parsed)
    again = restored.held(0, "Patient/a")
    assert again is not None
    assert again.birth_date == date(1950, 2, 1)
    assert again.feeds == patient.feeds
    assert restored.take_changed() == []  # restoring is no change to write back
    old = b'{"v":1,"patient":"Patient/a","readings":[]}'
    assert parse_snapshot(0, "key-a", old) is None
    assert parse_snapshot(0, "key-a", b"{not json") is None


def test_a_feed_no_longer_configured_is_not_restored() -> None:
    snapshot = ContextSnapshot(
        0, "key-a", "Patient/a", None, {"retired-model/x": ((1.0, 2.0, "c", "Observation/o"),)}
    )
    held = contexts()
    held.restore(snapshot)
    patient = held.held(0, "Patient/a")
    assert patient is not None
    assert patient.feeds == {}


def test_dropped_partitions_forget_their_patients() -> None:
    held = contexts()
    keep(held, heart_rate(5, 80))
    held.drop_partitions([0])
    assert held.held(0, "Patient/a") is None
    assert held.take_changed() == []
