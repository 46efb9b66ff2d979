"""Hostile but fair clients against the listener and the CDS Hooks endpoint, served exactly as
their `__main__` serves them, on the real broker (issue 5: defects 3, 4 and 6, and the
property that holds for every request).

Properties, checked on a few hundred generated requests each (`CDSFLOW_PROPERTY_EXAMPLES`
raises the count):
- every answer is a 2xx or a 4xx, never a 5xx, and its body is the API's documented one;
- the listener publishes exactly one record for each notification it acknowledged, and
  nothing for one it refused;
- the writeback publishes feedback only from a feedback call that it acknowledged: every
  card named in an acknowledged call is on the feedback topic, and none named only in
  refused calls is.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import SecretStr

from cdsflow.contracts import ClinicalEvent, Feedback
from cdsflow.fhir import FHIR_JSON
from cdsflow.listener.app import create_app as create_listener
from cdsflow.listener.settings import Settings as ListenerSettings
from cdsflow.runtime.story import vital_sign_observation
from cdsflow.writeback.app import create_app as create_writeback
from cdsflow.writeback.settings import Settings as WritebackSettings
from tests.conftest import KafkaEndpoint
from tests.support.polling import eventually
from tests.support.telemetry import recording_telemetry
from tests.support.threaded_server import serving_in_thread
from tests.support.topic_partitions import partitions_of, records_to_end

pytestmark = [
    pytest.mark.integration,
    # the services run in a thread beside the test, and their Kafka clients (the listener's
    # dedupe tail refreshes metadata in the background) use the `random` module; hypothesis
    # sees its state change during a draw and blames the strategy, which uses none
    pytest.mark.filterwarnings(
        "ignore:Do not use the `random` module inside strategies"
        ":hypothesis.errors.HypothesisDeprecationWarning"
    ),
]

EXAMPLES = int(os.environ.get("CDSFLOW_PROPERTY_EXAMPLES", "300"))
SECRET = "hostile-input-channel-secret-0123456789"
EHR = "http://ehr.hostile.test/fhir"
REST_HOOK = "/fhir/notifications/rest-hook"
HOOK = "/cds-services/cdsflow-deterioration"
FEEDBACK = HOOK + "/feedback"
HEADER_LIMIT = 8 * 1024
EFFECTIVE = datetime(2025, 1, 2, 3, tzinfo=UTC)
PROPERTY_SETTINGS = settings(
    max_examples=EXAMPLES,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def observation(patient: str = "Patient/p-1", resource_id: str = "obs-1") -> dict[str, Any]:
    resource = vital_sign_observation(patient, EFFECTIVE, "9279-1", value=22, ucum="/min")
    resource["id"] = resource_id
    return resource


# ---- what a hostile client sends -------------------------------------------------------

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**30), max_value=10**30)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=12)
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=3)
    | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=12,
)
# what an HTTP client can put in a header value (no surrounding whitespace)
header_text = st.text(
    alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=40
).map(str.strip)
ELEMENTS = ["subject", "valueQuantity", "status", "code", "id", "meta", "component", "x-name"]
SUBJECTS = [
    "Patient/p-1",
    "Group/ward-3",
    "//other.example/fhir/Patient/P",
    "http:/other.example/fhir/Patient/P",
    "a/b/c/Patient/P",
    f"{EHR}/../other/Patient/P",
    f"{EHR}/Patient/p-2",
    "Patient/..",
]


@st.composite
def fhir_bodies(draw: st.DrawFn) -> tuple[bytes, str, str]:
    """(body, resource type in the URL, id in the URL)."""
    resource: dict[str, Any] = observation(draw(st.sampled_from(SUBJECTS)))
    for _ in range(draw(st.integers(0, 3))):
        element = draw(st.sampled_from(ELEMENTS) | st.text(max_size=8))
        if draw(st.booleans()):
            resource[element] = draw(json_values)
        else:
            resource.pop(element, None)
    kind = draw(st.sampled_from(["json", "raw", "deep", "number", "other"]))
    if kind == "raw":
        body = draw(st.binary(max_size=200))
    elif kind == "deep":
        depth = draw(st.integers(60, 3000))
        body = b'{"a":' * depth + b"1" + b"}" * depth
    elif kind == "number":
        body = (
            b'{"resourceType": "Observation", "id": "obs-1", "n": '
            + b"7" * draw(st.integers(300, 6000))
            + b"}"
        )
    elif kind == "other":
        body = json.dumps(draw(json_values)).encode()
    else:
        body = json.dumps(resource).encode()
    resource_type = draw(
        st.sampled_from(["Observation", "Observation", "Patient"]) | st.text(max_size=10)
    )
    resource_id = str(resource.get("id")) if draw(st.booleans()) else draw(st.text(max_size=70))
    return body, resource_type, resource_id


AUTHORIZATIONS = [
    [("Authorization", f"Bearer {SECRET}")],
    [("Authorization", f"Bearer {SECRET}")],
    [],
    [("Authorization", "Bearer not-the-secret")],
    [("Authorization", f"Bearer {SECRET}"), ("Authorization", f"Bearer {SECRET}")],
]
CONTENT_TYPES = [
    "application/fhir+json",
    "application/json; charset=utf-8",
    ";;;",
    "application/fhir+json; charset=utf-16",
    "text/plain",
    None,
]


@st.composite
def notifications(draw: st.DrawFn) -> tuple[str, str, list[tuple[str, str]], bytes]:
    body, resource_type, resource_id = draw(fhir_bodies())
    headers = list(draw(st.sampled_from(AUTHORIZATIONS)))
    content_type = draw(st.sampled_from(CONTENT_TYPES) | header_text)
    if content_type is not None:
        headers.append(("Content-Type", content_type))
    route = draw(st.sampled_from(["put", "put", "put", "ping", "slash", "elsewhere"]))
    if route == "ping":
        return "POST", REST_HOOK, headers, draw(st.sampled_from([b"", body]))
    path = f"{REST_HOOK}/{quote(resource_type, safe='')}/{quote(resource_id, safe='')}"
    if route == "slash":
        path += "/"
    elif route == "elsewhere":
        path = draw(st.sampled_from(["/fhir", "/", f"{REST_HOOK}/", "/cds-services"]))
    return (
        draw(st.sampled_from(["PUT", "PUT", "POST", "GET", "DELETE"]))
        if route == "elsewhere"
        else "PUT",
        path,
        headers,
        body,
    )


@st.composite
def feedback_bodies(draw: st.DrawFn) -> bytes:
    """A CDS Hooks feedback body (spec 2.0.1), often valid, each card a fresh uuid; a member
    may be replaced by anything."""
    entries: list[dict[str, Any]] = []
    for _ in range(draw(st.integers(1, 3))):
        entry: dict[str, Any] = {
            "card": str(draw(st.uuids())),
            "outcome": draw(st.sampled_from(["accepted", "overridden", "sideways"])),
            "outcomeTimestamp": "2025-01-02T03:04:05Z",
        }
        if entry["outcome"] == "accepted" and draw(st.integers(0, 3)) > 0:
            entry["acceptedSuggestions"] = [{"id": str(draw(st.uuids()))}]
        if draw(st.integers(0, 3)) == 0:
            entry[draw(st.sampled_from([*entry, "overrideReason"]))] = draw(json_values)
        entries.append(entry)
    return json.dumps({"feedback": entries}).encode()


@st.composite
def hook_calls(draw: st.DrawFn) -> tuple[str, str, list[tuple[str, str]], bytes]:
    if draw(st.integers(0, 3)) == 0:
        return "POST", FEEDBACK, [("Content-Type", "application/json")], draw(feedback_bodies())
    request: dict[str, Any] = {
        "hook": "patient-view",
        "hookInstance": "d1577c69-dfbe-44ad-ba6d-3e05e953b2ea",
        "fhirServer": draw(
            st.sampled_from(["https://ehr.example.org/fhir", "javascript:alert(1)", "http://x"])
        ),
        "context": {"patientId": draw(st.sampled_from(["p-1", "..", "a/b", "x" * 65]))},
    }
    for _ in range(draw(st.integers(0, 3))):
        member = draw(
            st.sampled_from(["hook", "hookInstance", "context", "prefetch", "fhirAuthorization"])
        )
        request[member] = draw(json_values)
    kind = draw(st.sampled_from(["json", "json", "raw", "deep", "other"]))
    if kind == "raw":
        body = draw(st.binary(max_size=200))
    elif kind == "deep":
        depth = draw(st.integers(60, 3000))
        body = b"[" * depth + b"]" * depth
    elif kind == "other":
        body = json.dumps(draw(json_values)).encode()
    else:
        body = json.dumps(request).encode()
    headers = [
        ("Content-Type", c)
        for c in [
            draw(
                st.sampled_from(
                    ["application/json", None, ";;;", "application/json; charset=utf-16"]
                )
                | header_text
            )
        ]
        if c is not None
    ]
    headers += draw(
        st.sampled_from(
            [
                [],
                [("Authorization", "Bearer x")],
                [("Authorization", "Bearer x"), ("Authorization", "Bearer y")],
            ]
        )
    )
    path = draw(
        st.sampled_from(
            [HOOK, HOOK, HOOK, "/cds-services/other", "/cds-services/", HOOK + "/", FEEDBACK]
        )
    )
    method = draw(st.sampled_from(["POST", "POST", "POST", "GET", "PUT"]))
    return method, path, headers, body


# ---- the services, served as in production ----------------------------------------------


@dataclass
class Answers:
    published: list[str] = field(default_factory=list)
    # acknowledged again without publishing: the same resource version notified twice (at
    # thousands of generated requests, the same one comes up again)
    already_published: list[str] = field(default_factory=list)
    recorded_unusable: int = 0

    def count_published(self, diagnostics: str) -> bool:
        """Counts an answer "clinical event <id> published" or "... already published"; False
        for any other answer."""
        words = diagnostics.split()
        if words[:2] != ["clinical", "event"] or len(words) < 4:
            return False
        if words[3:] == ["already", "published"]:
            self.already_published.append(words[2])
        elif words[3:] == ["published"]:
            self.published.append(words[2])
        else:
            return False
        return True


@pytest.fixture(scope="module")
def listener(kafka: KafkaEndpoint, pseudonym_key: str) -> Iterator[tuple[str, ListenerSettings]]:
    settings = ListenerSettings(
        channel_secret=SecretStr(SECRET),
        ehr_base_url=EHR,
        kafka_bootstrap=kafka.bootstrap,
        kafka_idempotence=False,
        clinical_events_topic=f"test.hostile.{os.getpid()}.{time.monotonic_ns()}",
        max_notification_bytes=64 * 1024,
        max_header_bytes=HEADER_LIMIT,
    )
    with (
        recording_telemetry("listener", pseudonym_key) as (telemetry, _),
        serving_in_thread(
            create_listener(settings, telemetry=telemetry), settings, error_media_type=FHIR_JSON
        ) as base_url,
    ):
        yield base_url, settings


@pytest.fixture(scope="module")
def writeback(kafka: KafkaEndpoint, pseudonym_key: str) -> Iterator[tuple[str, WritebackSettings]]:
    settings = WritebackSettings(
        ehr_base_url=EHR,
        kafka_bootstrap=kafka.bootstrap,
        kafka_idempotence=False,
        recommendations_topic=f"test.hostile-recommendations.{time.monotonic_ns()}",
        feedback_topic=f"test.hostile-feedback.{time.monotonic_ns()}",
        consumer_group=f"test-hostile-{time.monotonic_ns()}",
        max_hook_request_bytes=64 * 1024,
        max_header_bytes=HEADER_LIMIT,
        # the body checks behind authentication are what is probed here; hostile tokens
        # against an authenticating writeback: tests/integration/test_writeback_client_auth.py
        hooks_auth="off",
    )
    with (
        recording_telemetry("writeback", pseudonym_key) as (telemetry, _),
        serving_in_thread(
            create_writeback(settings, telemetry=telemetry),
            settings,
            error_media_type="application/json",
        ) as base_url,
    ):
        # its broker connected (else feedback is rightly a 503 "send it again"; the fake EHR
        # keeps /readyz itself at 503)
        asyncio.run(eventually(lambda: broker_connected(base_url), 60, what="the broker"))
        yield base_url, settings


async def broker_connected(base_url: str) -> bool:
    async with httpx.AsyncClient(timeout=30) as client:
        return bool((await client.get(f"{base_url}/readyz")).json().get("broker"))


def assert_outcome(response: httpx.Response, media_type: str) -> dict[str, Any]:
    assert response.headers["content-type"].startswith(media_type), response.headers
    outcome: dict[str, Any] = response.json()
    assert outcome["resourceType"] == "OperationOutcome"
    assert outcome["issue"][0]["code"]
    assert "Traceback" not in response.text
    return outcome


def test_every_notification_gets_a_2xx_or_a_4xx_and_only_acknowledged_ones_are_published(
    listener: tuple[str, ListenerSettings], kafka: KafkaEndpoint
) -> None:
    base_url, listener_settings = listener
    answers = Answers()

    @PROPERTY_SETTINGS
    @given(notifications())
    def answered_as_documented(request: tuple[str, str, list[tuple[str, str]], bytes]) -> None:
        method, path, headers, body = request
        response = shared.request(method, path, headers=headers, content=body)
        assert response.status_code < 500, (response.status_code, response.text)
        assert response.status_code not in (301, 302, 307, 308)
        outcome = assert_outcome(response, FHIR_JSON)
        if response.status_code != 200:
            return
        issue = outcome["issue"][0]
        if not answers.count_published(issue["diagnostics"]) and issue["severity"] == "warning":
            answers.recorded_unusable += 1

    # one client for every example (a client each would build an SSL context each time)
    with httpx.Client(base_url=base_url, timeout=30) as shared:
        answered_as_documented()
    # and one of each acknowledged kind, so that the comparison below never compares nothing
    authorized = {"Authorization": f"Bearer {SECRET}", "Content-Type": FHIR_JSON}
    with httpx.Client(base_url=base_url, timeout=30) as client:
        for subject in ("Patient/p-1", "Group/ward-3"):
            published = client.put(
                f"{REST_HOOK}/Observation/obs-1",
                json=observation(subject),
                headers=authorized,
            )
            assert published.status_code == 200, published.text
            issue = published.json()["issue"][0]
            if subject == "Patient/p-1":
                # "already published" when a generated request was this very resource
                assert answers.count_published(issue["diagnostics"]), issue
            else:
                answers.recorded_unusable += 1

    topic = listener_settings.clinical_events_topic
    events = asyncio.run(all_records(kafka.bootstrap, topic))
    # each acknowledged event once on the topic, none twice, nothing else; an event answered
    # "already published" is one of them
    assert sorted(ClinicalEvent.FromString(r).event_id for r in events) == sorted(answers.published)
    assert set(answers.already_published) <= set(answers.published)
    recorded = asyncio.run(all_records(kafka.bootstrap, f"{topic}.dlq"))
    assert len(recorded) == answers.recorded_unusable


def test_every_hook_call_gets_a_2xx_or_a_4xx_and_only_acknowledged_feedback_is_published(
    writeback: tuple[str, WritebackSettings], kafka: KafkaEndpoint
) -> None:
    base_url, writeback_settings = writeback
    acknowledged: set[str] = set()
    refused: set[str] = set()

    @PROPERTY_SETTINGS
    @given(hook_calls())
    def answered_as_documented(request: tuple[str, str, list[tuple[str, str]], bytes]) -> None:
        method, path, headers, body = request
        response = shared.request(method, path, headers=headers, content=body)
        assert response.status_code < 500, (response.status_code, response.text)
        assert response.status_code not in (301, 302, 307, 308)
        if response.status_code == 200 and path == FEEDBACK:
            assert response.json() == {}
        elif response.status_code == 200:
            assert isinstance(response.json()["cards"], list)
        else:
            assert_outcome(response, "application/json")
        if path == FEEDBACK and method == "POST":
            cards = feedback_cards(body)
            (acknowledged if response.status_code == 200 else refused).update(cards)

    with httpx.Client(base_url=base_url, timeout=30) as shared:
        answered_as_documented()
    # and one acknowledged and one refused call, so that neither comparison compares nothing
    with httpx.Client(base_url=base_url, timeout=30) as client:
        for outcome, status in (("accepted", 200), ("sideways", 400)):
            card = str(uuid.uuid4())
            entry = {
                "card": card,
                "outcome": outcome,
                "outcomeTimestamp": "2025-01-02T03:04:05Z",
                "acceptedSuggestions": [{"id": str(uuid.uuid4())}],
            }
            answer = client.post(FEEDBACK, json={"feedback": [entry]})
            assert answer.status_code == status, answer.text
            (acknowledged if status == 200 else refused).add(card)

    published = {
        Feedback.FromString(record).card_uuid
        for record in asyncio.run(all_records(kafka.bootstrap, writeback_settings.feedback_topic))
    }
    assert acknowledged <= published
    assert not (refused - acknowledged) & published


def feedback_cards(body: bytes) -> set[str]:
    """The card uuids a feedback body names (none when it is not one; a body nested deeper
    than Python's parser goes, which the writeback refuses, names none either)."""
    try:
        entries = json.loads(body)["feedback"]
        return {entry["card"] for entry in entries if isinstance(entry["card"], str)}
    except (ValueError, KeyError, TypeError, RecursionError):
        return set()


async def all_records(bootstrap: str, topic: str) -> list[bytes]:
    """Every record on `topic` up to its end offsets (nothing if the topic was never made)."""
    partitions = await partitions_of(bootstrap, topic)
    return [record.value for record in await records_to_end(bootstrap, partitions)]


# ---- limits below the application: the header block and malformed HTTP ---------------------


def raw_exchange(base_url: str, request: bytes) -> tuple[int, dict[str, str], bytes]:
    """Send raw bytes, read the answer (status, headers, body) until the server closes."""
    host, port = base_url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        # the server may answer and close before it has read everything
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            sock.sendall(request)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in header_lines)}
    return int(status_line.split()[1]), headers, body


@pytest.mark.parametrize("service", ["listener", "writeback"])
def test_a_huge_header_is_cut_off_at_the_limit_and_answered_431(
    service: str, listener: tuple[str, ListenerSettings], writeback: tuple[str, WritebackSettings]
) -> None:
    base_url = listener[0] if service == "listener" else writeback[0]
    huge = b"Bearer " + b"x" * (4 * 1024 * 1024)
    request = b"PUT " + REST_HOOK.encode() + b"/Observation/obs-1 HTTP/1.1\r\nHost: t\r\n"
    request += b"Authorization: " + huge + b"\r\nContent-Length: 0\r\n\r\n"

    status, _, body = raw_exchange(base_url, request)

    assert status == 431
    outcome = json.loads(body)
    assert outcome["resourceType"] == "OperationOutcome"
    assert str(HEADER_LIMIT) in outcome["issue"][0]["diagnostics"]
    assert httpx.get(f"{base_url}/healthz", timeout=5).status_code == 200


@pytest.mark.parametrize("service", ["listener", "writeback"])
def test_malformed_http_is_a_400_in_the_apis_format(
    service: str, listener: tuple[str, ListenerSettings], writeback: tuple[str, WritebackSettings]
) -> None:
    base_url = listener[0] if service == "listener" else writeback[0]

    status, headers, body = raw_exchange(base_url, b"NOT HTTP AT ALL\r\n\r\n")

    assert status == 400
    assert headers["content-type"] == (FHIR_JSON if service == "listener" else "application/json")
    assert json.loads(body)["issue"][0]["code"] == "structure"
