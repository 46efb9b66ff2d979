"""CDSFLOW_ADAPTERS as the reasoner reads it: each Triton model scored for one adapter."""

from __future__ import annotations

from pathlib import Path

import pytest

from cdsflow.models import AdapterFileError
from cdsflow.reasoner.model_adapters import load_configured_adapters

ADAPTERS = Path(__file__).resolve().parents[3] / "adapters"
DETERIORATION = ADAPTERS / "deterioration-risk.yaml"


def test_the_shipped_folder_gives_one_reader_per_adapter() -> None:
    readers = load_configured_adapters([ADAPTERS])

    assert [r.adapter.id for r in readers] == ["deterioration-risk", "medication-safety"]


def test_two_adapters_of_one_triton_model_stop_the_start(tmp_path: Path) -> None:
    copy = tmp_path / "copy.yaml"
    text = DETERIORATION.read_text(encoding="utf-8")
    copy.write_text(text.replace("\nid: deterioration-risk\n", "\nid: deterioration-copy\n"))

    with pytest.raises(AdapterFileError, match=f"{copy}:1: Triton model deterioration_risk"):
        load_configured_adapters([DETERIORATION, copy])


def test_no_adapter_configured_stops_the_start(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="no model adapter configured"):
        load_configured_adapters([tmp_path])
