"""scripts/reliability_report.py rewrites only its own section of docs/reliability.md."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from types import ModuleType

SCRIPT = Path(__file__).resolve().parents[3] / "scripts" / "reliability_report.py"


def report_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("reliability_report", SCRIPT)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def result(
    case: str, lost: int = 0, dead_letters: dict[str, int] | None = None
) -> dict[str, object]:
    return {
        "case": case,
        "fault": f"the {case} fault",
        "measured_at": "2026-11-30T05:00:00+00:00",
        "events_per_case": 200,
        "changes": 200,
        "patients": 8,
        "notifications_sent": 210,
        "not_acknowledged": 10,
        "acknowledged_s": 10.0,
        "settled_s": 20.0,
        "changes_per_s": 10.0,
        "ledger": {
            "changes": 200,
            "events": 200,
            "event_copies": 3,
            "recommendations": 200,
            "recommendation_copies": 4,
            "ehr_writes": 200,
            "active_recommendations": 200,
            "lost": lost,
            "duplicated": 0,
        },
        "dead_letters": dead_letters or {},
        "poisoned": dead_letters or {},
    }


def test_the_tables_replace_only_the_generated_section(tmp_path: Path) -> None:
    report = report_module()
    results = tmp_path / "results"
    results.mkdir()
    (results / "a.json").write_text(
        json.dumps(result("poison-per-topic", dead_letters={"t.dlq": 3}))
    )
    (results / "b.json").write_text(json.dumps(result("no-fault")))
    doc = tmp_path / "reliability.md"
    doc.write_text(
        "# Reliability\n\n## Hostile inputs and PHI canaries\n\nkept\n\n## Fault matrix\n\nhow\n"
    )

    report.rewrite(doc, report.generated_section(report.load_results(results)))
    first = doc.read_text()
    report.rewrite(doc, report.generated_section(report.load_results(results)))

    assert doc.read_text() == first  # regenerated in place, not appended again
    assert first.count("## Load held") == 1
    assert first.count("### The last run") == 1
    assert "## Hostile inputs and PHI canaries\n\nkept\n\n## Fault matrix\n\nhow\n" in first
    assert "at 200 changes per fault case" in first
    assert "Last run: `make faults`" in first
    assert "Lost in all cases: **0**" in first
    # no-fault first (the order of the matrix), the poison's dead letters beside what was poisoned
    assert first.index("the no-fault fault") < first.index("the poison-per-topic fault")
    assert "3 on `t.dlq` (3 poisoned)" in first


def test_a_loss_is_summed_into_the_headline(tmp_path: Path) -> None:
    report = report_module()
    section = report.generated_section([result("no-fault"), result("broker-paused", lost=2)])
    assert "Lost in all cases: **2**" in section


def test_lost_notifications_and_their_recovery_are_shown_with_the_fault(tmp_path: Path) -> None:
    report = report_module()
    dropped = {
        **result("dropped-notification"),
        "notifications_sent": 200,
        "notifications_lost": 9,
        "gap_recovery": {"gaps_detected": 2, "gaps_recovered": 2, "recovered_events": 11},
    }
    section = report.generated_section([result("no-fault"), dropped])
    assert (
        "the dropped-notification fault: 9 of 200 notifications lost; 2 gap(s) detected, "
        "2 recovered, 11 events published by the recovery |" in section
    )
