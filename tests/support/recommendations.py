"""A Recommendation as the reasoner publishes it, for the writeback's tests and bench."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from google.protobuf.timestamp_pb2 import Timestamp

from cdsflow.contracts import Basis, Mode, ModelRef, Recommendation, Score
from cdsflow.telemetry import PatientKeyer


def keyed_recommendation(
    keyer: PatientKeyer,
    ehr_base_url: str,
    patient_id: str,
    *,
    mode: Mode.ValueType = Mode.MODE_ACTIVE,
    band: str = "high",
    value: float = 0.87,
) -> Recommendation:
    """About `Patient/<patient_id>` of `ehr_base_url`, keyed by `keyer` (a writeback's own, or
    one made from the same pseudonym key before any writeback runs), produced now."""
    reference = f"Patient/{patient_id}"
    produced_at = Timestamp()
    produced_at.FromDatetime(datetime.now(UTC))
    return Recommendation(
        recommendation_id=f"rec-{uuid.uuid4().hex}",
        event_id=f"event-{uuid.uuid4().hex}",
        patient_key=keyer.patient_key(reference),
        patient_reference=reference,
        scores=[Score(name="deterioration_risk", value=value, band=band)],
        basis=Basis(resource_references=["Observation/integration-rr"]),
        model=ModelRef(name="deterioration-gbm", version="7"),
        mode=mode,
        produced_at=produced_at,
        ehr_base_url=ehr_base_url,
    )
