"""Every adapter file in a folder: the models a deployment runs and the CDS services it
offers. Ids, CDS service ids and Triton model names must be unique across the files."""

from __future__ import annotations

from pathlib import Path

from cdsflow.models.adapter_schema import ModelAdapter
from cdsflow.models.adapter_set import (
    ADAPTER_SUFFIXES,
    cds_services,
    load_adapter_set,
    triton_model,
)

__all__ = ["ADAPTER_SUFFIXES", "load_adapters"]


def load_adapters(folder: Path) -> dict[str, ModelAdapter]:
    """`{adapter id: adapter}` for every `*.yaml`/`*.yml` file in `folder`, by file name.

    Raises `AdapterFileError` for the first file that is wrong, or that repeats an id, a
    CDS service id or a Triton model that another file declared.
    """
    adapters = load_adapter_set([folder], unique=(triton_model, cds_services))
    return {adapter.id: adapter for adapter in adapters}
