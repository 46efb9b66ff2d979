"""`POST /cds-services/{id}/feedback` through the ASGI app in-process: accepted entries become
Feedback events (collected here instead of published), bad input gets a 4xx, outcomes and
reasons are counted; and the card snoozes that overridden cards lead to.

Publishing to the real broker, and the snoozes read back from it:
tests/integration/test_writeback_feedback.py.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from cdsflow.contracts import Feedback, FeedbackOutcome, Indicator
from cdsflow.service import add_error_answers
from cdsflow.telemetry import MetricsRegistry, PatientKeyer
from cdsflow.writeback.domain.card_snoozes import CardSnoozes, snooze_key
from cdsflow.writeback.domain.cards import cards_for
from cdsflow.writeback.domain.discovery import DETERIORATION_SERVICE
from cdsflow.writeback.domain.feedback_requests import FeedbackEntry
from cdsflow.writeback.domain.latest_recommendations import LatestRecommendations, stored
from cdsflow.writeback.domain.recorded_feedback import RecordedFeedback
from cdsflow.writeback.feedback_api import FeedbackCounter, feedback_router
from cdsflow.writeback.handlers import HookLimits, WritebackMetrics
from cdsflow.writeback.hooks_api import cds_hooks_router

from .sample_recommendations import PSEUDONYM_KEY, recommendation

FEEDBACK_URL = "/cds-services/cdsflow-deterioration/feedback"
SERVICE_URL = "/cds-services/cdsflow-deterioration"


@dataclass
class FeedbackApi:
    http: httpx.AsyncClient
    store: LatestRecommendations
    snoozes: CardSnoozes
    registry: MetricsRegistry
    published: list[Feedback] = field(default_factory=list)
    failing: bool = False
    recorded: RecordedFeedback = field(default_factory=RecordedFeedback)

    def counted(self, outcome: str, reason: str, model_version: str = "unknown") -> float:
        value = self.registry.registry.get_sample_value(
            "cdsflow_writeback_feedback_total",
            {
                "outcome": outcome,
                "reason": reason,
                "model_version": model_version,
                "cds_service": "cdsflow-deterioration",
            },
        )
        return value or 0.0


@pytest.fixture
async def api() -> AsyncIterator[FeedbackApi]:
    registry = MetricsRegistry("writeback")
    metrics = WritebackMetrics.on(registry)
    store = LatestRecommendations(rebuilt=True)
    snoozes = CardSnoozes()
    app = FastAPI(redirect_slashes=False)
    limits = HookLimits(max_body_bytes=64 * 1024)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://writeback") as http:
        state = FeedbackApi(http, store, snoozes, registry)

        async def publish(event: Feedback) -> None:
            if state.failing:
                raise ConnectionError("broker down")
            state.published.append(event)

        app.include_router(
            cds_hooks_router(
                services=(DETERIORATION_SERVICE,),
                store=store,
                patient_keyer=PatientKeyer(PSEUDONYM_KEY),
                metrics=metrics,
                limits=limits,
                client_auth=None,
                snoozes=snoozes,
            )
        )
        app.include_router(
            feedback_router(
                services=(DETERIORATION_SERVICE,),
                store=store,
                recorded=state.recorded,
                publish=publish,
                metrics=metrics,
                feedback_counter=FeedbackCounter(registry),
                limits=limits,
                client_auth=None,
            )
        )
        add_error_answers(app, media_type="application/json")
        yield state


def overridden(card_uuid: str, code: str | None = "already-addressed") -> dict[str, Any]:
    entry: dict[str, Any] = {
        "card": card_uuid,
        "outcome": "overridden",
        "outcomeTimestamp": "2026-01-02T03:04:05Z",
    }
    if code is not None:
        entry["overrideReason"] = {
            "reason": {"system": "http://example.org/override-reasons", "code": code},
            "userComment": "free text that must not travel",
        }
    return entry


async def test_feedback_on_a_held_card_is_published_with_its_patient_model_and_indicator(
    api: FeedbackApi,
) -> None:
    source = recommendation(patient_id="pat-17", band="high")
    api.store.keep(stored(source))
    (card,) = cards_for(source)

    response = await api.http.post(FEEDBACK_URL, json={"feedback": [overridden(card["uuid"])]})

    assert response.status_code == 200
    (event,) = api.published
    assert event.card_uuid == card["uuid"]
    assert event.outcome == FeedbackOutcome.FEEDBACK_OUTCOME_OVERRIDDEN
    assert event.patient_key == source.patient_key
    assert event.recommendation_id == source.recommendation_id
    assert event.model.version == source.model.version
    assert event.indicator == Indicator.INDICATOR_CRITICAL
    assert event.cds_service == "cdsflow-deterioration"
    assert event.override_reason_code == "already-addressed"
    assert b"free text" not in event.SerializeToString()
    model = f"{source.model.name}/{source.model.version}"
    assert api.counted("overridden", "already-addressed", model) == 1


async def test_a_batch_is_taken_whole_and_a_repeated_delivery_is_published_once(
    api: FeedbackApi,
) -> None:
    accepted = {
        "card": "card-unknown-here",
        "outcome": "accepted",
        "acceptedSuggestions": [{"id": "suggestion-1"}],
        "outcomeTimestamp": "2026-01-02T03:04:05+01:00",
    }
    body = {"feedback": [accepted, overridden("another-card", code=None)]}

    assert (await api.http.post(FEEDBACK_URL, json=body)).status_code == 200
    assert (await api.http.post(FEEDBACK_URL, json=body)).status_code == 200

    first, second = api.published
    assert first.feedback_id != second.feedback_id
    assert first.feedback_id in api.recorded
    assert first.patient_key == ""  # a card the writeback does not hold
    assert api.counted("accepted", "none") == 1
    assert api.counted("overridden", "none") == 1


async def test_feedback_already_read_back_from_the_topic_is_not_published_again(
    api: FeedbackApi,
) -> None:
    entry = overridden("card-from-another-replica")
    outcome_at = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    # what the tail records when it reads the event another replica published
    api.recorded.record(
        FeedbackEntry(
            card_uuid="card-from-another-replica",
            outcome="overridden",
            outcome_at=outcome_at,
        ).feedback_id
    )
    # the same moment, written in another zone, is the same feedback
    same_moment = {**entry, "outcomeTimestamp": "2026-01-02T04:04:05+01:00"}

    response = await api.http.post(FEEDBACK_URL, json={"feedback": [same_moment]})

    assert response.status_code == 200
    assert api.published == []
    assert api.counted("overridden", "already-addressed") == 0


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        ({}, "'feedback' is required"),
        ({"feedback": []}, "'feedback' is required"),
        ({"feedback": "x"}, "'feedback' is required"),
        ({"feedback": [1]}, "'feedback[0]' must be an object"),
        ({"feedback": [{"outcome": "accepted"}]}, "'feedback[0].card' is required"),
        (
            {
                "feedback": [
                    {"card": "c", "outcome": "ignored", "outcomeTimestamp": "2026-01-02T03:04:05Z"}
                ]
            },
            "'feedback[0].outcome' must be",
        ),
        (
            {
                "feedback": [
                    {"card": "c", "outcome": "accepted", "outcomeTimestamp": "2026-01-02T03:04:05Z"}
                ]
            },
            "'feedback[0].acceptedSuggestions' is required when the outcome is accepted",
        ),
        (
            {"feedback": [{"card": "c", "outcome": "overridden", "outcomeTimestamp": "yesterday"}]},
            "'feedback[0].outcomeTimestamp' is required",
        ),
        (
            {
                "feedback": [
                    {
                        "card": "c",
                        "outcome": "overridden",
                        "outcomeTimestamp": "2026-01-02T03:04:05",
                    }
                ]
            },
            "'feedback[0].outcomeTimestamp' is required",
        ),
        (
            {"feedback": [{**overridden("c"), "overrideReason": {"reason": {"code": 5}}}]},
            "'feedback[0].overrideReason.reason' must be a Coding",
        ),
        (
            {"feedback": [{**overridden("c"), "overrideReason": "no"}]},
            "'feedback[0].overrideReason' must be an object",
        ),
        ({"feedback": [overridden("c")] * 101}, "more than 100 entries"),
    ],
)
async def test_bad_feedback_gets_a_400_naming_the_member_and_nothing_is_published(
    api: FeedbackApi, body: dict[str, Any], problem: str
) -> None:
    response = await api.http.post(FEEDBACK_URL, json=body)

    assert response.status_code == 400
    outcome = response.json()
    assert outcome["resourceType"] == "OperationOutcome"
    assert outcome["issue"][0]["code"] == "invalid"
    assert problem in outcome["issue"][0]["diagnostics"]
    assert api.published == []


async def test_malformed_unknown_or_oversized_feedback_gets_its_4xx(api: FeedbackApi) -> None:
    not_json = await api.http.post(
        FEEDBACK_URL, content=b"{nope", headers={"Content-Type": "application/json"}
    )
    unknown = await api.http.post(
        "/cds-services/nope/feedback", json={"feedback": [overridden("c")]}
    )
    too_large = await api.http.post(
        FEEDBACK_URL, content=json.dumps({"pad": "x" * 70_000}).encode()
    )
    wrong_type = await api.http.post(
        FEEDBACK_URL, content=b"{}", headers={"Content-Type": "text/plain"}
    )

    assert [r.status_code for r in (not_json, unknown, too_large, wrong_type)] == [
        400,
        404,
        413,
        415,
    ]
    assert all(r.json()["resourceType"] == "OperationOutcome" for r in (not_json, too_large))
    assert api.published == []


async def test_when_the_broker_cannot_take_it_the_ehr_is_told_to_send_it_again(
    api: FeedbackApi,
) -> None:
    api.failing = True

    response = await api.http.post(FEEDBACK_URL, json={"feedback": [overridden("c")]})

    assert response.status_code == 503
    assert response.json()["issue"][0]["code"] == "transient"
    assert api.counted("overridden", "already-addressed") == 0


async def test_a_snoozed_card_is_hidden_until_its_indicator_rises(api: FeedbackApi) -> None:
    warning = recommendation(patient_id="pat-17", band="moderate", recommendation_id="r-1")
    api.store.keep(stored(warning))
    now = datetime.now(UTC)
    key = snooze_key(warning.patient_key, "deterioration-risk")
    api.snoozes.snooze(key, now + timedelta(hours=1), "warning")
    view = {"hook": "patient-view", "hookInstance": "h-1", "context": {"patientId": "pat-17"}}

    assert (await api.http.post(SERVICE_URL, json=view)).json() == {"cards": []}

    critical = recommendation(
        patient_id="pat-17",
        band="high",
        recommendation_id="r-2",
        produced_at=warning.produced_at.ToDatetime(tzinfo=UTC) + timedelta(minutes=1),
    )
    api.store.keep(stored(critical))
    (card,) = (await api.http.post(SERVICE_URL, json=view)).json()["cards"]
    assert card["indicator"] == "critical"
