"""`make charts`: copy adapters/ into the chart, lint it, and render it for review.

Renders charts/cdsflow with its defaults and with each ci/*-values.yaml (Helm's own code,
helm-python-sdk; no cluster) into .charts/<values>/<template>.yaml, and prints what each
rendering holds. Exits 1 when the chart does not lint or render.
"""

from __future__ import annotations

import shutil
import sys
from collections import Counter
from pathlib import Path

import helm_python
import yaml

REPO_ROOT = Path(__file__).resolve().parent.parent
CHART = REPO_ROOT / "charts" / "cdsflow"
OUT = REPO_ROOT / ".charts"


def sync_adapters() -> None:
    """The chart ships the repository's adapters (a ConfigMap can only hold the chart's files)."""
    target = CHART / "files" / "adapters"
    for stale in target.glob("*.yaml"):
        stale.unlink()
    for adapter in sorted((REPO_ROOT / "adapters").glob("*.yaml")):
        shutil.copyfile(adapter, target / adapter.name)


def main() -> int:
    sync_adapters()
    report = helm_python.lint(CHART, strict=True)
    for message in report["messages"]:
        print(f"lint: {message['path']}: {message['error']}")
    if report["errors"] or any(m["severity"] >= 2 for m in report["messages"]):
        return 1
    shutil.rmtree(OUT, ignore_errors=True)
    OUT.mkdir()
    (OUT / ".gitignore").write_text("*\n")
    chart = helm_python.Chart.load(CHART)
    for values_file in [None, *sorted((CHART / "ci").glob("*-values.yaml"))]:
        label = values_file.stem if values_file else "defaults"
        values = yaml.safe_load(values_file.read_text()) if values_file else {}
        rendered = chart.render(values, name="cdsflow", namespace="cdsflow", is_install=True)
        folder = OUT / label
        folder.mkdir()
        kinds: Counter[str] = Counter()
        for template, text in sorted(rendered.items()):
            if not text.strip():
                continue
            (folder / Path(template).name).write_text(text)
            if template.endswith(".yaml"):
                kinds.update(d["kind"] for d in yaml.safe_load_all(text) if d)
        summary = ", ".join(f"{count} {kind}" for kind, count in sorted(kinds.items()))
        print(f"{label}: {summary} -> {folder.relative_to(REPO_ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
