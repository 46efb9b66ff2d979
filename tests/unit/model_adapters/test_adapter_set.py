"""`load_adapter_set`: the adapter files and folders a service is configured with."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from cdsflow.models import AdapterFileError, load_adapter_set
from cdsflow.models.adapter_set import cds_services, triton_model

ADAPTERS = Path(__file__).resolve().parents[3] / "adapters"
DETERIORATION = ADAPTERS / "deterioration-risk.yaml"


def renamed_copy(folder: Path, name: str, adapter_id: str) -> Path:
    """The deterioration adapter under another id (same Triton model, same CDS service)."""
    path = folder / name
    text = DETERIORATION.read_text(encoding="utf-8")
    path.write_text(text.replace("\nid: deterioration-risk\n", f"\nid: {adapter_id}\n"))
    return path


def test_files_and_folders_in_the_order_given_a_folders_by_file_name(tmp_path: Path) -> None:
    renamed_copy(tmp_path, "b.yml", "b-copy")
    renamed_copy(tmp_path, "a.yaml", "a-copy")
    (tmp_path / "notes.txt").write_text("not an adapter")
    (tmp_path / "folder.yaml").mkdir()

    adapters = load_adapter_set([tmp_path, DETERIORATION])

    assert [a.id for a in adapters] == ["a-copy", "b-copy", "deterioration-risk"]


def test_nothing_named_is_no_adapter() -> None:
    assert load_adapter_set([]) == ()


def test_an_adapter_id_declared_twice_names_both_files(tmp_path: Path) -> None:
    copy = tmp_path / "copy.yaml"
    shutil.copy(DETERIORATION, copy)

    with pytest.raises(AdapterFileError) as raised:
        load_adapter_set([DETERIORATION, copy])

    assert str(raised.value) == (
        f"{copy}:1: adapter id deterioration-risk is already declared in {DETERIORATION}"
    )


def test_a_shared_triton_model_or_service_is_refused_only_when_asked(tmp_path: Path) -> None:
    copy = renamed_copy(tmp_path, "copy.yaml", "deterioration-copy")

    assert len(load_adapter_set([DETERIORATION, copy])) == 2
    with pytest.raises(AdapterFileError, match="Triton model deterioration_risk is already"):
        load_adapter_set([DETERIORATION, copy], unique=(triton_model,))
    with pytest.raises(AdapterFileError, match="CDS service cdsflow-deterioration is already"):
        load_adapter_set([DETERIORATION, copy], unique=(cds_services,))


def test_a_wrong_file_is_named_with_its_line(tmp_path: Path) -> None:
    wrong = tmp_path / "wrong.yaml"
    wrong.write_text(DETERIORATION.read_text(encoding="utf-8").replace("triton_name:", "triton:"))

    with pytest.raises(AdapterFileError, match=rf"{wrong}:\d+: model\.triton"):
        load_adapter_set([tmp_path])


def test_a_path_that_is_neither_file_nor_folder_is_named(tmp_path: Path) -> None:
    missing = tmp_path / "missing.yaml"

    with pytest.raises(FileNotFoundError, match="no such model adapter file or folder"):
        load_adapter_set([missing])
