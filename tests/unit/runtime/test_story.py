from __future__ import annotations

from datetime import UTC, datetime, timedelta
from itertools import pairwise

from cdsflow.fhir import validate_resource
from cdsflow.runtime.story import (
    DETERIORATING,
    STABLE,
    patient_resource,
    round_observations,
    round_times,
)


def test_story_resources_are_valid_fhir() -> None:
    for patient in (DETERIORATING, STABLE):
        validate_resource(patient_resource(patient))
        for observation in round_observations("Patient/p", patient.rounds[0], datetime.now(UTC)):
            validate_resource(observation)


def test_one_round_has_every_vital_sign_code() -> None:
    observations = round_observations("Patient/p", DETERIORATING.rounds[-1], datetime.now(UTC))
    codes = {o["code"]["coding"][0]["code"] for o in observations}
    assert codes == {"9279-1", "2708-6", "8867-4", "8310-5", "85354-9"}
    panel = next(o for o in observations if o["code"]["coding"][0]["code"] == "85354-9")
    components = {c["code"]["coding"][0]["code"] for c in panel["component"]}
    assert components == {"8480-6", "8462-4"}
    assert all(o["subject"] == {"reference": "Patient/p"} for o in observations)


def test_deteriorating_patient_gets_worse_each_round() -> None:
    rounds = DETERIORATING.rounds
    for earlier, later in pairwise(rounds):
        assert later.respiratory_rate > earlier.respiratory_rate
        assert later.oxygen_saturation < earlier.oxygen_saturation
        assert later.heart_rate > earlier.heart_rate


def test_round_times_end_now_and_are_spaced() -> None:
    now = datetime(2026, 1, 1, 12, tzinfo=UTC)
    times = round_times(now, 3)
    assert times[-1] == now
    assert times[1] - times[0] == timedelta(hours=4)
