"""Which key a dead-lettered message keeps (pure; the publishing is covered by integration)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any, cast

import pytest
from faststream.kafka.message import KafkaMessage

from cdsflow.contracts import dead_letter_topic
from cdsflow.service import DeadLetters, record_key


def _message(raw: Any) -> KafkaMessage:
    return cast(KafkaMessage, SimpleNamespace(raw_message=raw))


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (SimpleNamespace(key=b"patient-key"), b"patient-key"),
        (SimpleNamespace(key=None), None),
        ((SimpleNamespace(key=b"first"), SimpleNamespace(key=b"second")), b"first"),
    ],
)
def test_record_key_of_single_and_batched_records(raw: Any, expected: bytes | None) -> None:
    assert record_key(_message(raw)) == expected


def test_dead_letters_go_to_the_topics_twin() -> None:
    letters = DeadLetters(cast(Any, None), "cdsflow.recommendations.v1")
    assert letters.topic == dead_letter_topic("cdsflow.recommendations.v1")
    assert letters.topic == "cdsflow.recommendations.v1.dlq"
