"""The CDS Hooks 2.0.1 spec's feedback examples (pack: cds-hooks/examples/spec-2.0.1/feedback-*)
against the writeback's feedback rules and the Feedback event made from them."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from cdsflow.contracts import FeedbackOutcome
from cdsflow.writeback.domain.feedback_events import feedback_event, reason_label
from cdsflow.writeback.domain.feedback_requests import OverrideReason, parse_feedback_request

pytestmark = pytest.mark.conformance

SPEC_EXAMPLES = Path("cds-hooks/examples/spec-2.0.1")
RECEIVED = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


def example(conformance_dir: Path, name: str) -> bytes:
    return (conformance_dir / SPEC_EXAMPLES / name).read_bytes()


def test_the_accepted_example_is_taken_with_its_suggestion(conformance_dir: Path) -> None:
    (entry,) = parse_feedback_request(example(conformance_dir, "feedback-accepted.json"))

    assert entry.card_uuid == "4e0a3a1e-3283-4575-ab82-028d55fe2719"
    assert entry.outcome == "accepted"
    assert entry.accepted_suggestions == ("e56e1945-20b3-4393-8503-a1a20fd73152",)
    assert entry.outcome_at == datetime(2021, 12, 11, 10, 5, 31, tzinfo=UTC)
    event = feedback_event(entry, cds_service="s", received_at=RECEIVED, shown=None)
    assert event.outcome == FeedbackOutcome.FEEDBACK_OUTCOME_ACCEPTED
    assert list(event.accepted_suggestions) == ["e56e1945-20b3-4393-8503-a1a20fd73152"]
    assert reason_label(event) == "none"


def test_the_overridden_example_with_a_reason_keeps_the_coding_not_the_comment(
    conformance_dir: Path,
) -> None:
    raw = example(conformance_dir, "feedback-overridden-with-reason.json")
    (entry,) = parse_feedback_request(raw)

    assert entry.outcome == "overridden"
    assert entry.override_reason == OverrideReason(
        system="https://example.com/cds-hooks/override-reason-system", code="d7ecf885"
    )
    event = feedback_event(entry, cds_service="s", received_at=RECEIVED, shown=None)
    assert event.override_reason_code == "d7ecf885"
    assert reason_label(event) == "d7ecf885"
    assert b"A comment entered by the clinician" not in event.SerializeToString()


def test_the_overridden_example_without_a_reason_is_taken(conformance_dir: Path) -> None:
    (entry,) = parse_feedback_request(example(conformance_dir, "feedback-overridden.json"))

    assert entry.outcome == "overridden"
    assert entry.override_reason is None
    assert entry.card_uuid == "f6b95768-b1c8-40dc-8385-bf3504b82ffb"
