from __future__ import annotations

from cdsflow.models.context_searches import context_searches

from .adapter_fixtures import AS_OF, deterioration_adapter, medication_adapter


def test_vital_signs_and_the_patient_within_the_window() -> None:
    observations, patient = context_searches(deterioration_adapter(), "Patient/p-1", AS_OF)
    params = dict(observations.params)
    assert observations.resource_type == "Observation"
    assert params["patient"] == "Patient/p-1"
    assert "code" not in params
    # combo-code: systolic 8480-6 is found inside a blood pressure panel 85354-9 too
    assert "http://loinc.org|8480-6" in params["combo-code"].split(",")
    assert len(params["combo-code"].split(",")) == 8
    dates = [value for name, value in observations.params if name == "date"]
    assert dates == ["ge2026-11-28T18:00:00Z", "le2026-11-29T18:00:00Z"]
    assert (patient.resource_type, patient.params) == ("Patient", (("_id", "p-1"),))


def test_egfr_over_ninety_days_and_metformin_orders() -> None:
    observations, medications = context_searches(medication_adapter(), "Patient/p-1", AS_OF)
    dates = [value for name, value in observations.params if name == "date"]
    assert dates == ["ge2026-08-31T18:00:00Z", "le2026-11-29T18:00:00Z"]
    assert "http://loinc.org|62238-1" in dict(observations.params)["combo-code"].split(",")
    params = dict(medications.params)
    assert medications.resource_type == "MedicationRequest"
    assert params["status"] == "active,draft"
    assert "http://www.nlm.nih.gov/research/umls/rxnorm|6809" in params["code"].split(",")
