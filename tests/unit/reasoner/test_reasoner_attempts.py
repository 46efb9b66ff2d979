"""How one event ends: an unexpected failure is tried `max_attempts` times, then dead-lettered;
the message's own fault is dead-lettered at once; a dependency outage is handed back, never
dead-lettered."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, cast

import pytest
from aiokafka import ConsumerRecord
from opentelemetry import trace

from cdsflow.reasoner.dependency_health import DependencyHealth, DependencyUnavailable
from cdsflow.reasoner.domain.errors import UnprocessableEvent
from cdsflow.reasoner.handlers import ClinicalEventHandler
from cdsflow.reasoner.metrics import ReasonerMetrics
from cdsflow.reasoner.model_client import ModelRequestFailed
from cdsflow.reasoner.settings import Settings
from cdsflow.service import Record, RecordOutcome
from cdsflow.telemetry import MetricsRegistry


class DeadLetters:
    def __init__(self) -> None:
        self.sent: list[tuple[bytes, str, str]] = []

    async def send(
        self, body: bytes, key: bytes | None, error_type: str, error: str, **_: Any
    ) -> None:
        self.sent.append((body, error_type, error))


def record() -> Record:
    return ConsumerRecord(
        topic="events",
        partition=0,
        offset=7,
        timestamp=0,
        timestamp_type=0,
        key=b"patient-key",
        value=b"body",
        checksum=None,
        serialized_key_size=0,
        serialized_value_size=0,
        headers=(),
    )


def handler(
    failures: Callable[[int], Exception | None], dead_letters: DeadLetters
) -> tuple[ClinicalEventHandler, list[int], DependencyHealth]:
    """A handler whose processing fails as `failures(attempt)` says (None: succeeds)."""
    settings = Settings(ehr_base_url="http://ehr.example/fhir", max_attempts=3)
    health = DependencyHealth()
    unused = cast(Any, None)
    event_handler = ClinicalEventHandler(
        settings=settings,
        deliveries=unused,
        dead_letters=cast(Any, dead_letters),
        ehr_history=unused,
        contexts=unused,
        readers=(),
        models={},
        patient_keyer=unused,
        metrics=ReasonerMetrics.register(MetricsRegistry("reasoner")),
        tracer=trace.get_tracer("test"),
        health=health,
    )
    attempts: list[int] = []

    async def process(_: Record) -> Any:
        attempts.append(len(attempts) + 1)
        failure = failures(len(attempts))
        if failure is not None:
            raise failure
        return "delivery"

    event_handler._process = process  # type: ignore[method-assign, assignment]
    return event_handler, attempts, health


async def test_an_unexpected_failure_is_tried_again_and_then_succeeds() -> None:
    dead = DeadLetters()
    event_handler, attempts, _ = handler(lambda n: RuntimeError() if n < 3 else None, dead)
    outcome: object = await event_handler.handle(record())
    assert outcome == "delivery"
    assert attempts == [1, 2, 3]
    assert dead.sent == []


@pytest.mark.parametrize(
    ("failure", "error_type", "error"),
    [
        (RuntimeError("patient data must not leak"), "RuntimeError", "unexpected RuntimeError"),
        (ModelRequestFailed("INVALID_ARGUMENT"), "ModelRequestFailed", "INVALID_ARGUMENT"),
    ],
)
async def test_after_max_attempts_the_event_is_dead_lettered_with_its_error(
    failure: Exception, error_type: str, error: str
) -> None:
    dead = DeadLetters()
    event_handler, attempts, _ = handler(lambda n: failure, dead)
    assert await event_handler.handle(record()) is RecordOutcome.FINISHED
    assert attempts == [1, 2, 3]
    [(body, sent_type, sent_error)] = dead.sent
    assert (body, sent_type) == (b"body", error_type)
    assert error in sent_error
    assert "patient data" not in sent_error


async def test_the_messages_own_fault_is_dead_lettered_at_once() -> None:
    dead = DeadLetters()
    event_handler, attempts, _ = handler(lambda n: UnprocessableEvent("no value"), dead)
    assert await event_handler.handle(record()) is RecordOutcome.FINISHED
    assert attempts == [1]
    assert dead.sent == [(b"body", "UnprocessableEvent", "no value")]


async def test_an_outage_is_handed_back_never_dead_lettered_and_marks_the_dependency() -> None:
    dead = DeadLetters()
    event_handler, attempts, health = handler(
        lambda n: DependencyUnavailable("triton", "UNAVAILABLE"), dead
    )
    assert await event_handler.handle(record()) is RecordOutcome.HANDED_BACK
    assert attempts == [1]
    assert dead.sent == []
    assert health.is_failing("triton")
