"""Patients the EHR confirmed are remembered for a while, and only so many of them."""

from __future__ import annotations

import pytest

from cdsflow.reasoner.known_patients import KnownPatients


class Clock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_confirmation_is_trusted_until_its_time_runs_out() -> None:
    clock = Clock()
    known = KnownPatients(max_patients=10, ttl_s=60, clock=clock)
    assert not known.is_known("Patient/p-1")
    known.remember("Patient/p-1")
    clock.now += 59.999
    assert known.is_known("Patient/p-1")
    assert not known.is_known("Patient/p-2")
    clock.now += 0.001
    assert not known.is_known("Patient/p-1")
    assert len(known) == 0


def test_seeing_a_patient_does_not_extend_its_confirmation() -> None:
    clock = Clock()
    known = KnownPatients(max_patients=10, ttl_s=60, clock=clock)
    known.remember("Patient/p-1")
    for _ in range(10):
        clock.now += 10
        known.is_known("Patient/p-1")
    assert not known.is_known("Patient/p-1")  # 100 s after the EHR confirmed it


def test_a_new_confirmation_starts_a_new_period() -> None:
    clock = Clock()
    known = KnownPatients(max_patients=10, ttl_s=60, clock=clock)
    known.remember("Patient/p-1")
    clock.now += 50
    known.remember("Patient/p-1")
    clock.now += 50
    assert known.is_known("Patient/p-1")
    assert len(known) == 1


def test_the_least_recently_seen_patient_is_forgotten_first() -> None:
    known = KnownPatients(max_patients=3, ttl_s=60, clock=Clock())
    for patient in ("Patient/a", "Patient/b", "Patient/c"):
        known.remember(patient)
    assert known.is_known("Patient/a")  # now b is the least recently seen
    known.remember("Patient/d")
    assert len(known) == 3
    assert [known.is_known(p) for p in ("Patient/a", "Patient/b", "Patient/c", "Patient/d")] == [
        True,
        False,
        True,
        True,
    ]


def test_the_bound_holds_however_many_patients_are_confirmed() -> None:
    known = KnownPatients(max_patients=100, ttl_s=60, clock=Clock())
    for number in range(1000):
        known.remember(f"Patient/p-{number}")
    assert len(known) == 100
    assert known.is_known("Patient/p-999")
    assert not known.is_known("Patient/p-899")


@pytest.mark.parametrize(("max_patients", "ttl_s"), [(0, 60), (10, 0)])
def test_zero_remembers_nothing(max_patients: int, ttl_s: float) -> None:
    known = KnownPatients(max_patients=max_patients, ttl_s=ttl_s, clock=Clock())
    known.remember("Patient/p-1")
    assert not known.is_known("Patient/p-1")
    assert len(known) == 0


def test_negative_limits_are_refused() -> None:
    with pytest.raises(ValueError, match="must not be negative"):
        KnownPatients(max_patients=-1, ttl_s=60)
    with pytest.raises(ValueError, match="must not be negative"):
        KnownPatients(max_patients=1, ttl_s=-1)
