"""What `serve` sets for the whole process before it serves: the garbage collector's
young-generation threshold."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from cdsflow.service import ServiceSettings
from cdsflow.service.server import tune_garbage_collection


@pytest.fixture
def thresholds_restored() -> Iterator[tuple[int, int, int]]:
    before = gc.get_threshold()
    try:
        yield before
    finally:
        gc.set_threshold(*before)


def test_only_the_young_generations_threshold_is_set(
    thresholds_restored: tuple[int, int, int],
) -> None:
    settings = ServiceSettings(
        ehr_base_url="http://ehr.test/fhir", http_port=8080, gc_young_threshold=12_345
    )

    tune_garbage_collection(settings)

    _, older, oldest = thresholds_restored
    assert gc.get_threshold() == (12_345, older, oldest)
