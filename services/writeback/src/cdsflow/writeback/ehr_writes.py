"""Sending a write-back's transaction Bundle to the EHR: retries, backoff and the breaker.

Each try goes through the circuit breaker (`domain/ehr_circuit_breaker.py`); a failed try
that can be cured by waiting (`is_retryable_write_failure`) is tried again after the wait of
`domain/retry_schedule.py`, up to `max_attempts` tries in all (tenacity runs the loop). A
refusal is raised at once. Every try is counted in
`cdsflow_writeback_ehr_write_attempts_total{result}`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from prometheus_client import Counter
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception, stop_after_attempt

from cdsflow.fhir import EhrClient, EhrError, is_ehr_outage
from cdsflow.writeback.domain.ehr_circuit_breaker import CircuitBreaker
from cdsflow.writeback.domain.retry_schedule import (
    CircuitOpen,
    RetrySchedule,
    is_retryable_write_failure,
)
from cdsflow.writeback.domain.writeback_bundle import created_entries


@dataclass(frozen=True)
class WriteDone:
    created: int  # entries the EHR created; 0 when an earlier write already holds them all
    attempts: int


class WriteFailed(Exception):
    """The write did not go through. `retried` is False for a refusal (not worth another try)
    and True when the tries ran out; `cause` is the last failure."""

    def __init__(self, cause: BaseException, attempts: int, *, retried: bool) -> None:
        super().__init__(str(cause))
        self.cause = cause
        self.attempts = attempts
        self.retried = retried

    @property
    def status_code(self) -> int | None:
        return self.cause.status_code if isinstance(self.cause, EhrError) else None


class EhrWriter:
    def __init__(
        self,
        ehr: EhrClient,
        breaker: CircuitBreaker,
        schedule: RetrySchedule,
        attempts_counter: Counter,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._ehr = ehr
        self._breaker = breaker
        self._schedule = schedule
        self._attempts = attempts_counter
        self._sleep = sleep
        self._backoff = schedule.backoff()

    async def write(self, bundle: dict[str, Any]) -> WriteDone:
        """POST the transaction until it goes through; raises `WriteFailed`."""
        tries = 0
        retrying = AsyncRetrying(
            stop=stop_after_attempt(self._schedule.max_attempts),
            wait=self._wait_s,
            retry=retry_if_exception(is_retryable_write_failure),
            sleep=self._sleep,
            reraise=True,
        )
        try:
            async for attempt in retrying:
                with attempt:
                    tries += 1
                    response = await self._try(bundle)
        except Exception as exc:
            raise WriteFailed(exc, tries, retried=is_retryable_write_failure(exc)) from exc
        return WriteDone(created=created_entries(response), attempts=tries)

    async def _try(self, bundle: dict[str, Any]) -> dict[str, Any]:
        if not self._breaker.try_acquire():
            self._count("circuit_open")
            raise CircuitOpen()
        try:
            response = await self._ehr.transaction(bundle)
        except Exception as exc:
            if is_ehr_outage(exc):
                self._breaker.record_outage()
                self._count("outage")
            elif isinstance(exc, EhrError):
                self._breaker.record_answer()  # it answered: it is up
                self._count("conflict" if exc.status_code == 409 else "refused")
            else:
                self._breaker.release()
                self._count("error")
            raise
        except BaseException:
            self._breaker.release()  # cancelled: no verdict on the EHR
            raise
        self._breaker.record_answer()
        self._count("created" if created_entries(response) else "unchanged")
        return response

    def _wait_s(self, state: RetryCallState) -> float:
        failure = state.outcome.exception() if state.outcome is not None else None
        retry_after = failure.retry_after_s if isinstance(failure, EhrError) else None
        return self._schedule.wait_s(
            self._backoff(state),
            retry_after_s=retry_after,
            breaker_wait_s=self._breaker.seconds_until_probe(),
        )

    def _count(self, result: str) -> None:
        self._attempts.labels(result=result).inc()
