"""Parsing a client's JSON never fails with anything but `MalformedJson` (issue 5, defect 3)."""

from __future__ import annotations

import pytest

from cdsflow.fhir import MAX_JSON_DEPTH, MalformedJson, parse_json_document
from cdsflow.fhir.json_documents import json_depth


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"[" * 990 + b"]" * 990, "too-deep"),
        (b"[" * 200_000, "too-deep"),
        (b"[" * (MAX_JSON_DEPTH + 1) + b"]" * (MAX_JSON_DEPTH + 1), "too-deep"),
        (b"9" * 4301, "number-out-of-range"),
        (b"[1e400]", "number-out-of-range"),
        (b"[-1e400]", "number-out-of-range"),
        (b"[NaN]", "not-json"),
        (b"[Infinity]", "not-json"),
        (b"{", "not-json"),
        (b"", "not-json"),
        (b"\xef\xbb\xbf{}", "not-json"),  # a byte-order mark is not JSON text
        ("{}".encode("utf-16"), "not-utf8"),
        (b"\xff", "not-utf8"),
    ],
)
def test_what_would_crash_or_mislead_a_parser_is_refused_by_reason(raw: bytes, reason: str) -> None:
    with pytest.raises(MalformedJson) as refused:
        parse_json_document(raw)
    assert refused.value.reason == reason


def test_the_depth_limit_is_inclusive() -> None:
    raw = b"[" * MAX_JSON_DEPTH + b"]" * MAX_JSON_DEPTH
    assert json_depth(parse_json_document(raw)) == MAX_JSON_DEPTH


def test_ordinary_json_is_returned() -> None:
    assert parse_json_document(b'{"a": [1, 2.5, "x", true, null]}') == {
        "a": [1, 2.5, "x", True, None]
    }
