"""The RiskAssessment that the writeback puts into the EHR."""

from __future__ import annotations

import pytest

from cdsflow.contracts import Score
from cdsflow.fhir import validate_resource
from cdsflow.writeback.domain.risk_assessment import (
    AI_GENERATED_NOTE,
    risk_assessment_for,
    writeback_criteria,
)

from .sample_recommendations import recommendation

RISK_PROBABILITY = "http://terminology.hl7.org/CodeSystem/risk-probability"


def test_it_is_a_valid_final_risk_assessment_about_the_patient() -> None:
    resource = risk_assessment_for(recommendation(patient_id="pat-17"))

    validate_resource(resource)
    assert resource["resourceType"] == "RiskAssessment"
    assert resource["status"] == "final"
    assert resource["subject"] == {"reference": "Patient/pat-17"}
    assert resource["occurrenceDateTime"] == "2025-03-04T10:30:15Z"


def test_the_prediction_carries_the_score_and_its_qualitative_risk() -> None:
    prediction = risk_assessment_for(recommendation(value=0.83, band="high"))["prediction"]

    assert len(prediction) == 1
    assert prediction[0]["probabilityDecimal"] == pytest.approx(0.83)
    assert prediction[0]["qualitativeRisk"]["coding"] == [
        {"system": RISK_PROBABILITY, "code": "high", "display": "High likelihood"}
    ]


@pytest.mark.parametrize(
    ("band", "code"), [("low", "low"), ("medium", "moderate"), ("MODERATE", "moderate")]
)
def test_reasoner_bands_map_onto_risk_probability_codes(band: str, code: str) -> None:
    prediction = risk_assessment_for(recommendation(band=band))["prediction"][0]

    assert prediction["qualitativeRisk"]["coding"][0]["code"] == code


def test_an_unknown_band_leaves_the_qualitative_risk_out() -> None:
    prediction = risk_assessment_for(recommendation(band="purple"))["prediction"][0]

    assert "qualitativeRisk" not in prediction
    assert prediction["probabilityDecimal"] == pytest.approx(0.83)


def test_it_is_labelled_as_asserted_by_an_ai_and_says_so() -> None:
    resource = risk_assessment_for(recommendation())

    labels = {(c["system"], c["code"]) for c in resource["meta"]["security"]}
    assert ("http://terminology.hl7.org/CodeSystem/v3-ObservationValue", "AIAST") in labels
    assert resource["note"] == [{"text": AI_GENERATED_NOTE}]
    assert "AI-generated" in AI_GENERATED_NOTE
    assert resource["method"] == {"text": "deterioration-gbm 7"}


def test_it_is_identified_and_tagged_by_the_recommendation_id() -> None:
    resource = risk_assessment_for(recommendation(recommendation_id="rec-42"))

    assert resource["identifier"] == [{"system": "urn:cdsflow:recommendation", "value": "rec-42"}]
    assert {"system": "urn:cdsflow:recommendation", "code": "rec-42"} in resource["meta"]["tag"]
    assert writeback_criteria("rec-42") == "_tag=urn:cdsflow:recommendation|rec-42"


def test_the_basis_references_every_contributing_resource_once() -> None:
    resource = risk_assessment_for(
        recommendation(references=("Observation/a", "Observation/b", "Observation/a"))
    )

    assert resource["basis"] == [{"reference": "Observation/a"}, {"reference": "Observation/b"}]


def test_no_basis_member_when_the_model_names_no_resource() -> None:
    assert "basis" not in risk_assessment_for(recommendation(references=()))


def test_the_subject_is_the_recommendations_patient_reference() -> None:
    source = recommendation()
    source.patient_reference = "Patient/pat-17"

    assert risk_assessment_for(source)["subject"] == {"reference": "Patient/pat-17"}


def test_the_adapters_banded_score_wins_over_other_values_whatever_its_name() -> None:
    source = recommendation(value=0.9)
    source.scores[0].name = "contraindication"
    source.scores.insert(0, Score(name="log_odds", value=0.1))

    prediction = risk_assessment_for(source)["prediction"][0]

    assert prediction["probabilityDecimal"] == pytest.approx(0.9)
    assert prediction["qualitativeRisk"]["coding"][0]["code"] == "high"
