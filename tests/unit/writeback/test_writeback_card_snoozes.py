"""Which cards a snooze hides, and for how long; which feedback is already recorded."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from cdsflow.writeback.domain.card_snoozes import CardSnoozes
from cdsflow.writeback.domain.recorded_feedback import RecordedFeedback

NOW = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


def test_a_snooze_hides_cards_up_to_its_indicator_until_it_ends() -> None:
    snoozes = CardSnoozes()
    snoozes.snooze("patient-a", NOW + timedelta(hours=1), "warning")

    assert snoozes.hides("patient-a", "warning", NOW)
    assert snoozes.hides("patient-a", "info", NOW)
    assert not snoozes.hides("patient-a", "critical", NOW)  # the indicator rose
    assert not snoozes.hides("patient-a", "warning", NOW + timedelta(hours=1))
    assert not snoozes.hides("patient-b", "info", NOW)


def test_a_shorter_or_lower_snooze_never_weakens_the_held_one() -> None:
    snoozes = CardSnoozes()
    snoozes.snooze("patient-a", NOW + timedelta(hours=2), "critical")
    snoozes.snooze("patient-a", NOW + timedelta(minutes=5), "info")  # redelivered older feedback

    assert snoozes.hides("patient-a", "critical", NOW + timedelta(hours=1))


def test_snoozes_are_bounded_and_ignore_unknown_indicators() -> None:
    snoozes = CardSnoozes(max_patients=1)
    snoozes.snooze("patient-a", NOW + timedelta(hours=1), "warning")
    snoozes.snooze("patient-b", NOW + timedelta(hours=1), "warning")
    snoozes.snooze("patient-c", NOW + timedelta(hours=1), "urgent")

    assert len(snoozes) == 1
    assert not snoozes.hides("patient-a", "warning", NOW)
    assert snoozes.hides("patient-b", "warning", NOW)
    with pytest.raises(ValueError, match="at least 1"):
        CardSnoozes(max_patients=0)


def test_recorded_feedback_is_bounded_oldest_first() -> None:
    recorded = RecordedFeedback(max_ids=2)
    for feedback_id in ("f-1", "f-2", "f-3"):
        recorded.record(feedback_id)

    assert len(recorded) == 2
    assert "f-1" not in recorded
    assert "f-3" in recorded
    with pytest.raises(ValueError, match="at least 1"):
        RecordedFeedback(max_ids=0)
