"""The `Recommendation` a deterioration score becomes: scores, cards, basis, model, mode."""

from __future__ import annotations

import uuid
from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime, timedelta

from google.protobuf.timestamp_pb2 import Timestamp

from cdsflow.contracts import (
    Basis,
    BasisInput,
    ClinicalEvent,
    Mode,
    ModelRef,
    Recommendation,
    Score,
)
from cdsflow.reasoner.domain.cards import CardSource, deterioration_cards
from cdsflow.reasoner.domain.model_adapter import ModelOutputs
from cdsflow.reasoner.domain.patient_context import PatientContext
from cdsflow.reasoner.domain.risk_bands import risk_band
from cdsflow.reasoner.domain.vital_signs import VITAL_SIGNS

_RECOMMENDATION_NAMESPACE = uuid.UUID("0d6c8f1e-3b7a-5e2c-8a4f-9b1d2c3e4f50")


@dataclass(frozen=True)
class RecommendationPolicy:
    """How recommendations are shaped in this deployment."""

    # model names ("deterioration_score") or name:version pairs ("deterioration_score:2")
    shadow_models: Collection[str]
    lookback: timedelta
    card_source: CardSource


def recommendation_id(event_id: str, model: ModelRef) -> str:
    """Stable: the same event answered by the same model version gives the same id."""
    return str(uuid.uuid5(_RECOMMENDATION_NAMESPACE, f"{event_id}\n{model.name}\n{model.version}"))


def model_mode(model: ModelRef, shadow_models: Collection[str]) -> Mode.ValueType:
    """SHADOW when the model, or this version of it, is configured as shadow."""
    if model.name in shadow_models or f"{model.name}:{model.version}" in shadow_models:
        return Mode.MODE_SHADOW
    return Mode.MODE_ACTIVE


def build_recommendation(
    event: ClinicalEvent,
    context: PatientContext,
    outputs: ModelOutputs,
    model: ModelRef,
    policy: RecommendationPolicy,
    produced_at: datetime,
) -> Recommendation:
    """Everything downstream needs to show (or, in shadow mode, only record) the score.

    Shadow recommendations carry their cards too, so that what would have been shown can be
    measured; writeback never shows them.
    """
    rec_id = recommendation_id(event.event_id, model)
    band = risk_band(outputs.deterioration_score)
    produced = Timestamp()
    produced.FromDatetime(produced_at)
    return Recommendation(
        recommendation_id=rec_id,
        event_id=event.event_id,
        patient_key=event.patient_key,
        patient_reference=context.patient_reference,
        scores=[
            Score(name="deterioration_score", value=outputs.deterioration_score, band=band.value),
            Score(name="early_warning_points", value=outputs.early_warning_points),
        ],
        cards=deterioration_cards(
            rec_id, band, outputs, context, policy.lookback, policy.card_source
        ),
        basis=recommendation_basis(context),
        model=ModelRef(name=model.name, version=model.version),
        mode=model_mode(model, policy.shadow_models),
        produced_at=produced,
        ehr_base_url=event.source.ehr_base_url,
    )


def recommendation_basis(context: PatientContext) -> Basis:
    """Every model input that was observed, in model order, and every resource it came from."""
    inputs = []
    for vital_sign in VITAL_SIGNS:
        reading = context.readings.get(vital_sign.name)
        if reading is None:
            continue
        observed = Timestamp()
        observed.FromDatetime(reading.observed_at)
        inputs.append(
            BasisInput(
                name=reading.name,
                code=reading.code,
                value=reading.value,
                unit=reading.unit,
                resource_reference=reading.resource_reference,
                observed_at=observed,
            )
        )
    return Basis(inputs=inputs, resource_references=context.resource_references())
