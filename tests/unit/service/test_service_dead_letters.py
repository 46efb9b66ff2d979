"""Where dead letters go (pure; the publishing is covered by integration)."""

from __future__ import annotations

from typing import Any, cast

from cdsflow.contracts import dead_letter_topic
from cdsflow.service import DeadLetters


def test_dead_letters_go_to_the_topics_twin() -> None:
    letters = DeadLetters(cast(Any, None), "cdsflow.recommendations.v1")
    assert letters.topic == dead_letter_topic("cdsflow.recommendations.v1")
    assert letters.topic == "cdsflow.recommendations.v1.dlq"
