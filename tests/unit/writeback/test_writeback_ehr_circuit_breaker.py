"""The EHR write circuit breaker: open after K consecutive outages, one probe when half-open."""

from __future__ import annotations

import pytest

from cdsflow.writeback.domain.ehr_circuit_breaker import CircuitBreaker, CircuitState


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def breaker(clock: Clock, opened: list[float] | None = None) -> CircuitBreaker:
    record = opened if opened is not None else []
    return CircuitBreaker(3, 10.0, clock=clock, on_open=lambda: record.append(clock.now))


def state(circuit: CircuitBreaker) -> CircuitState:
    """Read afresh (a property that the clock changes, which mypy would narrow)."""
    return circuit.state


def test_it_opens_after_k_consecutive_outages_and_sends_nothing_while_open() -> None:
    clock, opened = Clock(), list[float]()
    circuit = breaker(clock, opened)

    for _ in range(2):
        assert circuit.try_acquire()
        circuit.record_outage()
    assert state(circuit) is CircuitState.CLOSED
    assert circuit.try_acquire()
    circuit.record_outage()

    assert state(circuit) is CircuitState.OPEN
    assert opened == [100.0]
    assert not circuit.try_acquire()
    clock.now += 4
    assert circuit.seconds_until_probe() == pytest.approx(6.0)
    assert not circuit.try_acquire()


def test_an_answer_resets_the_count_of_outages() -> None:
    clock = Clock()
    circuit = breaker(clock)

    circuit.record_outage()
    circuit.record_outage()
    circuit.record_answer()  # e.g. a 422: the EHR is up
    circuit.record_outage()
    circuit.record_outage()

    assert state(circuit) is CircuitState.CLOSED


def test_half_open_lets_one_probe_through_and_its_success_closes() -> None:
    clock = Clock()
    circuit = breaker(clock)
    for _ in range(3):
        circuit.record_outage()
    clock.now += 10

    assert state(circuit) is CircuitState.HALF_OPEN
    assert circuit.seconds_until_probe() == 0.0
    assert circuit.try_acquire()
    assert not circuit.try_acquire()  # one probe at a time
    circuit.record_answer()

    assert state(circuit) is CircuitState.CLOSED
    assert circuit.try_acquire()
    assert circuit.try_acquire()


def test_a_failed_probe_opens_it_again_for_the_full_time() -> None:
    clock, opened = Clock(), list[float]()
    circuit = breaker(clock, opened)
    for _ in range(3):
        circuit.record_outage()
    clock.now += 10
    assert circuit.try_acquire()

    circuit.record_outage()

    assert state(circuit) is CircuitState.OPEN
    assert circuit.seconds_until_probe() == pytest.approx(10.0)
    assert opened == [100.0, 110.0]


def test_a_probe_given_up_without_a_verdict_frees_the_slot() -> None:
    clock = Clock()
    circuit = breaker(clock)
    for _ in range(3):
        circuit.record_outage()
    clock.now += 10
    assert circuit.try_acquire()

    circuit.release()

    assert state(circuit) is CircuitState.HALF_OPEN
    assert circuit.try_acquire()


def test_the_state_levels_for_the_gauge() -> None:
    assert [state.level for state in CircuitState] == [0, 1, 2]
    with pytest.raises(ValueError, match="threshold"):
        CircuitBreaker(0, 1.0)


def test_closing_after_an_opening_is_announced_once() -> None:
    clock, closed = Clock(), list[float]()
    circuit = CircuitBreaker(1, 10.0, clock=clock, on_close=lambda: closed.append(clock.now))

    circuit.record_answer()  # closed already: nothing to announce
    circuit.record_outage()
    clock.now += 10
    assert circuit.try_acquire()
    circuit.record_answer()
    circuit.record_answer()

    assert closed == [110.0]
