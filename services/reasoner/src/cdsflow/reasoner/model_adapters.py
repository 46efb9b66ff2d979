"""The model adapters this reasoner runs, read at start from `CDSFLOW_ADAPTERS`.

Each entry is an adapter file, or a folder whose `*.yaml`/`*.yml` files are all read. A file
that is wrong stops the start with `AdapterFileError` (file:line: member: why); so does an
adapter id or a Triton model that two files declare.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from cdsflow.models import AdapterFileError, ResourceReader, load_adapter
from cdsflow.models.adapter_catalogue import ADAPTER_SUFFIXES
from cdsflow.models.adapter_file import FileProblem


def adapter_files(paths: Iterable[Path]) -> list[Path]:
    """The files named, and the adapter files of the folders named, in a stable order."""
    files: list[Path] = []
    for path in paths:
        if path.is_dir():
            files += sorted(p for p in path.iterdir() if p.suffix in ADAPTER_SUFFIXES)
        elif path.is_file():
            files.append(path)
        else:
            raise ValueError(f"{path}: no such model adapter file or folder")
    return files


def load_configured_adapters(paths: Iterable[Path]) -> tuple[ResourceReader, ...]:
    """Every adapter to run, each with its reader of resources; raises `AdapterFileError`
    for a wrong or duplicated one and `ValueError` when none is configured."""
    configured: list[ResourceReader] = []
    owners: dict[str, Path] = {}
    for path in adapter_files(paths):
        adapter = load_adapter(path)
        for claim in (f"adapter id {adapter.id}", f"Triton model {adapter.model.triton_name}"):
            if claim in owners:
                message = f"{claim} is already declared in {owners[claim]}"
                raise AdapterFileError(path, [FileProblem(1, "", message)])
            owners[claim] = path
        configured.append(ResourceReader(adapter))
    if not configured:
        raise ValueError("no model adapter configured (CDSFLOW_ADAPTERS names no adapter file)")
    return tuple(configured)
