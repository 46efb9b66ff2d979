"""The fault matrix's pipeline and its record of each run.

`CDSFLOW_FAULT_EVENTS` sets how many changes each fault case drives (default 200; `make test`
runs 20, `make faults` 10,000). Below `PIPELINE_PER_CASE_FROM` changes the cases share one
pipeline, started once for the module; from it on each case gets its own (broker, Triton,
SEKMET and services started afresh), since every case leaves its topics and its EHR writes
behind, and on the in-memory broker and SEKMET each case would otherwise run slower than the
one before. Each case's ledger is written to
`.faults/<case>.json` (`CDSFLOW_FAULT_RESULTS_DIR` to put them elsewhere); `make faults`
turns them into docs/reliability.md's tables (`scripts/reliability_report.py`).
"""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Literal

import pytest

from tests.conftest import MODEL_REPOSITORY, REPO_ROOT
from tests.support.fault_pipeline import FaultPipeline, fault_pipeline

DEFAULT_EVENTS = 200
PIPELINE_PER_CASE_FROM = 1000


def fault_events() -> int:
    """Changes driven per fault case (`CDSFLOW_FAULT_EVENTS`, at least 20)."""
    value = int(os.environ.get("CDSFLOW_FAULT_EVENTS", DEFAULT_EVENTS))
    if value < 20:
        raise ValueError("CDSFLOW_FAULT_EVENTS must be at least 20 (a fault needs a mid-stream)")
    return value


def results_dir() -> Path:
    return Path(os.environ.get("CDSFLOW_FAULT_RESULTS_DIR", REPO_ROOT / ".faults"))


@pytest.fixture(scope="session")
def events_per_case() -> int:
    return fault_events()


def pipeline_scope(fixture_name: str, config: pytest.Config) -> Literal["function", "module"]:
    """One pipeline per case at `PIPELINE_PER_CASE_FROM` changes and more, else per module."""
    return "function" if fault_events() >= PIPELINE_PER_CASE_FROM else "module"


@pytest.fixture(scope=pipeline_scope)
async def pipeline(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[FaultPipeline]:
    work_dir = tmp_path_factory.mktemp("fault-pipeline")
    async with fault_pipeline(work_dir, MODEL_REPOSITORY) as running:
        yield running


class ResultRecorder:
    """Writes one case's figures to `<results dir>/<case>.json`."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def write(self, case: str, figures: dict[str, object]) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        (self.folder / f"{case}.json").write_text(json.dumps(figures, indent=2) + "\n")


@pytest.fixture(scope="session")
def fault_results() -> ResultRecorder:
    return ResultRecorder(results_dir())
