"""Which consumed recommendations the writeback accepts, and which EHR failures it retries."""

from __future__ import annotations

import httpx
import pytest

from cdsflow.contracts import Mode, Recommendation
from cdsflow.fhir import EhrError, is_ehr_outage
from cdsflow.writeback.domain.recommendations import (
    comes_from_ehr,
    is_active,
    may_be_kept,
    mode_name,
    recommendation_problems,
    seconds_since_received,
)

from .sample_recommendations import EHR_BASE_URL, recommendation


def test_a_complete_recommendation_has_no_problems() -> None:
    assert recommendation_problems(recommendation()) == []


def test_an_empty_message_lists_every_missing_field() -> None:
    problems = recommendation_problems(Recommendation())

    assert problems == [
        "recommendation_id is empty",
        "patient_key is empty",
        "patient_reference is not a Patient reference of the form Patient/<id>",
        "produced_at is missing",
        "scores is empty",
    ]


@pytest.mark.parametrize("value", [-0.1, 1.5])
def test_a_score_that_is_not_a_probability_is_refused(value: float) -> None:
    assert recommendation_problems(recommendation(value=value)) == [
        "the score is not a probability between 0 and 1"
    ]


def test_problems_never_quote_the_patient_reference() -> None:
    source = recommendation()
    source.patient_reference = "Observation/secret-id-123"

    problems = recommendation_problems(source)

    assert problems == ["patient_reference is not a Patient reference of the form Patient/<id>"]
    assert not any("secret-id-123" in problem for problem in problems)


def test_only_active_mode_is_active() -> None:
    assert is_active(recommendation(mode=Mode.MODE_ACTIVE))
    assert not is_active(recommendation(mode=Mode.MODE_SHADOW))
    assert not is_active(recommendation(mode=Mode.MODE_UNSPECIFIED))
    assert mode_name(recommendation(mode=Mode.MODE_SHADOW)) == "shadow"


def test_a_recommendation_from_another_ehr_is_not_ours() -> None:
    source = recommendation()

    assert comes_from_ehr(source, EHR_BASE_URL + "/")
    source.ehr_base_url = "http://other-ehr.example.org/fhir"
    assert not comes_from_ehr(source, EHR_BASE_URL)
    source.ehr_base_url = ""
    assert comes_from_ehr(source, EHR_BASE_URL)


@pytest.mark.parametrize(
    ("failure", "outage"),
    [
        (httpx.ConnectError("refused"), True),
        (httpx.ReadTimeout("slow"), True),
        (EhrError("EHR answered 503", 503), True),
        (EhrError("EHR answered 429", 429), True),
        (EhrError("EHR answered 408", 408), True),
        (EhrError("EHR answered 400", 400), False),
        (EhrError("EHR answered 412", 412), False),
        (EhrError("not a FHIR resource", 200), False),
        (EhrError("EHR answered 502", 502), True),
        (ValueError("bad JSON"), False),
    ],
)
def test_only_outages_are_redelivered(failure: Exception, outage: bool) -> None:
    assert is_ehr_outage(failure) is outage


def test_only_valid_recommendations_from_our_ehr_may_enter_the_card_state() -> None:
    assert may_be_kept(recommendation(), EHR_BASE_URL)
    assert not may_be_kept(Recommendation(recommendation_id="broken"), EHR_BASE_URL)
    foreign = recommendation()
    foreign.ehr_base_url = "http://other-ehr.example.org/fhir"
    assert not may_be_kept(foreign, EHR_BASE_URL)


def test_seconds_since_received_counts_from_the_listener_receiving_the_change() -> None:
    message = Recommendation()
    assert seconds_since_received(message, 1_000.0) is None  # from before the field existed
    message.event_received_at.seconds = 990
    message.event_received_at.nanos = 500_000_000
    assert seconds_since_received(message, 1_000.0) == pytest.approx(9.5)
    # a clock behind the listener's is no negative latency
    assert seconds_since_received(message, 980.0) == 0.0
