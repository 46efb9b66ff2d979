"""Validation of a CDS Hooks 2.0 feedback request (`POST /cds-services/{id}/feedback`).

`{"feedback": [entry, ...]}`, each entry: `card` (the card's uuid), `outcome` (`accepted` or
`overridden`), `acceptedSuggestions` (`[{"id": ...}]`, required when accepted),
`overrideReason` (optional: `reason`, a Coding, and/or `userComment`), `outcomeTimestamp`
(RFC 3339). Problems name the entry and member at fault and never echo a value. The
clinician's `userComment` is free text: it is checked for its type and never kept.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from cdsflow.fhir import MalformedJson, parse_json_document
from cdsflow.writeback.domain.hook_requests import InvalidHookRequest

ACCEPTED = "accepted"
OVERRIDDEN = "overridden"
# entries in one request; a batch beyond it is refused rather than half taken
MAX_ENTRIES = 100
_FEEDBACK_NAMESPACE = uuid.UUID("5b3c3f0e-27a4-5a43-9a3c-3f8c1f0d2a61")
_RFC3339 = re.compile(r"\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})")
_BOUNDED_TEXT = 256


@dataclass(frozen=True)
class OverrideReason:
    system: str
    code: str


@dataclass(frozen=True)
class FeedbackEntry:
    card_uuid: str
    outcome: str
    outcome_at: datetime
    accepted_suggestions: tuple[str, ...] = ()
    override_reason: OverrideReason | None = None

    @property
    def feedback_id(self) -> str:
        """The same for a repeated delivery of this entry (card, outcome, outcome time)."""
        moment = self.outcome_at.astimezone(UTC).isoformat()
        return str(uuid.uuid5(_FEEDBACK_NAMESPACE, f"{self.card_uuid}|{self.outcome}|{moment}"))


def parse_feedback_request(raw: bytes) -> list[FeedbackEntry]:
    """Parse and validate the body; raise `InvalidHookRequest` listing every problem."""
    try:
        body = parse_json_document(raw)
    except MalformedJson as exc:
        raise InvalidHookRequest([exc.description], exc.reason) from None
    if not isinstance(body, dict):
        raise InvalidHookRequest(["the body is not a JSON object"])
    entries = body.get("feedback")
    if not isinstance(entries, list) or not entries:
        raise InvalidHookRequest(["'feedback' is required and must be a non-empty array"])
    if len(entries) > MAX_ENTRIES:
        raise InvalidHookRequest([f"'feedback' holds more than {MAX_ENTRIES} entries"])
    problems: list[str] = []
    parsed: list[FeedbackEntry] = []
    for index, entry in enumerate(entries):
        entry_problems, feedback = _entry(entry, f"feedback[{index}]")
        problems.extend(entry_problems)
        if feedback is not None:
            parsed.append(feedback)
    if problems:
        raise InvalidHookRequest(problems)
    return parsed


def _entry(entry: Any, where: str) -> tuple[list[str], FeedbackEntry | None]:
    if not isinstance(entry, dict):
        return [f"'{where}' must be an object"], None
    problems: list[str] = []
    card = entry.get("card")
    if not _bounded_string(card):
        problems.append(f"'{where}.card' is required and must be the card's uuid")
    outcome = entry.get("outcome")
    if outcome not in (ACCEPTED, OVERRIDDEN):
        problems.append(f"'{where}.outcome' must be '{ACCEPTED}' or '{OVERRIDDEN}'")
    outcome_at = _timestamp(entry.get("outcomeTimestamp"))
    if outcome_at is None:
        problems.append(f"'{where}.outcomeTimestamp' is required, an RFC 3339 date-time")
    suggestions = _accepted_suggestions(entry.get("acceptedSuggestions"))
    if suggestions is None:
        problems.append(f"'{where}.acceptedSuggestions' must be an array of {{\"id\": string}}")
    elif outcome == ACCEPTED and not suggestions:
        problems.append(f"'{where}.acceptedSuggestions' is required when the outcome is accepted")
    reason_problems, reason = _override_reason(entry.get("overrideReason"), where)
    problems.extend(reason_problems)
    if problems:
        return problems, None
    assert isinstance(card, str)
    assert isinstance(outcome, str)
    assert outcome_at is not None
    return [], FeedbackEntry(
        card_uuid=card,
        outcome=outcome,
        outcome_at=outcome_at,
        accepted_suggestions=tuple(suggestions or ()),
        override_reason=reason,
    )


def _bounded_string(value: Any) -> bool:
    return isinstance(value, str) and 0 < len(value) <= _BOUNDED_TEXT


def _timestamp(value: Any) -> datetime | None:
    if not isinstance(value, str) or not _RFC3339.fullmatch(value):
        return None
    try:
        return datetime.fromisoformat(value.replace("z", "Z").replace("t", "T"))
    except ValueError:  # e.g. month 13
        return None


def _accepted_suggestions(value: Any) -> list[str] | None:
    if value is None:
        return []
    if not isinstance(value, list) or len(value) > MAX_ENTRIES:
        return None
    ids: list[str] = []
    for suggestion in value:
        if not isinstance(suggestion, dict) or not _bounded_string(suggestion.get("id")):
            return None
        ids.append(suggestion["id"])
    return ids


def _override_reason(value: Any, where: str) -> tuple[list[str], OverrideReason | None]:
    if value is None:
        return [], None
    if not isinstance(value, dict):
        return [f"'{where}.overrideReason' must be an object"], None
    problems: list[str] = []
    comment = value.get("userComment")
    if comment is not None and not isinstance(comment, str):
        problems.append(f"'{where}.overrideReason.userComment' must be a string")
    coding = value.get("reason")
    if coding is None:
        return problems, None
    if (
        not isinstance(coding, dict)
        or not _bounded_string(coding.get("code"))
        or not _bounded_string(coding.get("system"))
    ):
        problems.append(f"'{where}.overrideReason.reason' must be a Coding with system and code")
        return problems, None
    return problems, OverrideReason(system=coding["system"], code=coding["code"])
