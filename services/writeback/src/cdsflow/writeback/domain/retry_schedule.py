"""When to try an EHR write again: jittered exponential backoff, at least the EHR's
`Retry-After` (capped), and never before the circuit breaker lets a probe through."""

from __future__ import annotations

from dataclasses import dataclass

from tenacity import wait_random_exponential

from cdsflow.fhir import EhrError, is_ehr_outage

PROBE_MARGIN_S = 0.01


@dataclass(frozen=True)
class RetrySchedule:
    """`max_attempts` tries in all (the first included); before try n+1 wait
    `uniform(0, min(max_s, initial_s * 2**(n-1)))` ("full jitter"), raised to the EHR's
    `Retry-After` (at most `retry_after_max_s`) and to the breaker's remaining open time."""

    max_attempts: int
    initial_s: float
    max_s: float
    retry_after_max_s: float

    def backoff(self) -> wait_random_exponential:
        """tenacity's full-jitter exponential wait with these bounds."""
        return wait_random_exponential(multiplier=self.initial_s, max=self.max_s)

    def wait_s(
        self, backoff_s: float, *, retry_after_s: float | None, breaker_wait_s: float
    ) -> float:
        """The wait before the next try: the jittered backoff, raised to `Retry-After`
        (capped) and to the time until the breaker lets a probe through."""
        honoured = min(retry_after_s, self.retry_after_max_s) if retry_after_s else 0.0
        if breaker_wait_s > 0:
            # a timer may fire a little early (clock resolution, float sums): be past it
            breaker_wait_s += PROBE_MARGIN_S
        return max(backoff_s, honoured, breaker_wait_s)


def is_retryable_write_failure(exc: BaseException) -> bool:
    """An outage (unreachable, timeout, 408, 429, 5xx), the breaker refusing to send, or a
    409 conflict (e.g. a concurrent write of the same resource): worth another try. Any
    other refusal (400, 401, 403, 404, 412, 422, ...) will not change: not retried."""
    if isinstance(exc, CircuitOpen):
        return True
    return is_ehr_outage(exc) or (isinstance(exc, EhrError) and exc.status_code == 409)


class CircuitOpen(Exception):
    """The circuit breaker is open: the write was not sent."""

    def __init__(self) -> None:
        super().__init__("the EHR circuit breaker is open; the write was not sent")
