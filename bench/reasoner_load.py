"""What the reasoner benchmark feeds in: clinical events about patients the EHR holds, and
changelog snapshots of many more patients, so that the reasoner holds their contexts."""

from __future__ import annotations

import json
import uuid
from datetime import date, datetime, timedelta

from bench.kafka_io import Message
from cdsflow.contracts import ClinicalEvent, EventSource
from cdsflow.reasoner.context_changelog import snapshot_body
from cdsflow.reasoner.patient_contexts import ContextSnapshot
from cdsflow.runtime.story import vital_sign_observation
from cdsflow.telemetry import PatientKeyer

# (LOINC code, UCUM unit, values cycled through) of the vital signs the events carry
_VITAL_SIGNS = (
    ("9279-1", "/min", (14, 18, 22, 26)),
    ("59408-5", "%", (98, 95, 93, 91)),
    ("8867-4", "/min", (72, 95, 112, 131)),
    ("8310-5", "Cel", (36.8, 37.6, 38.4, 39.2)),
    ("8480-6", "mm[Hg]", (128, 112, 101, 92)),
)
# (data feed of the deterioration adapter, LOINC code, value) of each reading in a snapshot
_SNAPSHOT_READINGS = (
    ("respiratory_rate", "9279-1", 16.0),
    ("oxygen_saturation", "59408-5", 97.0),
    ("systolic_blood_pressure", "8480-6", 121.0),
    ("heart_rate", "8867-4", 78.0),
    ("body_temperature", "8310-5", 37.1),
)


def clinical_events(
    patients: list[str], count: int, keyer: PatientKeyer, ehr_base_url: str, start: datetime
) -> list[Message]:
    """`count` vital-sign events, round-robin over `patients`, each a minute after the last
    of its patient, keyed by patient key as the listener publishes them."""
    messages: list[Message] = []
    for index in range(count):
        patient = patients[index % len(patients)]
        turn = index // len(patients)
        code, unit, values = _VITAL_SIGNS[turn % len(_VITAL_SIGNS)]
        effective = start + timedelta(minutes=turn)
        observation = vital_sign_observation(
            patient, effective, code, value=values[turn % len(values)], ucum=unit
        )
        observation["id"] = f"bench-{uuid.uuid4().hex}"
        key = keyer.patient_key(patient)
        event = ClinicalEvent(
            event_id=uuid.uuid4().hex,
            resource_type="Observation",
            resource_id=observation["id"],
            resource_json=json.dumps(observation).encode(),
            patient_key=key,
            patient_reference=patient,
            source=EventSource(ehr_base_url=ehr_base_url),
        )
        event.occurred_at.FromDatetime(effective)
        messages.append((key.encode(), event.SerializeToString()))
    return messages


def context_snapshots(count: int, keyer: PatientKeyer, observed_at: datetime) -> list[Message]:
    """Changelog snapshots of `count` patients, five vital signs each (one reading per feed,
    and a birth date)."""
    messages: list[Message] = []
    at = observed_at.timestamp()
    for index in range(count):
        patient = f"Patient/bench-held-{index}"
        key = keyer.patient_key(patient)
        feeds = {
            f"deterioration-risk/{feed}": (
                (at, value, f"http://loinc.org|{code}", f"Observation/bench-{index}-{code}"),
            )
            for feed, code, value in _SNAPSHOT_READINGS
        }
        body = snapshot_body(ContextSnapshot(0, key, patient, date(1950, 1, 1), feeds))
        messages.append((key.encode(), body))
    return messages
