"""Recommendations: bands, cards, basis, stable ids and shadow mode."""

from __future__ import annotations

from collections.abc import Collection
from datetime import timedelta

import pytest

from cdsflow.contracts import Indicator, Mode, ModelRef, Recommendation
from cdsflow.reasoner.domain.cards import CardSource
from cdsflow.reasoner.domain.model_adapter import ModelOutputs
from cdsflow.reasoner.domain.patient_context import (
    PatientContext,
    assemble_patient_context,
    trigger_readings,
)
from cdsflow.reasoner.domain.recommendation import (
    RecommendationPolicy,
    build_recommendation,
    model_mode,
    recommendation_id,
)
from cdsflow.reasoner.domain.risk_bands import RiskBand, risk_band

from .reasoner_fhir import (
    EHR_BASE_URL,
    NOW,
    PATIENT,
    blood_pressure_panel,
    clinical_event,
    observation,
)

MODEL = ModelRef(name="deterioration_score", version="1")
PRODUCED_AT = NOW + timedelta(seconds=2)
TRIGGER = observation("rr-1", "9279-1", 27)
HISTORY = [
    blood_pressure_panel("bp-1", 89, 55, effective=NOW - timedelta(minutes=15)),
    observation("hr-1", "8867-4", 125, effective=NOW - timedelta(minutes=15)),
    observation("spo2-1", "2708-6", 97, "%", effective=NOW - timedelta(hours=1)),
]


def _context() -> PatientContext:
    return assemble_patient_context(
        PATIENT,
        TRIGGER,
        trigger_readings(TRIGGER, None),
        HISTORY,
        timedelta(hours=24),
        ehr_base_url=EHR_BASE_URL,
    )


def _outputs(score: float, points: float = 8.0) -> ModelOutputs:
    per_vital_sign = dict.fromkeys(
        (
            "respiratory_rate",
            "oxygen_saturation",
            "inhaled_oxygen_concentration",
            "systolic_blood_pressure",
            "heart_rate",
            "body_temperature",
            "glasgow_coma_score",
        ),
        0.0,
    )
    per_vital_sign.update(respiratory_rate=3.0, systolic_blood_pressure=3.0, heart_rate=2.0)
    return ModelOutputs(score, points, per_vital_sign)


def _recommend(
    score: float, shadow: Collection[str] = (), model: ModelRef = MODEL, event_id: str = "event-1"
) -> Recommendation:
    policy = RecommendationPolicy(
        shadow_models=shadow,
        lookback=timedelta(hours=24),
        card_source=CardSource(label="cdsflow deterioration score"),
    )
    event = clinical_event(TRIGGER, event_id=event_id)
    return build_recommendation(event, _context(), _outputs(score), model, policy, PRODUCED_AT)


@pytest.mark.parametrize(
    ("score", "band"),
    [
        (0.0, RiskBand.LOW),
        (0.4999, RiskBand.LOW),
        (0.5, RiskBand.MEDIUM),
        (0.7999, RiskBand.MEDIUM),
        (0.8, RiskBand.HIGH),
        (1.0, RiskBand.HIGH),
    ],
)
def test_bands_follow_the_documented_thresholds(score: float, band: RiskBand) -> None:
    assert risk_band(score) is band


def test_a_high_score_becomes_a_critical_card_naming_what_contributed() -> None:
    recommendation = _recommend(0.86)
    assert [(s.name, round(s.value, 2), s.band) for s in recommendation.scores] == [
        ("deterioration_score", 0.86, "high"),
        ("early_warning_points", 8.0, ""),
    ]
    [card] = recommendation.cards
    assert card.indicator == Indicator.INDICATOR_CRITICAL
    assert card.summary == "Risk of clinical deterioration: high — review now"
    assert len(card.summary) < 140
    assert card.source_label == "cdsflow deterioration score"
    lines = card.detail.splitlines()
    assert lines[0].startswith("Deterioration score **0.86** (early warning points **8**)")
    # most points first, then model order; values in display units
    assert lines[3:6] == [
        "- Respiratory rate 27/min: 3 points",
        "- Systolic blood pressure 89 mmHg: 3 points",
        "- Heart rate 125/min: 2 points",
    ]
    assert "Oxygen saturation" not in "\n".join(lines[3:6])  # observed but 0 points
    assert lines[-1] == (
        "Not observed in the 24 h before: Inhaled oxygen concentration, Body temperature, "
        "Glasgow coma score."
    )


def test_card_text_carries_no_patient_identifier() -> None:
    [card] = _recommend(0.86).cards
    for text in (card.summary, card.detail):
        assert "p-1" not in text
        assert "Patient" not in text
        assert "k" * 32 not in text


def test_a_medium_score_warns_and_a_low_score_shows_nothing() -> None:
    [card] = _recommend(0.6).cards
    assert card.indicator == Indicator.INDICATOR_WARNING
    assert "medium" in card.summary
    low = _recommend(0.2)
    assert low.scores[0].band == "low"
    assert list(low.cards) == []


def test_the_basis_lists_every_input_and_resource() -> None:
    basis = _recommend(0.86).basis
    assert [
        (i.name, i.code, i.value, i.unit, i.resource_reference, i.observed_at.ToDatetime())
        for i in basis.inputs
    ] == [
        ("respiratory_rate", "9279-1", 27.0, "/min", "Observation/rr-1", NOW.replace(tzinfo=None)),
        (
            "oxygen_saturation",
            "2708-6",
            97.0,
            "%",
            "Observation/spo2-1",
            (NOW - timedelta(hours=1)).replace(tzinfo=None),
        ),
        (
            "systolic_blood_pressure",
            "8480-6",
            89.0,
            "mm[Hg]",
            "Observation/bp-1",
            (NOW - timedelta(minutes=15)).replace(tzinfo=None),
        ),
        (
            "heart_rate",
            "8867-4",
            125.0,
            "/min",
            "Observation/hr-1",
            (NOW - timedelta(minutes=15)).replace(tzinfo=None),
        ),
    ]
    assert list(basis.resource_references) == [
        "Observation/rr-1",
        "Observation/bp-1",
        "Observation/hr-1",
        "Observation/spo2-1",
    ]


def test_the_event_patient_model_and_ehr_are_carried_over() -> None:
    recommendation = _recommend(0.86)
    assert recommendation.event_id == "event-1"
    assert recommendation.patient_key == "k" * 32
    assert recommendation.patient_reference == PATIENT
    assert recommendation.ehr_base_url == "http://ehr.example/fhir"
    assert (recommendation.model.name, recommendation.model.version) == ("deterioration_score", "1")
    assert recommendation.mode == Mode.MODE_ACTIVE
    assert recommendation.produced_at.ToDatetime() == PRODUCED_AT.replace(tzinfo=None)


def test_ids_are_stable_per_event_and_model_version() -> None:
    first, again = _recommend(0.86), _recommend(0.86)
    assert first.recommendation_id == again.recommendation_id
    assert first.cards[0].uuid == again.cards[0].uuid
    assert first.recommendation_id == recommendation_id("event-1", MODEL)
    other_version = ModelRef(name="deterioration_score", version="2")
    assert _recommend(0.86, model=other_version).recommendation_id != first.recommendation_id
    assert _recommend(0.86, event_id="event-2").recommendation_id != first.recommendation_id
    assert first.cards[0].uuid != first.recommendation_id


@pytest.mark.parametrize(
    ("shadow", "mode"),
    [
        ((), Mode.MODE_ACTIVE),
        (("deterioration_score",), Mode.MODE_SHADOW),
        (("deterioration_score:1",), Mode.MODE_SHADOW),
        (("deterioration_score:2",), Mode.MODE_ACTIVE),
        (("sepsis_score",), Mode.MODE_ACTIVE),
    ],
)
def test_shadow_mode_by_model_or_version(shadow: tuple[str, ...], mode: Mode.ValueType) -> None:
    assert model_mode(MODEL, frozenset(shadow)) == mode


def test_a_shadow_recommendation_keeps_its_cards_for_measurement() -> None:
    recommendation = _recommend(0.86, shadow=("deterioration_score",))
    assert recommendation.mode == Mode.MODE_SHADOW
    assert len(recommendation.cards) == 1
