"""The CLI loads what a command needs when that command runs: `cdsflow hook`, `up` and `demo`
do not import the evaluation (scikit-learn, SciPy, the report's plots), which took 7 of the
9.5 s that `cdsflow hook --help` spent starting on a quiet machine, and past a minute under
load. Checked in a fresh interpreter, where nothing was imported before."""

from __future__ import annotations

import json
import subprocess
import sys

HEAVY = ("sklearn", "scipy", "cdsflow.evaluation", "tritonclient")


def modules_after(statement: str) -> set[str]:
    shown = subprocess.run(
        [
            sys.executable,
            "-c",
            f"{statement}\nimport sys, json; print(json.dumps(list(sys.modules)))",
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    return set(json.loads(shown.stdout.splitlines()[-1]))


def test_the_cli_module_does_not_load_the_evaluation() -> None:
    loaded = modules_after("import cdsflow.runtime.cli")
    assert not [m for m in loaded if m.split(".")[0] in HEAVY or m.startswith(HEAVY)]


def test_the_evaluate_command_loads_it_when_it_runs() -> None:
    loaded = modules_after(
        "from cdsflow.runtime.evaluate_command import run_evaluate\n"
        "import argparse, pathlib\n"
        "run_evaluate(argparse.Namespace(adapter=pathlib.Path('/nonexistent.yaml'), version=None))"
    )
    assert "cdsflow.evaluation.evaluation_run" in loaded
