"""Recommendations as the reasoner publishes them, for the writeback's unit tests."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

from google.protobuf.timestamp_pb2 import Timestamp

from cdsflow.contracts import Basis, BasisInput, Card, Mode, ModelRef, Recommendation, Score
from cdsflow.telemetry import PatientKeyer

EHR_BASE_URL = "http://ehr.example.org/fhir"
PSEUDONYM_KEY = "unit-test-pseudonym-key-0123456789"
PRODUCED_AT = datetime(2025, 3, 4, 10, 30, 15, tzinfo=UTC)


def timestamp(moment: datetime) -> Timestamp:
    stamp = Timestamp()
    stamp.FromDatetime(moment)
    return stamp


def recommendation(
    *,
    recommendation_id: str = "rec-0001",
    patient_id: str = "pat-17",
    value: float = 0.83,
    band: str = "high",
    mode: Mode.ValueType = Mode.MODE_ACTIVE,
    produced_at: datetime = PRODUCED_AT,
    cards: Sequence[Card] = (),
    references: Sequence[str] = ("Observation/rr-1", "Observation/hr-1"),
) -> Recommendation:
    reference = f"Patient/{patient_id}"
    return Recommendation(
        recommendation_id=recommendation_id,
        event_id=f"event-{recommendation_id}",
        patient_key=PatientKeyer(PSEUDONYM_KEY).patient_key(reference),
        patient_reference=reference,
        scores=[Score(name="deterioration_risk", value=value, band=band)],
        cards=list(cards),
        basis=Basis(
            inputs=[
                BasisInput(
                    name="respiratory_rate",
                    code="9279-1",
                    value=28,
                    unit="/min",
                    resource_reference="Observation/rr-1",
                    observed_at=timestamp(PRODUCED_AT),
                )
            ],
            resource_references=list(references),
        ),
        model=ModelRef(name="deterioration-gbm", version="7"),
        mode=mode,
        produced_at=timestamp(produced_at),
        ehr_base_url=EHR_BASE_URL,
    )
