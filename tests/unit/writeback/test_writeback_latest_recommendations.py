"""The latest-recommendation-per-patient store."""

from __future__ import annotations

from datetime import timedelta

import pytest
from opentelemetry.trace import SpanContext, TraceFlags

from cdsflow.contracts import Card, Mode
from cdsflow.writeback.domain.latest_recommendations import LatestRecommendations, stored

from .sample_recommendations import PRODUCED_AT, recommendation

EARLIER = PRODUCED_AT - timedelta(minutes=5)
LATER = PRODUCED_AT + timedelta(minutes=5)


def test_a_newer_recommendation_replaces_the_held_one() -> None:
    store = LatestRecommendations()
    first = recommendation(recommendation_id="first", produced_at=PRODUCED_AT)
    second = recommendation(recommendation_id="second", produced_at=LATER)

    assert store.keep(stored(first))
    assert store.keep(stored(second))

    held = store.latest_active(first.patient_key)
    assert held is not None
    assert held.recommendation.recommendation_id == "second"


def test_an_older_recommendation_never_replaces_a_newer_one() -> None:
    store = LatestRecommendations()
    newer = recommendation(recommendation_id="newer", produced_at=LATER)
    older = recommendation(recommendation_id="older", produced_at=EARLIER)

    store.keep(stored(newer))
    assert not store.keep(stored(older))

    held = store.latest_active(newer.patient_key)
    assert held is not None
    assert held.recommendation.recommendation_id == "newer"


def test_a_redelivered_recommendation_is_kept_again() -> None:
    store = LatestRecommendations()
    source = recommendation()

    assert store.keep(stored(source))
    assert store.keep(stored(source))
    assert len(store) == 1


def test_patients_are_kept_apart() -> None:
    store = LatestRecommendations()
    one = recommendation(patient_id="one", recommendation_id="r-one")
    two = recommendation(patient_id="two", recommendation_id="r-two")

    store.keep(stored(one))
    store.keep(stored(two))

    held_one = store.latest_active(one.patient_key)
    assert held_one is not None
    assert held_one.recommendation.recommendation_id == "r-one"
    assert store.latest_active("no-such-patient-key") is None


def test_a_shadow_recommendation_never_hides_the_active_one() -> None:
    store = LatestRecommendations()
    active = recommendation(recommendation_id="active", produced_at=PRODUCED_AT)
    shadow = recommendation(recommendation_id="shadow", mode=Mode.MODE_SHADOW, produced_at=LATER)

    store.keep(stored(active))
    store.keep(stored(shadow))

    held_active = store.latest_active(active.patient_key)
    held_shadow = store.latest_shadow(active.patient_key)
    assert held_active is not None
    assert held_active.recommendation.recommendation_id == "active"
    assert held_shadow is not None
    assert held_shadow.recommendation.recommendation_id == "shadow"


def test_a_shadow_only_patient_has_nothing_to_show() -> None:
    store = LatestRecommendations()
    shadow = recommendation(mode=Mode.MODE_SHADOW)

    store.keep(stored(shadow))

    assert store.latest_active(shadow.patient_key) is None


def test_the_trace_context_is_kept_with_the_recommendation() -> None:
    store = LatestRecommendations()
    context = SpanContext(
        trace_id=0x1234, span_id=0x5678, is_remote=False, trace_flags=TraceFlags(TraceFlags.SAMPLED)
    )
    source = recommendation()

    store.keep(stored(source, context))

    held = store.latest_active(source.patient_key)
    assert held is not None
    assert held.trace_link == context


def test_past_its_bound_the_patient_updated_longest_ago_is_forgotten() -> None:
    store = LatestRecommendations(max_patients=2)
    first, second, third = (recommendation(patient_id=p) for p in ("a", "b", "c"))

    store.keep(stored(first))
    store.keep(stored(second))
    store.keep(stored(first))  # first is now the most recently updated
    store.keep(stored(third))

    assert len(store) == 2
    assert store.latest_active(second.patient_key) is None
    assert store.latest_active(first.patient_key) is not None
    assert store.latest_active(third.patient_key) is not None


def test_the_bound_must_allow_one_patient() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        LatestRecommendations(max_patients=0)


def test_a_recommendation_past_the_max_age_is_neither_kept_nor_served() -> None:
    now = PRODUCED_AT + timedelta(hours=2)
    store = LatestRecommendations(max_age=timedelta(hours=1), clock=lambda: now)
    stale = recommendation(patient_id="stale", produced_at=PRODUCED_AT)
    fresh = recommendation(patient_id="fresh", produced_at=now - timedelta(minutes=59))

    assert not store.keep(stored(stale))
    assert store.keep(stored(fresh))
    assert store.latest_active(stale.patient_key) is None
    assert store.latest_active(fresh.patient_key) is not None


def test_a_held_recommendation_stops_being_served_once_it_ages_past_the_max_age() -> None:
    moments = [PRODUCED_AT]
    store = LatestRecommendations(max_age=timedelta(hours=1), clock=lambda: moments[-1])
    source = recommendation(produced_at=PRODUCED_AT)
    store.keep(stored(source))

    moments.append(PRODUCED_AT + timedelta(minutes=61))

    assert store.latest_active(source.patient_key) is None


def test_a_store_is_not_rebuilt_until_told() -> None:
    assert LatestRecommendations().rebuilt is False
    with pytest.raises(ValueError, match="max_age"):
        LatestRecommendations(max_age=timedelta(0))


def test_each_adapter_has_its_own_latest_for_a_patient() -> None:
    store = LatestRecommendations()
    deterioration = recommendation(recommendation_id="rec-d")
    medication = recommendation(recommendation_id="rec-m")
    medication.adapter_id = "medication-safety"
    store.keep(stored(deterioration))
    store.keep(stored(medication))

    held_d = store.latest_active(deterioration.patient_key, "deterioration-risk")
    held_m = store.latest_active(deterioration.patient_key, "medication-safety")
    assert held_d is not None
    assert held_d.recommendation.recommendation_id == "rec-d"
    assert held_m is not None
    assert held_m.recommendation.recommendation_id == "rec-m"
    assert store.latest_active(deterioration.patient_key, "sepsis") is None
    assert len(store) == 1


def test_cards_scored_on_demand_are_findable_without_becoming_the_latest() -> None:
    store = LatestRecommendations()
    scored = recommendation(recommendation_id="rec-on-demand", cards=[Card(uuid="c-9")])

    store.remember_cards(stored(scored))

    assert store.showing_card("c-9") is not None
    assert store.latest_active(scored.patient_key) is None
