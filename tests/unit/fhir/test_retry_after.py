"""`Retry-After`: seconds or an HTTP date, from when the EHR answered."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from cdsflow.fhir.retry_after import retry_after_s

NOW = datetime(2015, 10, 21, 7, 28, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("header", "seconds"),
    [
        ("3", 3.0),
        (" 120 ", 120.0),
        ("0", 0.0),
        ("Wed, 21 Oct 2015 07:28:30 GMT", 30.0),
        ("Wed, 21 Oct 2015 07:27:00 GMT", 0.0),  # in the past: no wait
        (None, None),
        ("soon", None),
        ("-5", None),
        ("1.5", None),
    ],
)
def test_retry_after_is_read_as_seconds_from_now(header: str | None, seconds: float | None) -> None:
    assert retry_after_s(header, NOW) == seconds
