"""Cards rendered from the adapters' templates: which cards, under 140 characters, the
basis with values and times, suggestions and override reasons; no patient identifier."""

from __future__ import annotations

from typing import Any

import numpy as np

from cdsflow.models import (
    CardRendering,
    build_model_inputs,
    interpret_outputs,
    parse_adapter,
    render_cards,
)
from cdsflow.models.card_templates import card_field_values, short_summary
from cdsflow.models.template_fields import card_fields

from .adapter_fixtures import (
    AS_OF,
    MEDICATION_SAFETY,
    deterioration_adapter,
    medication_adapter,
    medication_request,
    observation,
    patient,
)

RENDERING = CardRendering(model_version="1", patient_reference="Patient/p-1", card_id_seed="rec-1")


def _deterioration_cards(risk: float) -> list[Any]:
    adapter = deterioration_adapter()
    resources = [
        patient("1950-01-01"),
        observation("rr-1", "9279-1", 18, "/min", hours_before=12),
        observation("rr-2", "9279-1", 28, "/min", hours_before=1),
        observation("spo2", "59408-5", 140, "%", hours_before=1),
    ]
    inputs = build_model_inputs(adapter, resources, AS_OF)
    terms = np.zeros((1, 15), dtype=np.float32)
    terms[0, 0], terms[0, 7] = 0.8, 0.3
    outputs = {
        "deterioration_risk": np.array([[risk]], dtype=np.float32),
        "log_odds": np.array([[0.0]], dtype=np.float32),
        "contributions": terms,
    }
    return render_cards(adapter, inputs, interpret_outputs(adapter, inputs, outputs), RENDERING)


def test_a_low_risk_shows_no_card() -> None:
    assert _deterioration_cards(0.05) == []


def test_a_moderate_risk_shows_one_card_with_its_basis() -> None:
    (card,) = _deterioration_cards(0.15)
    assert card.summary == "Moderate risk of clinical deterioration: 15% within 24 h"
    assert card.indicator == "warning"
    assert "- Respiratory rate: 28 /min (2026-11-29 17:00 UTC) — raises the score (+0.80)" in (
        card.detail
    )
    assert "Respiratory rate trend: +10 /min (2026-11-29 06:00 UTC to 2026-11-29 17:00 UTC)" in (
        card.detail
    )
    assert "Oxygen saturation" in card.detail.split("Not observed")[1]
    assert "deterioration_risk v1" in card.detail
    assert "Patient/p-1" not in card.detail + card.summary
    hooks_card = card.as_cds_hooks()
    assert hooks_card["source"] == {"label": "cdsflow deterioration model"}
    assert [r["code"] for r in hooks_card["overrideReasons"]] == [
        "already-reviewed",
        "expected-for-condition",
        "escalation-not-appropriate",
    ]
    assert "suggestions" not in hooks_card


def test_a_high_risk_adds_the_rapid_response_suggestion() -> None:
    cards = _deterioration_cards(0.62)
    assert [card.indicator for card in cards] == ["critical", "critical"]
    assert all(len(card.summary) < 140 for card in cards)
    suggestion = cards[1].as_cds_hooks()["suggestions"][0]
    (action,) = suggestion["actions"]
    assert action["type"] == "create"
    assert action["resource"]["subject"] == {"reference": "Patient/p-1"}
    assert action["resource"]["reasonCode"][0]["text"] == (
        "Deterioration risk 62% within 24 h (deterioration_risk v1)"
    )
    assert cards[1].as_cds_hooks()["selectionBehavior"] == "at-most-one"


def test_card_ids_are_stable_per_seed_and_differ_between_cards() -> None:
    first, second = _deterioration_cards(0.62), _deterioration_cards(0.62)
    assert [c.uuid for c in first] == [c.uuid for c in second]
    assert first[0].uuid != first[1].uuid


def _medication_cards(egfr: float | None, risk: float, adapter: Any = None) -> list[Any]:
    adapter = adapter or medication_adapter()
    resources: list[dict[str, Any]] = [medication_request("met-1")]
    if egfr is not None:
        resources.append(observation("egfr", "62238-1", egfr, "mL/min/{1.73_m2}", hours_before=48))
    inputs = build_model_inputs(adapter, resources, AS_OF)
    outputs = {"medication_risk": np.array([[risk]], dtype=np.float32)}
    return render_cards(adapter, inputs, interpret_outputs(adapter, inputs, outputs), RENDERING)


def test_metformin_with_an_egfr_below_30_suggests_stopping_it() -> None:
    (card,) = _medication_cards(24.0, 1.0)
    assert card.summary == (
        "Metformin with eGFR 24: contraindicated below 30, consider stopping it"
    )
    assert card.indicator == "critical"
    assert "**24 mL/min/1.73 m² (2026-11-27 18:00 UTC)**" not in card.detail
    assert "**24 mL/min/1.73 m²** (2026-11-27 18:00 UTC)" in card.detail
    (suggestion,) = card.as_cds_hooks()["suggestions"]
    assert suggestion["label"] == "Stop metformin"
    assert suggestion["actions"] == [
        {
            "type": "delete",
            "description": "Discontinue the metformin order",
            "resourceId": ["MedicationRequest/met-1"],
        }
    ]


def test_a_card_that_requires_an_observed_egfr_is_not_shown_without_one() -> None:
    assert _medication_cards(None, 1.0) == []
    assert _medication_cards(60.0, 0.0) == []
    (review,) = _medication_cards(38.0, 0.5)
    assert review.indicator == "warning"
    assert "review the dose" in review.summary


def test_a_summary_that_a_value_makes_too_long_is_cut_under_140() -> None:
    old = "label: eGFR\n"
    old_summary = 'summary: "Metformin with eGFR {value.egfr:.0f}: review'
    text = MEDICATION_SAFETY.read_text(encoding="utf-8")
    assert old_summary in text
    long_summary = old_summary.replace("{value.egfr:.0f}", "{label.egfr} {label.egfr}")
    adapter = parse_adapter(
        text.replace(old, "label: " + "e" * 60 + "\n", 1).replace(old_summary, long_summary, 1),
        MEDICATION_SAFETY,
    )
    (card,) = _medication_cards(38.0, 0.5, adapter)
    assert len(card.summary) == 139
    assert card.summary.endswith("…")


def test_short_summary_keeps_one_line() -> None:
    assert short_summary("a\n  b") == "a b"
    assert len(short_summary("x" * 500)) == 139


def test_card_fields_are_every_field_a_template_may_use_each_worked_out_when_used() -> None:
    adapter = deterioration_adapter()
    resources = [
        patient("1950-01-01"),
        observation("rr-1", "9279-1", 18, "/min", hours_before=12),
        observation("rr-2", "9279-1", 28, "/min", hours_before=1),
    ]
    inputs = build_model_inputs(adapter, resources, AS_OF)
    outputs = {
        "deterioration_risk": np.array([[0.15]], dtype=np.float32),
        "log_odds": np.array([[-1.5]], dtype=np.float32),
        "contributions": np.zeros((1, 15), dtype=np.float32),
    }
    result = interpret_outputs(adapter, inputs, outputs)
    fields = card_field_values(adapter, inputs, result, RENDERING)
    assert set(fields) == card_fields(adapter)
    assert len(fields) == len(card_fields(adapter))
    assert fields["value.respiratory_rate"] == 28.0
    assert fields["value.respiratory_rate_trend"] == 10.0
    assert fields["unit.respiratory_rate"] == "/min"
    assert fields["label.respiratory_rate_trend"] == "Respiratory rate trend"
    assert fields["observed_at.respiratory_rate_trend"] == (
        "2026-11-29 06:00 UTC to 2026-11-29 17:00 UTC"
    )
    assert fields["value.oxygen_saturation"] == "not observed"
    assert fields["observed_at.oxygen_saturation"] == "not observed"
    assert (fields["band"], fields["band_label"]) == ("moderate", "Moderate")
    assert fields["model"] == "deterioration_risk v1"
    assert fields["patient"] == "Patient/p-1"
    assert fields["output.log_odds"] == -1.5
    assert str(fields["missing"]).startswith("Oxygen saturation")
    assert fields["refused"] == "none"
    assert str(fields["basis"]).startswith("- ")
    for unknown in ("generated_text", "value.nothing", "observations", "output.nothing", "x.y"):
        assert unknown not in fields
