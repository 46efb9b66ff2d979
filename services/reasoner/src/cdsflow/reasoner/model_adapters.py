"""The model adapters this reasoner runs, read at start from `CDSFLOW_ADAPTERS`
(`cdsflow.models.load_adapter_set`: adapter files, or folders of them).

A file that is wrong stops the start with `AdapterFileError` (file:line: member: why); so does
an adapter id or a Triton model that two files declare: the reasoner scores each Triton model
for one adapter.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from cdsflow.models import ResourceReader, load_adapter_set
from cdsflow.models.adapter_set import triton_model


def load_configured_adapters(paths: Iterable[Path]) -> tuple[ResourceReader, ...]:
    """Every adapter to run, each with its reader of resources; raises `AdapterFileError`
    for a wrong or duplicated one and `ValueError` when none is configured."""
    adapters = load_adapter_set(paths, unique=(triton_model,))
    if not adapters:
        raise ValueError("no model adapter configured (CDSFLOW_ADAPTERS names no adapter file)")
    return tuple(ResourceReader(adapter) for adapter in adapters)
