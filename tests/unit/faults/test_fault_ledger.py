"""The fault matrix's ledger: what counts as lost, duplicated, or only a redelivered copy."""

from __future__ import annotations

from cdsflow.contracts import (
    CLINICAL_EVENTS,
    RECOMMENDATIONS,
    ClinicalEvent,
    Mode,
    ModelRef,
    Recommendation,
    dead_letter_topic,
)
from tests.support.fault_pipeline import active_recommendation_ids, ledger_of
from tests.support.topic_tally import TopicTally, change_key


def event(resource_id: str, version: str = "1") -> ClinicalEvent:
    return ClinicalEvent(
        event_id=f"event-{resource_id}-{version}",
        resource_type="Observation",
        resource_id=resource_id,
        resource_version=version,
    )


def recommendation(event_id: str, version: str = "1", active: bool = True) -> Recommendation:
    return Recommendation(
        recommendation_id=f"rec-{event_id}-{version}",
        event_id=event_id,
        adapter_id="deterioration-risk",
        model=ModelRef(name="deterioration_risk", version=version),
        mode=Mode.MODE_ACTIVE if active else Mode.MODE_SHADOW,
    )


def tally_of(*events: ClinicalEvent, copies: int = 1) -> TopicTally:
    tally = TopicTally()
    for each in events:
        for _ in range(copies):
            tally.record(CLINICAL_EVENTS, each.SerializeToString())
            tally.record(RECOMMENDATIONS, recommendation(each.event_id).SerializeToString())
    return tally


def test_each_change_once_at_every_hop_is_neither_lost_nor_duplicated() -> None:
    tally = tally_of(event("a"), event("b"))
    changes = [change_key("Observation", name, "1") for name in ("a", "b")]
    writes = dict.fromkeys(active_recommendation_ids(tally, changes), 1)
    ledger = ledger_of(tally, changes, writes)
    assert (ledger.changes, ledger.events, ledger.recommendations, ledger.ehr_writes) == (
        2,
        2,
        2,
        2,
    )
    assert (ledger.lost, ledger.duplicated) == (0, 0)


def test_redelivered_copies_are_counted_apart_from_effects() -> None:
    tally = tally_of(event("a"), copies=3)
    changes = [change_key("Observation", "a", "1")]
    ledger = ledger_of(tally, changes, {"rec-event-a-1-1": 1})
    assert (ledger.event_copies, ledger.recommendation_copies) == (2, 2)
    assert (ledger.lost, ledger.duplicated) == (0, 0)


def test_a_change_without_event_and_an_unwritten_recommendation_are_lost() -> None:
    tally = tally_of(event("a"))
    changes = [change_key("Observation", name, "1") for name in ("a", "b")]
    ledger = ledger_of(tally, changes, {})
    assert (ledger.missing_events, ledger.active_without_write, ledger.lost) == (1, 1, 2)


def test_an_event_without_recommendation_is_lost() -> None:
    tally = TopicTally()
    tally.record(CLINICAL_EVENTS, event("a").SerializeToString())
    ledger = ledger_of(tally, [change_key("Observation", "a", "1")], {})
    assert ledger.events_without_recommendation == 1
    assert ledger.lost == 1


def test_two_writes_two_events_or_two_recommendations_of_one_model_version_are_duplicates() -> None:
    tally = tally_of(event("a"))
    # the same change published under a second event id
    second = event("a")
    second.event_id = "event-a-again"
    tally.record(CLINICAL_EVENTS, second.SerializeToString())
    other = recommendation("event-a-again")
    tally.record(RECOMMENDATIONS, other.SerializeToString())
    tally.record(
        RECOMMENDATIONS,
        Recommendation(
            recommendation_id="rec-other-id",
            event_id="event-a-again",
            adapter_id="deterioration-risk",
            model=ModelRef(name="deterioration_risk", version="1"),
            mode=Mode.MODE_ACTIVE,
        ).SerializeToString(),
    )
    writes = {"rec-event-a-1-1": 2, other.recommendation_id: 1, "rec-other-id": 1}
    ledger = ledger_of(tally, [change_key("Observation", "a", "1")], writes)
    assert ledger.changes_with_several_events == 1
    assert ledger.extra_recommendations == 1
    assert ledger.active_with_several_writes == 1
    assert ledger.duplicated == 3


def test_shadow_recommendations_owe_no_write() -> None:
    tally = TopicTally()
    tally.record(CLINICAL_EVENTS, event("a").SerializeToString())
    tally.record(RECOMMENDATIONS, recommendation("event-a-1", active=False).SerializeToString())
    ledger = ledger_of(tally, [change_key("Observation", "a", "1")], {})
    assert (ledger.active_recommendations, ledger.lost) == (0, 0)


def test_undecodable_messages_and_dead_letters_are_kept_apart() -> None:
    tally = TopicTally()
    tally.record(CLINICAL_EVENTS, b"not a protobuf: poison")
    tally.record(dead_letter_topic(CLINICAL_EVENTS), b"not a protobuf: poison")
    assert tally.undecodable == {CLINICAL_EVENTS: [b"not a protobuf: poison"]}
    assert tally.dead_letter_count() == {dead_letter_topic(CLINICAL_EVENTS): 1}
    assert not tally.event_ids_of_change
