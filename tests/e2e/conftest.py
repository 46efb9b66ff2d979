"""The whole stack, as `cdsflow up --with-ehr --adapters ...` starts it, once for the e2e tier.

It runs what a health system runs after promoting its models: the deterioration adapter with
version 1 active and version 2 in shadow beside it (both served by Triton), and the
medication-safety adapter promoted to active (it ships in shadow)."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from cdsflow.models import load_adapter
from cdsflow.runtime.stack import Stack, StackOptions
from tests.conftest import MODEL_REPOSITORY
from tests.support.risk_model import risk_model_repository

ADAPTERS = Path(__file__).resolve().parents[2] / "adapters"
SHIPPED_VERSIONS = "  versions:\n    - version: 1\n      mode: {mode}\n"
PROMOTED = {
    "deterioration-risk.yaml": "  versions:\n    - version: 1\n      mode: active\n"
    "    - version: 2\n      mode: shadow\n",
    "medication-safety.yaml": "  versions:\n    - version: 1\n      mode: active\n",
}
SHADOW_VERSION = "2"


def promoted_adapters(folder: Path) -> Path:
    """Copies of the shipped adapters with the versions and modes of `PROMOTED`."""
    folder.mkdir()
    for name, versions in PROMOTED.items():
        text = (ADAPTERS / name).read_text(encoding="utf-8")
        shipped = next(
            SHIPPED_VERSIONS.format(mode=mode)
            for mode in ("active", "shadow")
            if SHIPPED_VERSIONS.format(mode=mode) in text
        )
        (folder / name).write_text(text.replace(shipped, versions), encoding="utf-8")
        load_adapter(folder / name)
    return folder


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    models = tmp_path_factory.mktemp("models")
    repository = risk_model_repository(models, ("1", SHADOW_VERSION))
    shutil.copytree(MODEL_REPOSITORY / "medication_safety", repository / "medication_safety")
    options = StackOptions(
        work_dir=Path(tmp_path_factory.mktemp("stack")),
        model_repository=repository,
        with_ehr=True,
        adapters=(promoted_adapters(tmp_path_factory.mktemp("adapters") / "adapters"),),
    )
    running = Stack(options)
    running.start()
    try:
        yield running
    finally:
        running.stop()
