from __future__ import annotations

from pathlib import Path

import pytest

from cdsflow.models.__main__ import main

from .adapter_fixtures import ADAPTERS, DETERIORATION


def test_the_shipped_folder_checks(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", str(ADAPTERS)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out == [
        "deterioration-risk: deterioration_risk (v1 active); services: cdsflow-deterioration",
        "medication-safety: medication_safety (v1 shadow); services: "
        "cdsflow-medication-safety-select, cdsflow-medication-safety-sign, "
        "cdsflow-medication-safety",
    ]


def test_a_wrong_file_exits_1_with_its_lines(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    wrong = tmp_path / "wrong.yaml"
    wrong.write_text(
        DETERIORATION.read_text(encoding="utf-8").replace("window: 24h", "window: a day", 1),
        encoding="utf-8",
    )
    assert main(["check", str(DETERIORATION), str(wrong), str(tmp_path / "absent.yaml")]) == 1
    captured = capsys.readouterr()
    assert captured.out.startswith("deterioration-risk: ")
    errors = captured.err.splitlines()
    assert errors[0].startswith(f"{wrong}:")
    assert "data.respiratory_rate.window" in errors[0]
    assert errors[1].startswith(f"{tmp_path / 'absent.yaml'}: ")


def test_bad_usage_exits_2() -> None:
    with pytest.raises(SystemExit) as raised:
        main(["verify"])
    assert raised.value.code == 2
