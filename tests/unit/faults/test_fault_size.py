"""CDSFLOW_FAULT_EVENTS: the fault matrix's size per case."""

from __future__ import annotations

import pytest

from tests.faults.conftest import DEFAULT_EVENTS, fault_events


def test_the_default_size_is_the_reduced_one(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CDSFLOW_FAULT_EVENTS", raising=False)
    assert fault_events() == DEFAULT_EVENTS == 200


def test_make_faults_size_is_read(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CDSFLOW_FAULT_EVENTS", "10000")
    assert fault_events() == 10_000


@pytest.mark.parametrize("size", ["19", "0", "-5"])
def test_a_size_too_small_for_a_mid_stream_is_refused(
    monkeypatch: pytest.MonkeyPatch, size: str
) -> None:
    monkeypatch.setenv("CDSFLOW_FAULT_EVENTS", size)
    with pytest.raises(ValueError, match="at least 20"):
        fault_events()
