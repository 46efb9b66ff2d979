"""A labelled dataset that cannot be read is refused with the file, the line (and the Bundle
entry) that is wrong."""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Any

import pytest

from cdsflow.evaluation.labelled_dataset import DatasetError, read_labelled_dataset

HEADER = "patient_id,as_of,label,observation_days\n"


def _bundle(patient_id: str, *more: dict[str, Any]) -> dict[str, Any]:
    patient = {"resourceType": "Patient", "id": patient_id, "gender": "female"}
    return {
        "resourceType": "Bundle",
        "type": "collection",
        "entry": [{"resource": patient}, *({"resource": r} for r in more)],
    }


def _dataset(folder: Path, lines: list[str], outcomes: str, compressed: bool = True) -> Path:
    folder.mkdir(exist_ok=True)
    text = "".join(line + "\n" for line in lines)
    if compressed:
        (folder / "bundles.ndjson.gz").write_bytes(gzip.compress(text.encode()))
    else:
        (folder / "bundles.ndjson").write_text(text)
    (folder / "outcomes.csv").write_text(outcomes)
    return folder


GOOD_LINES = [json.dumps(_bundle("a")), json.dumps(_bundle("b"))]
GOOD_OUTCOMES = HEADER + "a,2026-03-02T08:00:00Z,1,1\nb,2026-03-02T09:30:00+01:00,0,2.5\n"


@pytest.mark.parametrize("compressed", [True, False])
def test_a_good_dataset_reads_in_bundle_order(tmp_path: Path, compressed: bool) -> None:
    patients = read_labelled_dataset(
        _dataset(tmp_path / "d", GOOD_LINES, GOOD_OUTCOMES, compressed)
    )
    assert [(p.patient_id, p.label, p.observation_days) for p in patients] == [
        ("a", True, 1.0),
        ("b", False, 2.5),
    ]
    assert patients[1].as_of.utcoffset() is not None
    assert len(read_labelled_dataset(tmp_path / "d", limit=1)) == 1


@pytest.mark.parametrize(
    ("lines", "outcomes", "message"),
    [
        ([GOOD_LINES[0], "{not json"], GOOD_OUTCOMES, r"bundles\.ndjson\.gz:2: not JSON"),
        (
            [GOOD_LINES[0], json.dumps({"resourceType": "Patient"})],
            GOOD_OUTCOMES,
            r"bundles\.ndjson\.gz:2: not a FHIR Bundle",
        ),
        (
            [GOOD_LINES[0], json.dumps(_bundle("b", {"id": "x"}))],
            GOOD_OUTCOMES,
            r"bundles\.ndjson\.gz:2: entry\[1\] has no resource with a resourceType",
        ),
        (
            [json.dumps(_bundle("a", {"resourceType": "Patient", "id": "c"}))],
            GOOD_OUTCOMES,
            r"bundles\.ndjson\.gz:1: the Bundle must hold one Patient, it holds 2",
        ),
        ([*GOOD_LINES, json.dumps(_bundle("z"))], GOOD_OUTCOMES, r":3: patient 'z' has no row"),
        (GOOD_LINES[:1], GOOD_OUTCOMES, r"outcomes\.csv: 1 patient\(s\) have no Bundle.*'b'"),
        (GOOD_LINES, "id,label\n", r"outcomes\.csv:1: the header must be"),
        (GOOD_LINES, HEADER + "a,2026-03-02T08:00:00Z,yes,1\n", r"outcomes\.csv:2: label 'yes'"),
        (GOOD_LINES, HEADER + "a,2026-03-02,1,1\n", r"outcomes\.csv:2: as_of '2026-03-02' is"),
        (
            GOOD_LINES,
            HEADER + "a,2026-03-02T08:00:00,1,1\n",
            r"outcomes\.csv:2: as_of .* with a zone",
        ),
        (GOOD_LINES, HEADER + "a,2026-03-02T08:00:00Z,1,0\n", r"outcomes\.csv:2: observation_days"),
        (
            GOOD_LINES,
            GOOD_OUTCOMES + "a,2026-03-02T08:00:00Z,1,1\n",
            r"outcomes\.csv:4: patient 'a' is listed twice",
        ),
    ],
)
def test_a_broken_dataset_names_the_file_and_line(
    tmp_path: Path, lines: list[str], outcomes: str, message: str
) -> None:
    with pytest.raises(DatasetError, match=message):
        read_labelled_dataset(_dataset(tmp_path / "d", lines, outcomes))


def test_missing_files_are_named(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="no such dataset folder"):
        read_labelled_dataset(tmp_path / "absent")
    (tmp_path / "d").mkdir()
    with pytest.raises(DatasetError, match=r"outcomes\.csv: the dataset has no outcomes file"):
        read_labelled_dataset(tmp_path / "d")
    (tmp_path / "d" / "outcomes.csv").write_text(GOOD_OUTCOMES)
    with pytest.raises(DatasetError, match=r"no bundles\.ndjson\.gz or bundles\.ndjson"):
        read_labelled_dataset(tmp_path / "d")
    (tmp_path / "d" / "bundles.ndjson.gz").write_bytes(b"not gzip at all")
    with pytest.raises(DatasetError, match=r"bundles\.ndjson\.gz: cannot be read"):
        read_labelled_dataset(tmp_path / "d")
