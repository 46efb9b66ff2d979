"""An adapter's result as the `Recommendation` message that every service shares.

The reasoner builds it when an event arrives; the writeback builds the same message when it
scores on demand from a hook's prefetch, so a card looks the same whichever way it came.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from google.protobuf.timestamp_pb2 import Timestamp

from cdsflow.contracts import (
    Basis,
    BasisInput,
    Card,
    Coding,
    Indicator,
    Link,
    Mode,
    ModelRef,
    Recommendation,
    Score,
    Suggestion,
    SuggestionAction,
)
from cdsflow.models.adapter_schema import ModelAdapter
from cdsflow.models.card_templates import CardRendering, RenderedCard, render_cards
from cdsflow.models.outputs import ModelResult
from cdsflow.models.recommendation_basis import basis_entries, resource_references
from cdsflow.models.system_action_templates import render_system_actions
from cdsflow.models.tensors import ModelInputs

_RECOMMENDATION_NAMESPACE = uuid.UUID("6a0f3c9e-2d41-5b8a-9e7c-1f4b8d2a6c35")

INDICATORS: dict[str, Indicator.ValueType] = {
    "info": Indicator.INDICATOR_INFO,
    "warning": Indicator.INDICATOR_WARNING,
    "critical": Indicator.INDICATOR_CRITICAL,
}
MODES: dict[str, Mode.ValueType] = {"active": Mode.MODE_ACTIVE, "shadow": Mode.MODE_SHADOW}


@dataclass(frozen=True)
class RecommendationSubject:
    """What the message says about where the result came from; none of it reaches telemetry
    except the ids."""

    # the clinical event it answers (for on-demand scoring: the hook instance)
    event_id: str
    patient_key: str
    patient_reference: str
    ehr_base_url: str
    produced_at: datetime
    # the W3C trace id (32 hex) of the trace that produced it, "" when there is none
    trace_id: str = ""
    # when the listener received the change (the event's `received_at`): where the
    # writeback's end-to-end latency starts; None for on-demand scoring (no event)
    received_at: Timestamp | None = None


def recommendation_id(event_id: str, adapter_id: str, model_version: str) -> str:
    """Stable: the same event scored by the same adapter and model version has the same id,
    so a redelivered event yields the same recommendation (and one write to the EHR)."""
    return str(uuid.uuid5(_RECOMMENDATION_NAMESPACE, f"{event_id}/{adapter_id}/{model_version}"))


def recommendation_message(
    adapter: ModelAdapter,
    inputs: ModelInputs,
    result: ModelResult,
    *,
    model_version: str,
    mode: str,
    subject: RecommendationSubject,
) -> Recommendation:
    """The message for one model version's result: scores, cards (rendered from the adapter's
    templates), basis, model, mode (`active` or `shadow`)."""
    rec_id = recommendation_id(subject.event_id, adapter.id, model_version)
    rendering = CardRendering(
        model_version=model_version,
        patient_reference=subject.patient_reference,
        card_id_seed=rec_id,
    )
    rendered = render_cards(adapter, inputs, result, rendering)
    system_actions = render_system_actions(adapter, inputs, result, rendering)
    scores = []
    if result.score is not None and adapter.outputs.score is not None:
        band = result.band.name if result.band is not None else ""
        scores.append(Score(name=adapter.outputs.score.tensor, value=result.score, band=band))
    scores += [Score(name=name, value=value) for name, value in result.values.items()]
    message = Recommendation(
        recommendation_id=rec_id,
        event_id=subject.event_id,
        patient_key=subject.patient_key,
        patient_reference=subject.patient_reference,
        scores=scores,
        cards=[card_message(card) for card in rendered],
        basis=basis_message(result),
        model=ModelRef(name=adapter.model.triton_name, version=model_version),
        mode=MODES[mode],
        produced_at=timestamp_message(subject.produced_at),
        ehr_base_url=subject.ehr_base_url,
        adapter_id=adapter.id,
        trace_id=subject.trace_id,
        system_actions=[_action_message(action) for action in system_actions],
    )
    if subject.received_at is not None:
        message.event_received_at.CopyFrom(subject.received_at)
    return message


def basis_message(result: ModelResult) -> Basis:
    inputs = [
        BasisInput(
            name=entry.name,
            code=entry.code,
            value=entry.value,
            unit=entry.unit,
            resource_reference=entry.resource_reference,
            label=entry.label,
            observed_at=(
                timestamp_message(entry.observed_at) if entry.observed_at is not None else None
            ),
            contribution=entry.contribution,
        )
        for entry in basis_entries(result)
    ]
    return Basis(inputs=inputs, resource_references=resource_references(result))


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_NAIVE_EPOCH = datetime(1970, 1, 1)


def timestamp_message(when: datetime) -> Timestamp:
    """`when` as a protobuf `Timestamp` (a naive datetime taken as UTC), exactly as
    `Timestamp.FromDatetime` makes it, in a few integer operations instead of its calendar
    arithmetic (a recommendation carries one per basis input)."""
    since = when - (_EPOCH if when.tzinfo is not None else _NAIVE_EPOCH)
    return Timestamp(seconds=since.days * 86_400 + since.seconds, nanos=since.microseconds * 1_000)


def card_message(card: RenderedCard) -> Card:
    """A rendered card as the proto `Card`; `card_json` turns it back into the same JSON."""
    return Card(
        uuid=card.uuid,
        summary=card.summary,
        detail=card.detail,
        indicator=INDICATORS.get(card.indicator, Indicator.INDICATOR_INFO),
        source_label=card.source.get("label", ""),
        source_url=card.source.get("url", ""),
        suggestions=[_suggestion_message(s) for s in card.suggestions],
        selection_behavior=card.selection_behavior or "",
        links=[
            Link(
                label=link["label"],
                url=link["url"],
                type=link.get("type", "absolute"),
                app_context=link.get("appContext", ""),
            )
            for link in card.links
        ],
        override_reasons=[
            Coding(system=reason["system"], code=reason["code"], display=reason["display"])
            for reason in card.override_reasons
        ],
    )


def _suggestion_message(suggestion: dict[str, Any]) -> Suggestion:
    return Suggestion(
        label=suggestion["label"],
        uuid=suggestion["uuid"],
        is_recommended=bool(suggestion.get("isRecommended", False)),
        actions=[_action_message(action) for action in suggestion.get("actions", [])],
    )


def _action_message(action: dict[str, Any]) -> SuggestionAction:
    """A CDS Hooks Action (a suggestion's, or a system action) as the proto message."""
    resource = action.get("resource")
    return SuggestionAction(
        type=action["type"],
        description=action.get("description", ""),
        resource_json=json.dumps(resource).encode() if resource is not None else b"",
        resource_ids=action.get("resourceId", []),
    )


def system_actions_json(recommendation: Recommendation) -> list[dict[str, Any]]:
    """The CDS Hooks 2.0.1 `systemActions` of a recommendation (`type`, `description`,
    `resource`); none for a recommendation that is not active: a shadow result is never
    shown, and never applied."""
    if recommendation.mode != Mode.MODE_ACTIVE:
        return []
    return [_action_json(action) for action in recommendation.system_actions]


_INDICATOR_NAMES = {value: name for name, value in INDICATORS.items()}


def card_json(card: Card) -> dict[str, Any]:
    """The CDS Hooks 2.0 card for a proto `Card` (optional members left out when empty); for
    a card from `card_message`, equal to `RenderedCard.as_cds_hooks()`."""
    source: dict[str, Any] = {"label": card.source_label}
    if card.source_url:
        source["url"] = card.source_url
    if card.HasField("source_topic"):
        source["topic"] = _coding_json(card.source_topic)
    rendered: dict[str, Any] = {
        "uuid": card.uuid,
        "summary": card.summary,
        "indicator": _INDICATOR_NAMES.get(card.indicator, "info"),
        "source": source,
    }
    if card.detail:
        rendered["detail"] = card.detail
    if card.suggestions:
        rendered["suggestions"] = [_suggestion_json(s) for s in card.suggestions]
        rendered["selectionBehavior"] = card.selection_behavior or "any"
    if card.links:
        rendered["links"] = [_link_json(link) for link in card.links]
    if card.override_reasons:
        rendered["overrideReasons"] = [_coding_json(c) for c in card.override_reasons]
    return rendered


def _coding_json(coding: Coding) -> dict[str, str]:
    rendered = {"system": coding.system, "code": coding.code}
    if coding.display:
        rendered["display"] = coding.display
    return rendered


def _link_json(link: Link) -> dict[str, str]:
    rendered = {"label": link.label, "url": link.url, "type": link.type or "absolute"}
    if link.app_context:
        rendered["appContext"] = link.app_context
    return rendered


def _suggestion_json(suggestion: Suggestion) -> dict[str, Any]:
    return {
        "label": suggestion.label,
        "uuid": suggestion.uuid,
        "isRecommended": suggestion.is_recommended,
        "actions": [_action_json(action) for action in suggestion.actions],
    }


def _action_json(action: SuggestionAction) -> dict[str, Any]:
    rendered: dict[str, Any] = {"type": action.type, "description": action.description}
    if action.resource_json:
        rendered["resource"] = json.loads(action.resource_json)
    if action.resource_ids:
        rendered["resourceId"] = list(action.resource_ids)
    return rendered
