"""`cdsflow evaluate` on the real Triton binary: the shipped adapter meets its gate on the
shipped FHIR evaluation set with the model card's figures (the embedded Triton started and
stopped by the command), a gate it cannot meet exits 1 naming the criterion, versions are
chosen and checked, and bad datasets or usage exit 2 with a message before Triton starts."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from cdsflow.runtime.cli import main
from tests.conftest import MODEL_REPOSITORY, REPO_ROOT, TritonEndpoint

pytestmark = pytest.mark.integration

ADAPTER = REPO_ROOT / "adapters" / "deterioration-risk.yaml"
DATASET = REPO_ROOT / "datasets" / "deterioration_risk"
CARD_METRICS = MODEL_REPOSITORY / "deterioration_risk" / "held_out_metrics.json"


def _adapter_copy(folder: Path, old: str, new: str) -> Path:
    text = ADAPTER.read_text(encoding="utf-8")
    assert old in text
    path = folder / "adapter.yaml"
    path.write_text(text.replace(old, new, 1), encoding="utf-8")
    return path


def _summary(path: Path) -> dict[str, Any]:
    summary: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return summary


def test_the_shipped_adapter_meets_its_gate_with_the_model_cards_figures(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(REPO_ROOT)  # the adapter names its dataset from the repository root
    report, summary = tmp_path / "report.html", tmp_path / "summary.json"
    status = main(["evaluate", str(ADAPTER), "--report", str(report), "--json", str(summary)])
    out, err = capsys.readouterr()
    assert status == 0, out + err
    assert "starting Triton" in err
    assert "version 1" in err  # the progress bar
    assert "gate: met" in out
    page = report.read_text(encoding="utf-8")
    assert '<figure class="roc"><svg' in page
    assert '<figure class="calibration"><svg' in page
    result = _summary(summary)
    assert result["passed"] is True
    assert result["patients"] == 3000
    (version,) = result["versions"]
    assert (version["version"], version["mode"], version["gate_failures"]) == ("1", "active", [])
    card = json.loads(CARD_METRICS.read_text(encoding="utf-8"))
    overall = version["overall"]
    at_alert_band = card["at_risk_thresholds"][0]
    assert at_alert_band["threshold"] == result["alert_threshold"] == 0.1
    assert overall["positives"] == card["deteriorated"]
    assert overall["auroc"] == pytest.approx(card["auroc"], abs=1e-6)
    assert overall["sensitivity"] == pytest.approx(at_alert_band["sensitivity"])
    assert overall["ppv"] == pytest.approx(at_alert_band["ppv"])
    # one prediction per patient-day: the alert rate per 100 patient-days is the alert share
    assert overall["alerts_per_100_patient_days"] == pytest.approx(
        100 * at_alert_band["alert_share"]
    )
    assert overall["calibration_slope"] == pytest.approx(card["calibration_slope"], abs=1e-4)
    assert overall["calibration_intercept"] == pytest.approx(
        card["calibration_intercept"], abs=1e-4
    )
    card_subgroups = {g["subgroup"]: g for g in card["subgroups"]}
    for group in version["subgroups"]:
        expected = card_subgroups[group["name"]]
        assert group["patients"] == expected["patients"], group["name"]
        assert group["auroc"] == pytest.approx(expected["auroc"], abs=1e-6), group["name"]
    assert [b["mean_predicted"] for b in version["calibration_curve"]] == pytest.approx(
        [b["mean_predicted"] for b in card["calibration_deciles"]], abs=1e-6
    )


def test_a_gate_it_cannot_meet_exits_1_naming_the_criterion(
    triton: TritonEndpoint, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    adapter = _adapter_copy(tmp_path, "min_auroc: 0.75", "min_auroc: 0.99")
    summary = tmp_path / "summary.json"
    status = main(
        [
            "evaluate",
            str(adapter),
            "--dataset",
            str(DATASET),
            "--triton-grpc-url",
            triton.grpc_url,
            "--report",
            str(tmp_path / "report.html"),
            "--json",
            str(summary),
        ]
    )
    out, err = capsys.readouterr()
    assert status == 1, out + err
    assert "gate: NOT met" in out
    assert "failed: AUROC 0." in out
    assert "is below the gate's 0.990" in out
    (version,) = _summary(summary)["versions"]
    assert version["overall"]["patients"] == 3000
    # the other bounds of the shipped gate are still met
    assert len(version["gate_failures"]) == 1
    assert version["gate_failures"][0].startswith("AUROC 0.790")
    assert (tmp_path / "report.html").read_text(encoding="utf-8").count("<svg") == 2


def test_every_declared_version_is_evaluated_or_the_one_asked_for(
    triton: TritonEndpoint, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    adapter = _adapter_copy(
        tmp_path,
        "    - version: 1\n      mode: active\n",
        "    - version: 1\n      mode: active\n    - version: 2\n      mode: shadow\n",
    )
    common = ["--dataset", str(DATASET), "--triton-grpc-url", triton.grpc_url]
    summary = tmp_path / "summary.json"
    only_one = ["--version", "1", "--report", str(tmp_path / "r.html"), "--json", str(summary)]
    assert main(["evaluate", str(adapter), *common, *only_one]) == 0
    assert [v["version"] for v in _summary(summary)["versions"]] == ["1"]
    capsys.readouterr()
    # without --version, version 2 is evaluated too: the repository does not serve it
    every = [*common, "--limit", "300", "--report", str(tmp_path / "all.html")]
    assert main(["evaluate", str(adapter), *every]) == 1
    assert "does not serve deterioration_risk version 2" in capsys.readouterr().err
    assert not (tmp_path / "all.html").exists()


def test_a_broken_dataset_exits_2_naming_the_file_and_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    broken = tmp_path / "dataset"
    broken.mkdir()
    shutil.copy(DATASET / "bundles.ndjson.gz", broken)
    lines = (DATASET / "outcomes.csv").read_text(encoding="utf-8").splitlines()
    lines[7] = lines[7].rsplit(",", 2)[0] + ",maybe,1"
    (broken / "outcomes.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    status = main(["evaluate", str(ADAPTER), "--dataset", str(broken)])
    err = capsys.readouterr().err
    assert status == 2
    assert f"{broken / 'outcomes.csv'}:8: label 'maybe' must be 0 or 1" in err
    assert "starting Triton" not in err


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["no-such-adapter.yaml"], "no-such-adapter.yaml"),
        ([str(ADAPTER), "--version", "7"], "declares no version 7 (it declares 1)"),
        ([str(ADAPTER), "--triton-grpc-url", "http://127.0.0.1:1"], None),
        ([str(ADAPTER), "--limit", "0"], None),
    ],
)
def test_bad_usage_exits_2_with_a_message(
    arguments: list[str], message: str | None, capsys: pytest.CaptureFixture[str]
) -> None:
    if message is None:  # refused by the argument parser
        with pytest.raises(SystemExit) as refused:
            main(["evaluate", *arguments, "--dataset", str(DATASET)])
        assert refused.value.code == 2
        assert "cdsflow evaluate: error: argument" in capsys.readouterr().err
        return
    assert main(["evaluate", *arguments, "--dataset", str(DATASET)]) == 2
    assert message in capsys.readouterr().err


def test_an_adapter_without_a_gate_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = ADAPTER.read_text(encoding="utf-8")
    without = tmp_path / "adapter.yaml"
    without.write_text(text[: text.index("\nevaluation:")] + "\n", encoding="utf-8")
    assert main(["evaluate", str(without), "--dataset", str(DATASET)]) == 2
    assert "adapter deterioration-risk declares no evaluation gate" in capsys.readouterr().err
