"""The PHI canary scans (tests/support/phi_canaries.py) can fail: each finds a canary planted in
its channel, in any case, and names it by label, never by value; clean input finds none."""

from __future__ import annotations

from pathlib import Path

import pytest

from cdsflow.runtime.trace_collector import CollectedEvent, CollectedSpan
from tests.support.phi_canaries import (
    Canaries,
    HeaderedRecord,
    hits_in_kafka_headers,
    hits_in_log_files,
    hits_in_metrics,
    hits_in_spans,
)

LABELS = ("family", "given", "mrn", "birth_date", "free_text")


def planted(canaries: Canaries, label: str) -> str:
    """The canary of `label` as it might leak: inside other text, its case changed."""
    value = canaries.labelled()[label]
    return f"… subject {value.upper() if label == 'family' else value} …"


def clean_span(**changes: object) -> CollectedSpan:
    fields: dict[str, object] = {
        "trace_id": "0" * 32,
        "span_id": "1" * 16,
        "parent_span_id": "",
        "name": "POST /cds-services/{service_id}",
        "service": "writeback",
        "attributes": {"cdsflow.patient_key": "k-1"},
        **changes,
    }
    return CollectedSpan(**fields)  # type: ignore[arg-type]


def test_fresh_canaries_are_distinct_tokens() -> None:
    first, second = Canaries.fresh(), Canaries.fresh()
    assert len(set(first.labelled().values())) == len(LABELS)
    assert not set(first.labelled().values()) & set(second.labelled().values())
    assert first.family.isalpha()
    assert first.given.isalpha()
    assert first.labels_in("nothing here, 2026-11-30T05:00:00Z, trace 0af7651916cd43dd") == []


@pytest.mark.parametrize("label", LABELS)
def test_a_canary_in_a_log_line_is_found(tmp_path: Path, label: str) -> None:
    canaries = Canaries.fresh()
    log = tmp_path / "writeback.log"
    log.write_text(f'{{"message": "started"}}\n{{"message": "{planted(canaries, label)}"}}\n')

    [hit] = hits_in_log_files(canaries, [log])

    assert (hit.channel, hit.where, hit.label) == ("log", "writeback.log line 2", label)
    assert canaries.labelled()[label] not in str(hit)


@pytest.mark.parametrize(
    "part", ["name", "attributes", "event name", "event attributes", "status", "resource"]
)
def test_a_canary_anywhere_in_a_span_is_found(part: str) -> None:
    canaries = Canaries.fresh()
    leak = planted(canaries, "mrn")
    span = {
        "name": clean_span(name=leak),
        "attributes": clean_span(attributes={"cdsflow.outcome": leak}),
        "event name": clean_span(events=(CollectedEvent(leak, {}),)),
        "event attributes": clean_span(
            events=(CollectedEvent("exception", {"exception.message": leak}),)
        ),
        "status": clean_span(status_message=leak),
        "resource": clean_span(resource={"host.name": leak}),
    }[part]

    hits = hits_in_spans(canaries, [clean_span(), span])

    assert [hit.label for hit in hits] == ["mrn"]
    assert hits[0].channel == "span"


def test_a_canary_in_a_metric_label_is_found() -> None:
    canaries = Canaries.fresh()
    exposition = (
        "# TYPE cdsflow_listener_notifications_total counter\n"
        'cdsflow_listener_notifications_total{kind="put",outcome="published"} 3.0\n'
        f'cdsflow_listener_notifications_total{{kind="{canaries.birth_date}"}} 1.0\n'
    )

    [hit] = hits_in_metrics(canaries, "listener", exposition)

    assert hit.label == "birth_date"
    assert hit.where == "listener /metrics: cdsflow_listener_notifications_total"


@pytest.mark.parametrize("where", ["header name", "header value", "key"])
def test_a_canary_in_a_kafka_header_or_key_is_found(where: str) -> None:
    canaries = Canaries.fresh()
    leak = planted(canaries, "given")
    clean = HeaderedRecord("cdsflow.clinical-events.v1", 0, b"k-1", [("traceparent", b"00-ab")])
    leaking = {
        "header name": HeaderedRecord("t.dlq", 7, b"k-1", [(leak, b"x")]),
        "header value": HeaderedRecord("t.dlq", 7, b"k-1", [("error", leak.encode())]),
        "key": HeaderedRecord("t.dlq", 7, leak.encode(), []),
    }[where]

    hits = hits_in_kafka_headers(canaries, [clean, leaking])

    assert [(hit.label, hit.where.split(" ")[0]) for hit in hits] == [("given", "t.dlq")]
