"""A circuit breaker for writes to the EHR: after K consecutive outages, stop sending.

- closed: writes go through; each outage (unreachable, timeout, 408, 429, 5xx) counts, any
  answer that is not an outage (a success, a refusal) resets the count;
- open (after `failure_threshold` consecutive outages): no write is sent for `open_s`;
- half-open (once `open_s` has passed): one write is let through as a probe; its success
  closes the circuit, its outage opens it again for `open_s`.

Pure state: the clock is injected, nothing here sleeps or does I/O.
"""

from __future__ import annotations

import enum
import time
from collections.abc import Callable


class CircuitState(enum.Enum):
    CLOSED = "closed"
    HALF_OPEN = "half-open"
    OPEN = "open"

    @property
    def level(self) -> int:
        """0 closed, 1 half-open, 2 open: the value of the state gauge."""
        return {CircuitState.CLOSED: 0, CircuitState.HALF_OPEN: 1, CircuitState.OPEN: 2}[self]


class CircuitBreaker:
    def __init__(
        self,
        failure_threshold: int,
        open_s: float,
        clock: Callable[[], float] = time.monotonic,
        on_open: Callable[[], None] | None = None,
        on_close: Callable[[], None] | None = None,
    ) -> None:
        if failure_threshold < 1:
            raise ValueError("the failure threshold must be at least 1")
        self._threshold = failure_threshold
        self._open_s = open_s
        self._clock = clock
        self._on_open = on_open
        self._on_close = on_close
        self._consecutive_outages = 0
        self._opened_at: float | None = None
        self._probing = False

    @property
    def state(self) -> CircuitState:
        if self._opened_at is None:
            return CircuitState.CLOSED
        if self._clock() - self._opened_at < self._open_s:
            return CircuitState.OPEN
        return CircuitState.HALF_OPEN

    def seconds_until_probe(self) -> float:
        """How long until a write may be tried again (0 when one may be tried now)."""
        if self._opened_at is None:
            return 0.0
        return max(0.0, self._opened_at + self._open_s - self._clock())

    def try_acquire(self) -> bool:
        """May a write be sent now? In half-open, only one (the probe) at a time."""
        state = self.state
        if state is CircuitState.CLOSED:
            return True
        if state is CircuitState.OPEN or self._probing:
            return False
        self._probing = True
        return True

    def record_answer(self) -> None:
        """The EHR answered (a success, or a refusal that is not an outage): close."""
        was_open = self._opened_at is not None
        self._consecutive_outages = 0
        self._opened_at = None
        self._probing = False
        if was_open and self._on_close is not None:
            self._on_close()

    def record_outage(self) -> None:
        """The write met an outage: count it; open at the threshold, or when a probe fails."""
        self._consecutive_outages += 1
        if self._probing or self._consecutive_outages >= self._threshold:
            self._open()

    def release(self) -> None:
        """A write was given up without an answer either way (e.g. cancelled): free the probe."""
        self._probing = False

    def _open(self) -> None:
        self._opened_at = self._clock()
        self._probing = False
        if self._on_open is not None:
            self._on_open()
