"""The committed protobuf code must be what `make proto` generates from proto/ today."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]
GENERATED = REPO / "libs" / "contracts" / "src"


def test_generated_code_matches_proto(tmp_path: Path) -> None:
    protos = sorted(str(p.relative_to(REPO / "proto")) for p in (REPO / "proto").rglob("*.proto"))
    assert protos, "no .proto files found"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "grpc_tools.protoc",
            "-Iproto",
            f"--python_out={tmp_path}",
            f"--mypy_out={tmp_path}",
            *[f"proto/{p}" for p in protos],
        ],
        cwd=REPO,
        check=True,
        capture_output=True,
    )
    fresh = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*_pb2.py*"))
    assert fresh, "protoc generated nothing"
    stale = [
        str(path)
        for path in fresh
        if not (GENERATED / path).exists()
        or (GENERATED / path).read_bytes() != (tmp_path / path).read_bytes()
    ]
    assert not stale, f"generated code is stale, run `make proto`: {stale}"


def test_round_trip_of_a_clinical_event() -> None:
    from cdsflow.contracts import ClinicalEvent, EventSource, NotificationKind

    event = ClinicalEvent(
        event_id="e1",
        resource_type="Observation",
        resource_id="o1",
        patient_key="k",
        source=EventSource(kind=NotificationKind.NOTIFICATION_KIND_REST_HOOK_FULL_RESOURCE),
    )
    decoded = ClinicalEvent.FromString(event.SerializeToString())
    assert decoded == event
    assert decoded.source.kind == NotificationKind.NOTIFICATION_KIND_REST_HOOK_FULL_RESOURCE
