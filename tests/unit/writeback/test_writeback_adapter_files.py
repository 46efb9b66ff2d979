"""CDSFLOW_ADAPTERS: files and folders of model adapters, and the CDS services they make."""

from __future__ import annotations

from pathlib import Path

import pytest

from cdsflow.models import AdapterFileError
from cdsflow.writeback.adapter_files import configured_adapters
from cdsflow.writeback.domain.discovery import adapter_services

ADAPTERS = Path(__file__).resolve().parents[3] / "adapters"


def test_a_folder_and_a_file_give_one_service_per_hook_entry() -> None:
    adapters = configured_adapters(f"{ADAPTERS / 'deterioration-risk.yaml'}, ")

    [service] = adapter_services(adapters)
    assert (service.id, service.hook, service.adapter_id) == (
        "cdsflow-deterioration",
        "patient-view",
        "deterioration-risk",
    )
    assert service.active_version == "1"
    assert "vital_signs" in service.prefetch


def test_a_shadow_only_adapters_services_are_listed_without_an_active_version() -> None:
    services = adapter_services(configured_adapters(str(ADAPTERS)))

    shadow = [s for s in services if s.adapter_id == "medication-safety"]
    assert {s.hook for s in shadow} == {"order-select", "order-sign", "patient-view"}
    assert all(s.active_version is None for s in shadow)


def test_a_service_declared_twice_stops_the_start(tmp_path: Path) -> None:
    copy = tmp_path / "copy.yaml"
    text = (ADAPTERS / "deterioration-risk.yaml").read_text(encoding="utf-8")
    copy.write_text(text.replace("\nid: deterioration-risk\n", "\nid: deterioration-copy\n"))

    with pytest.raises(AdapterFileError, match=f"{copy}:1: CDS service cdsflow-deterioration"):
        configured_adapters(f"{ADAPTERS / 'deterioration-risk.yaml'},{copy}")


def test_two_adapters_may_score_with_one_triton_model(tmp_path: Path) -> None:
    copy = tmp_path / "orders.yaml"
    text = (ADAPTERS / "deterioration-risk.yaml").read_text(encoding="utf-8")
    text = text.replace("\nid: deterioration-risk\n", "\nid: deterioration-orders\n")
    copy.write_text(text.replace("id: cdsflow-deterioration\n", "id: test-deterioration\n"))

    adapters = configured_adapters(f"{ADAPTERS / 'deterioration-risk.yaml'},{copy}")

    assert {a.model.triton_name for a in adapters} == {"deterioration_risk"}
    assert [s.id for s in adapter_services(adapters)] == [
        "cdsflow-deterioration",
        "test-deterioration",
    ]
