"""EhrWriter's own logic over httpx.MockTransport and a fake clock: how often it tries, how
long it waits between tries, and what it gives up on. (Against SEKMET through a
fault-injecting proxy: tests/integration/test_writeback_ehr_writes.py.)"""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from prometheus_client import CollectorRegistry, Counter

from cdsflow.fhir import EhrClient, EhrError
from cdsflow.writeback.domain.ehr_circuit_breaker import CircuitBreaker, CircuitState
from cdsflow.writeback.domain.retry_schedule import PROBE_MARGIN_S, CircuitOpen, RetrySchedule
from cdsflow.writeback.ehr_writes import EhrWriter, WriteFailed

BASE = "http://ehr.test/fhir"
BUNDLE = {"resourceType": "Bundle", "type": "transaction", "entry": []}
CREATED = {
    "resourceType": "Bundle",
    "type": "transaction-response",
    "entry": [{"response": {"status": "201 Created"}}],
}


class FakeTime:
    """A monotonic clock that only the writer's sleeps move."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def answers(*responses: httpx.Response) -> tuple[httpx.MockTransport, list[httpx.Request]]:
    sent: list[httpx.Request] = []
    replies: Iterator[httpx.Response] = iter(responses)

    def handle(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        return next(replies)

    return httpx.MockTransport(handle), sent


def writer(
    transport: httpx.MockTransport,
    clock: FakeTime,
    *,
    attempts: int = 4,
    threshold: int = 5,
    open_s: float = 10.0,
) -> tuple[EhrWriter, CircuitBreaker, Counter]:
    breaker = CircuitBreaker(threshold, open_s, clock=clock)
    counter = Counter("attempts", "tries", ("result",), registry=CollectorRegistry())
    schedule = RetrySchedule(max_attempts=attempts, initial_s=0.1, max_s=0.4, retry_after_max_s=30)
    ehr = EhrClient(BASE, httpx.AsyncClient(transport=transport))
    return EhrWriter(ehr, breaker, schedule, counter, sleep=clock.sleep), breaker, counter


def counted(counter: Counter, result: str) -> float:
    value: float = counter.labels(result=result)._value.get()
    return value


def outcome(status: int, code: str = "transient") -> dict[str, object]:
    return {"resourceType": "OperationOutcome", "issue": [{"code": code}]}


async def test_a_busy_ehr_is_tried_again_after_its_retry_after() -> None:
    clock = FakeTime()
    transport, sent = answers(
        httpx.Response(503, headers={"Retry-After": "7"}, json=outcome(503)),
        httpx.Response(429, headers={"Retry-After": "3"}, json=outcome(429)),
        httpx.Response(200, json=CREATED),
    )
    write, _, counter = writer(transport, clock)

    done = await write.write(BUNDLE)

    assert (done.attempts, done.created) == (3, 1)
    assert len(sent) == 3
    assert clock.sleeps == [7.0, 3.0]  # the backoff here is at most 0.4 s
    assert counted(counter, "outage") == 2
    assert counted(counter, "created") == 1


async def test_without_retry_after_the_waits_are_the_jittered_backoff() -> None:
    clock = FakeTime()
    transport, _ = answers(
        httpx.Response(502),
        httpx.Response(504),
        httpx.Response(500),
        httpx.Response(200, json=CREATED),
    )
    write, _, _ = writer(transport, clock)

    await write.write(BUNDLE)

    assert len(clock.sleeps) == 3
    for wait, ceiling in zip(clock.sleeps, (0.1, 0.2, 0.4), strict=True):
        assert 0.0 <= wait <= ceiling


@pytest.mark.parametrize("status", [400, 401, 403, 404, 412, 422])
async def test_a_refusal_is_given_up_at_once(status: int) -> None:
    clock = FakeTime()
    transport, sent = answers(httpx.Response(status, json=outcome(status, "invalid")))
    write, breaker, counter = writer(transport, clock)

    with pytest.raises(WriteFailed) as caught:
        await write.write(BUNDLE)

    assert caught.value.retried is False
    assert caught.value.attempts == 1
    assert caught.value.status_code == status
    assert isinstance(caught.value.cause, EhrError)
    assert caught.value.cause.issue_codes == ("invalid",)
    assert len(sent) == 1
    assert clock.sleeps == []
    assert counted(counter, "refused") == 1
    assert breaker.state is CircuitState.CLOSED


async def test_a_conflict_is_tried_again_without_counting_as_an_outage() -> None:
    clock = FakeTime()
    transport, _ = answers(
        httpx.Response(409, json=outcome(409, "conflict")), httpx.Response(200, json=CREATED)
    )
    write, _, counter = writer(transport, clock, threshold=1)

    done = await write.write(BUNDLE)

    assert done.attempts == 2
    assert counted(counter, "conflict") == 1
    assert counted(counter, "outage") == 0


async def test_an_outage_opens_the_breaker_and_later_tries_wait_for_its_probe() -> None:
    clock = FakeTime()
    transport, sent = answers(*(httpx.Response(503) for _ in range(4)))
    write, breaker, counter = writer(transport, clock, attempts=4, threshold=2, open_s=10.0)

    with pytest.raises(WriteFailed) as caught:
        await write.write(BUNDLE)

    assert caught.value.retried is True
    assert caught.value.attempts == 4
    assert caught.value.status_code == 503
    # try 2 opens it; tries 3 and 4 are the probes, each after the full open time
    assert len(sent) == 4
    assert clock.sleeps[1:] == pytest.approx([10.0 + PROBE_MARGIN_S] * 2)
    assert breaker.state is CircuitState.OPEN
    assert counted(counter, "outage") == 4


async def test_while_the_breaker_is_open_nothing_is_sent() -> None:
    clock = FakeTime()
    transport, sent = answers(httpx.Response(200, json=CREATED))
    write, breaker, counter = writer(transport, clock, attempts=2, threshold=1, open_s=10.0)
    breaker.record_outage()  # opened by an earlier write
    assert breaker.try_acquire() is False

    done = await write.write(BUNDLE)  # refused, then waits for the probe, which succeeds

    assert done.attempts == 2
    assert clock.sleeps == pytest.approx([10.0 + PROBE_MARGIN_S])
    assert len(sent) == 1
    assert counted(counter, "circuit_open") == 1
    assert breaker.state is CircuitState.CLOSED

    breaker.record_outage()
    clock.now += 11.0
    assert breaker.try_acquire() is True  # another write holds the probe
    with pytest.raises(WriteFailed) as caught:
        await write.write(BUNDLE)
    assert isinstance(caught.value.cause, CircuitOpen)
    assert caught.value.retried is True
    assert counted(counter, "circuit_open") == 3
    assert len(sent) == 1
