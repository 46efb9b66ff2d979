"""An adapter's result becomes the shared `Recommendation` message: stable ids, the band,
the basis with contributions, and cards whose JSON is the same as the rendered card's."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone

import onnxruntime
from google.protobuf.timestamp_pb2 import Timestamp

from cdsflow.contracts import Card, Mode, Recommendation
from cdsflow.models import ModelInputs, ModelResult, build_model_inputs, interpret_outputs
from cdsflow.models.card_templates import CardRendering, RenderedCard, render_cards
from cdsflow.models.recommendation_messages import (
    RecommendationSubject,
    basis_message,
    card_json,
    card_message,
    recommendation_id,
    recommendation_message,
    timestamp_message,
)
from cdsflow.models.tensor_specs import declared_outputs

from .adapter_fixtures import AS_OF, REPO_ROOT, deterioration_adapter, observation, patient

MODEL = REPO_ROOT / "models" / "deterioration_risk" / "1" / "model.onnx"
ADAPTER = deterioration_adapter()
SUBJECT = RecommendationSubject(
    event_id="event-1",
    patient_key="pk-1",
    patient_reference="Patient/p1",
    ehr_base_url="http://ehr.test/fhir",
    produced_at=datetime(2026, 11, 29, 18, 1, tzinfo=UTC),
    trace_id="0af7651916cd43dd8448eb211c80319c",
)


def _sick_patient_result() -> tuple[ModelInputs, ModelResult]:
    charted = [
        ("9279-1", 26, "/min"),
        ("59408-5", 90, "%"),
        ("3150-0", 40, "%"),
        ("8480-6", 95, "mm[Hg]"),
        ("8867-4", 125, "/min"),
        ("8310-5", 38.5, "Cel"),
        ("9269-2", 14, "{score}"),
    ]
    resources = [patient("1940-01-01")]
    resources += [observation(f"o-{i}", c, v, u) for i, (c, v, u) in enumerate(charted)]
    inputs = build_model_inputs(ADAPTER, resources, AS_OF)
    session = onnxruntime.InferenceSession(str(MODEL), providers=["CPUExecutionProvider"])
    names = [spec.name for spec in declared_outputs(ADAPTER)]
    answers = session.run(names, dict(inputs.tensors))
    return inputs, interpret_outputs(ADAPTER, inputs, dict(zip(names, answers, strict=True)))


def test_a_high_risk_result_becomes_a_recommendation_with_its_cards_and_basis() -> None:
    inputs, result = _sick_patient_result()
    message = recommendation_message(
        ADAPTER, inputs, result, model_version="1", mode="shadow", subject=SUBJECT
    )
    assert message.recommendation_id == recommendation_id("event-1", "deterioration-risk", "1")
    assert message.adapter_id == "deterioration-risk"
    assert message.mode == Mode.MODE_SHADOW
    assert (message.model.name, message.model.version) == ("deterioration_risk", "1")
    assert message.trace_id == SUBJECT.trace_id
    score = message.scores[0]
    assert (score.name, score.band) == ("deterioration_risk", "high")
    assert score.value == result.score
    assert {s.name for s in message.scores[1:]} == {"log_odds"}
    # every observed input (7 latest values and age; no trend from one value each), with its
    # contribution and label, and the resources behind them
    assert len(message.basis.inputs) == 8
    first = message.basis.inputs[0]
    assert first.HasField("contribution")
    assert first.label
    assert "Observation/o-0" in message.basis.resource_references
    assert {i.name for i in message.basis.inputs} >= {"respiratory_rate", "age"}
    # the message survives the wire
    assert Recommendation.FromString(message.SerializeToString()) == message


def test_the_event_received_time_is_carried_only_when_there_is_one() -> None:
    inputs, result = _sick_patient_result()
    received = Timestamp(seconds=1_790_000_000, nanos=250_000_000)

    def message_for(subject: RecommendationSubject) -> Recommendation:
        return recommendation_message(
            ADAPTER, inputs, result, model_version="1", mode="active", subject=subject
        )

    assert message_for(replace(SUBJECT, received_at=received)).event_received_at == received
    # on demand there is no event: no start for the end-to-end latency
    assert not message_for(SUBJECT).HasField("event_received_at")


def test_cards_come_back_as_the_same_cds_hooks_json() -> None:
    inputs, result = _sick_patient_result()
    rec_id = recommendation_id("event-1", "deterioration-risk", "1")
    rendered = render_cards(
        ADAPTER, inputs, result, CardRendering("1", "Patient/p1", card_id_seed=rec_id)
    )
    message = recommendation_message(
        ADAPTER, inputs, result, model_version="1", mode="active", subject=SUBJECT
    )
    assert len(rendered) == 2  # the risk card and the rapid-response suggestion card
    assert [card_json(card) for card in message.cards] == [c.as_cds_hooks() for c in rendered]
    suggestion = card_json(message.cards[1])["suggestions"][0]
    assert suggestion["actions"][0]["resource"]["subject"] == {"reference": "Patient/p1"}
    assert card_json(message.cards[0])["overrideReasons"][0]["code"] == "already-reviewed"


def test_ids_differ_per_adapter_and_version_and_repeat_per_event() -> None:
    ids = {
        recommendation_id("e", "deterioration-risk", "1"),
        recommendation_id("e", "deterioration-risk", "2"),
        recommendation_id("e", "medication-safety", "1"),
    }
    assert len(ids) == 3
    assert recommendation_id("e", "deterioration-risk", "1") == recommendation_id(
        "e", "deterioration-risk", "1"
    )


def test_a_delete_suggestion_keeps_every_resource_it_names() -> None:
    card = RenderedCard(
        uuid="card-1",
        summary="Metformin with eGFR 24",
        indicator="critical",
        detail="Stop it.",
        source={"label": "cdsflow medication safety"},
        suggestions=[
            {
                "label": "Stop metformin",
                "uuid": "suggestion-1",
                "isRecommended": True,
                "actions": [
                    {
                        "type": "delete",
                        "description": "Stop the metformin orders",
                        "resourceId": ["MedicationRequest/a", "MedicationRequest/b"],
                    }
                ],
            }
        ],
        selection_behavior="at-most-one",
    )
    message = card_message(card)
    assert list(message.suggestions[0].actions[0].resource_ids) == [
        "MedicationRequest/a",
        "MedicationRequest/b",
    ]
    assert card_json(Card.FromString(message.SerializeToString())) == card.as_cds_hooks()


def test_timestamps_are_the_ones_protobuf_makes_from_the_datetime() -> None:
    east = timezone(timedelta(hours=5, minutes=30))
    for when in (
        datetime(2026, 11, 29, 18, 1, 2, 345678, tzinfo=UTC),
        datetime(2026, 11, 29, 18, 1, 2, 345678, tzinfo=east),
        datetime(2026, 11, 29, 18, 1, 2, 345678),  # naive: taken as UTC
        datetime(1969, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
        datetime(1900, 2, 28, 0, 0, 0, 1, tzinfo=east),
    ):
        expected = Timestamp()
        expected.FromDatetime(when)
        assert timestamp_message(when) == expected


def test_the_basis_carries_each_input_time_and_contribution_only_when_there_is_one() -> None:
    inputs, result = _sick_patient_result()
    basis = basis_message(result)
    by_name = {i.name: i for i in basis.inputs}
    assert not by_name["age"].HasField("observed_at")  # from the birth date: no time
    heart_rate = by_name["heart_rate"]
    assert (
        heart_rate.observed_at.ToDatetime(tzinfo=UTC)
        == inputs.extracted.column("heart_rate").readings[-1].observed_at
    )
    assert all(i.HasField("contribution") for i in basis.inputs)
    without_contributions = replace(
        result, basis=tuple(replace(b, contribution=None) for b in result.basis)
    )
    assert not any(i.HasField("contribution") for i in basis_message(without_contributions).inputs)
