"""When an EHR write is tried again, and which failures are worth another try."""

from __future__ import annotations

import httpx
import pytest
from tenacity import AsyncRetrying, RetryCallState

from cdsflow.fhir import EhrError
from cdsflow.writeback.domain.retry_schedule import (
    PROBE_MARGIN_S,
    CircuitOpen,
    RetrySchedule,
    is_retryable_write_failure,
)

SCHEDULE = RetrySchedule(max_attempts=5, initial_s=0.5, max_s=8.0, retry_after_max_s=30.0)


def test_the_wait_is_the_jittered_backoff_when_nothing_asks_for_more() -> None:
    assert SCHEDULE.wait_s(0.3, retry_after_s=None, breaker_wait_s=0.0) == 0.3


def test_retry_after_is_honoured_up_to_its_cap() -> None:
    assert SCHEDULE.wait_s(0.3, retry_after_s=4.0, breaker_wait_s=0.0) == 4.0
    assert SCHEDULE.wait_s(0.3, retry_after_s=300.0, breaker_wait_s=0.0) == 30.0


def test_no_try_before_the_breaker_lets_a_probe_through() -> None:
    assert SCHEDULE.wait_s(0.3, retry_after_s=2.0, breaker_wait_s=12.5) == 12.5 + PROBE_MARGIN_S


def test_the_backoff_is_jittered_exponential_and_bounded() -> None:
    backoff = SCHEDULE.backoff()
    for attempt, ceiling in [(1, 0.5), (2, 1.0), (3, 2.0), (4, 4.0), (5, 8.0), (9, 8.0)]:
        state = RetryCallState(AsyncRetrying(), None, (), {})
        state.attempt_number = attempt
        waits = {backoff(state) for _ in range(50)}
        assert all(0.0 <= wait <= ceiling for wait in waits)
        assert len(waits) > 1  # jittered, not a fixed step


@pytest.mark.parametrize(
    ("failure", "retried"),
    [
        (httpx.ConnectError("refused"), True),
        (httpx.ReadTimeout("slow"), True),
        (EhrError("503", 503), True),
        (EhrError("500", 500), True),
        (EhrError("429", 429), True),
        (EhrError("408", 408), True),
        (EhrError("409", 409), True),
        (CircuitOpen(), True),
        (EhrError("400", 400), False),
        (EhrError("401", 401), False),
        (EhrError("404", 404), False),
        (EhrError("412", 412), False),
        (EhrError("422", 422), False),
        (EhrError("not JSON", 200), False),
        (ValueError("a bug"), False),
    ],
)
def test_only_outages_and_conflicts_are_retried(failure: BaseException, retried: bool) -> None:
    assert is_retryable_write_failure(failure) is retried
