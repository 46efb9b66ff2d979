"""The bench's load generator and its rounds: request bytes, answer parsing, the open loop's
schedule, where more in flight stops paying, and when the measured processes are idle
(pure logic, no bench run; the generator against a real endpoint is in
tests/integration/test_bench_ceiling.py)."""

from __future__ import annotations

import asyncio
from typing import Any

import httptools
import pytest

from bench.idle import busy, cpu_rates, flat
from bench.load_process import Connection, any_request_bytes, due_at, request_bytes
from bench.pipeline_load import saturation_point, send_lags, sent_rate
from bench.rounds import in_flight_levels


class ParsedRequest:
    """What httptools' request parser saw (its callbacks)."""

    def __init__(self) -> None:
        self.url = b""
        self.headers: dict[bytes, bytes] = {}
        self.body = b""
        self.complete = False

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers[name.lower()] = value

    def on_body(self, body: bytes) -> None:
        self.body += body

    def on_message_complete(self) -> None:
        self.complete = True


def test_request_bytes_are_one_well_formed_put() -> None:
    body = b'{"resourceType":"Observation","id":"o-1"}'
    raw = request_bytes("127.0.0.1", 8080, "/fhir/rest-hook/Observation/o-1", "Bearer s", body)
    parsed = ParsedRequest()
    parser = httptools.HttpRequestParser(parsed)
    parser.feed_data(raw)
    assert parsed.complete
    assert parser.get_method() == b"PUT"
    assert parser.should_keep_alive()
    assert parsed.url == b"/fhir/rest-hook/Observation/o-1"
    assert parsed.headers[b"host"] == b"127.0.0.1:8080"
    assert parsed.headers[b"authorization"] == b"Bearer s"
    assert parsed.headers[b"content-type"] == b"application/fhir+json"
    assert parsed.body == body


def test_any_request_carries_its_own_method_path_and_headers() -> None:
    body = b'{"hook":"patient-view"}'
    headers = {"Authorization": "Bearer token-7", "Content-Type": "application/json"}
    raw = any_request_bytes("127.0.0.1", 8081, "POST", "/cds-services/svc", headers, body)
    parsed = ParsedRequest()
    parser = httptools.HttpRequestParser(parsed)
    parser.feed_data(raw)
    assert parsed.complete
    assert parser.get_method() == b"POST"
    assert parsed.url == b"/cds-services/svc"
    assert parsed.headers[b"authorization"] == b"Bearer token-7"
    assert parsed.headers[b"content-type"] == b"application/json"
    assert parsed.headers[b"content-length"] == str(len(body)).encode()
    assert parsed.body == body


class WrittenTransport(asyncio.Transport):
    """Keeps what the connection wrote (a stand-in for the socket)."""

    def __init__(self) -> None:
        super().__init__()
        self.written: list[bytes] = []
        self.closed = False

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.written.append(bytes(data))

    def close(self) -> None:
        self.closed = True


ANSWER = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\ncontent-type: application/json\r\n\r\n{}"


async def test_an_answer_split_across_reads_resolves_its_status() -> None:
    connection = Connection()
    transport = WrittenTransport()
    connection.connection_made(transport)
    answer = connection.exchange(b"PUT / HTTP/1.1\r\n\r\n")
    assert transport.written == [b"PUT / HTTP/1.1\r\n\r\n"]
    connection.data_received(ANSWER[:20])
    assert not answer.done()  # only once the whole answer (its body too) was read
    connection.data_received(ANSWER[20:-1])
    assert not answer.done()
    connection.data_received(ANSWER[-1:])
    assert await answer == 200
    assert connection.usable
    # the same connection carries the next request and parses the next answer
    second = connection.exchange(b"PUT / HTTP/1.1\r\n\r\n")
    connection.data_received(b"HTTP/1.1 422 Unprocessable Entity\r\ncontent-length: 0\r\n\r\n")
    assert await second == 422


async def test_answers_holding_the_marker_are_counted_across_split_bodies() -> None:
    connection = Connection(marker=b'"cards":[]')
    connection.connection_made(WrittenTransport())
    for body in (b'{"cards":[]}', b'{"cards":[{"summary":"x"}]}', b'{"cards":[]}'):
        answer = connection.exchange(b"POST / HTTP/1.1\r\n\r\n")
        raw = b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n" % len(body) + body
        connection.data_received(raw[:-5])  # the marker split across two reads
        connection.data_received(raw[-5:])
        assert await answer == 200
    assert connection.marked == 2


async def test_a_closed_connection_fails_its_request_and_is_not_reused() -> None:
    connection = Connection()
    connection.connection_made(WrittenTransport())
    answer = connection.exchange(b"PUT / HTTP/1.1\r\n\r\n")
    connection.connection_lost(None)
    with pytest.raises(ConnectionResetError):
        await answer
    assert not connection.usable


async def test_an_answer_that_closes_the_connection_still_counts() -> None:
    connection = Connection()
    connection.connection_made(WrittenTransport())
    answer = connection.exchange(b"PUT / HTTP/1.1\r\n\r\n")
    connection.data_received(
        b"HTTP/1.1 503 Service Unavailable\r\nconnection: close\r\ncontent-length: 0\r\n\r\n"
    )
    assert await answer == 503
    assert not connection.usable


async def test_garbage_from_the_server_fails_the_request() -> None:
    connection = Connection()
    transport = WrittenTransport()
    connection.connection_made(transport)
    answer = connection.exchange(b"PUT / HTTP/1.1\r\n\r\n")
    connection.data_received(b"this is not HTTP\r\n\r\n")
    with pytest.raises(httptools.HttpParserError):
        await answer
    assert transport.closed
    assert not connection.usable


def test_open_loop_schedule() -> None:
    assert due_at(10.0, 0, 500.0) == 10.0
    assert due_at(10.0, 250, 500.0) == pytest.approx(10.5)


def test_sent_rate_of_a_schedule_kept_and_one_fallen_behind() -> None:
    on_time = [(index, 100.0 + index / 50) for index in range(100)]
    assert sent_rate(on_time, 50.0) == 50.0
    assert send_lags(on_time, 50.0) == pytest.approx([0.0] * 100)
    # every request written twice as late as due: half the rate, lags growing
    behind = [(index, 100.0 + index / 25) for index in range(100)]
    assert sent_rate(behind, 50.0) == pytest.approx(25.1, abs=0.1)
    lags = send_lags(behind, 50.0)
    assert lags[0] == 0.0
    assert lags[-1] == pytest.approx(99 / 25 - 99 / 50)
    assert sent_rate([], 50.0) == 0.0
    assert send_lags([], 50.0) == []


@pytest.mark.parametrize(
    ("sweep", "expected"),
    [
        # doubling 8 -> 16 raised events/s by 30 %, 16 -> 32 by 2 %: 16 saturates it
        ([(8, 100.0), (16, 130.0), (32, 132.6)], 16),
        # more in flight made it slower: the level before
        ([(8, 100.0), (16, 130.0), (32, 110.0)], 16),
        # a fall, then a rise that does not beat the best by 5 %: still the best
        ([(8, 100.0), (16, 90.0)], 8),
        # still rising at every level: not saturated yet
        ([(8, 100.0), (16, 130.0), (32, 150.0)], None),
        ([(8, 100.0)], None),
        ([], None),
    ],
)
def test_saturation_point(sweep: list[tuple[int, float]], expected: int | None) -> None:
    assert saturation_point(sweep) == expected
    assert saturation_point(list(reversed(sweep))) == expected  # order does not matter


def test_in_flight_levels_double() -> None:
    assert in_flight_levels(8, 256) == [8, 16, 32, 64, 128, 256]
    assert in_flight_levels(8, 100) == [8, 16, 32, 64]
    assert in_flight_levels(8, 8) == [8]


def test_cpu_rates_are_cores_over_the_window() -> None:
    rates = cpu_rates({"ehr": 10.0, "broker": 5.0}, {"ehr": 11.0, "broker": 5.1}, 2.0)
    assert rates == pytest.approx({"ehr": 0.5, "broker": 0.05})


def test_busy_compares_each_process_with_its_own_idle_rate() -> None:
    # the broker idles at 0.2 cores (consumers fetching every 5 ms); the EHR at nothing
    baseline: dict[str, Any] = {"broker": 0.2, "ehr": 0.0, "writeback": 0.01}
    assert busy(baseline, {"broker": 0.22, "ehr": 0.01, "writeback": 0.02}) == []
    # the pipeline's write-backs still going: the EHR and the writeback are not idle
    assert busy(baseline, {"broker": 0.24, "ehr": 0.35, "writeback": 0.2}) == [
        "ehr",
        "writeback",
    ]


def test_flat_windows() -> None:
    assert flat({"broker": 0.2, "ehr": 0.0}, {"broker": 0.23, "ehr": 0.01})
    assert not flat({"broker": 0.2, "ehr": 0.3}, {"broker": 0.2, "ehr": 0.1})
