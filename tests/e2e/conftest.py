"""The whole stack, as `cdsflow up --with-ehr` starts it, once for the e2e tier."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from cdsflow.runtime.stack import Stack, StackOptions
from tests.conftest import MODEL_REPOSITORY


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    options = StackOptions(
        work_dir=Path(tmp_path_factory.mktemp("stack")),
        model_repository=MODEL_REPOSITORY,
        with_ehr=True,
    )
    running = Stack(options)
    running.start()
    try:
        yield running
    finally:
        running.stop()
