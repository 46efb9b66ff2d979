"""The adapters a service runs: adapter files, and folders whose `*.yaml`/`*.yml` files are all
read (`CDSFLOW_ADAPTERS` names them, separated by commas).

A file that is wrong raises `AdapterFileError` (file:line: member: why, as `load_adapter`
says); so does an adapter id that two files declare, naming both files. A service that wants
more unique across its adapters (a Triton model, a CDS service) says which with `unique`.
"""

from __future__ import annotations

import errno
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

from cdsflow.models.adapter_file import AdapterFileError, FileProblem, load_adapter
from cdsflow.models.adapter_schema import ModelAdapter

ADAPTER_SUFFIXES = (".yaml", ".yml")

Claims = Callable[[ModelAdapter], Iterable[str]]
"""What an adapter declares that no other adapter of the set may declare too, each as it is
named in the error (`Triton model deterioration_risk`)."""


def triton_model(adapter: ModelAdapter) -> tuple[str, ...]:
    """The Triton model the adapter scores with."""
    return (f"Triton model {adapter.model.triton_name}",)


def cds_services(adapter: ModelAdapter) -> tuple[str, ...]:
    """The CDS services the adapter's hooks offer."""
    return tuple(f"CDS service {hook.id}" for hook in adapter.hooks)


def adapter_files(paths: Iterable[Path]) -> list[Path]:
    """The files named, and the adapter files of the folders named (by file name), in order;
    `FileNotFoundError` for a path that is neither."""
    files: list[Path] = []
    for path in paths:
        if path.is_dir():
            files += sorted(
                p for p in path.iterdir() if p.suffix in ADAPTER_SUFFIXES and p.is_file()
            )
        elif path.is_file():
            files.append(path)
        else:
            raise FileNotFoundError(errno.ENOENT, "no such model adapter file or folder", str(path))
    return files


def load_adapter_set(
    paths: Iterable[Path], *, unique: Sequence[Claims] = ()
) -> tuple[ModelAdapter, ...]:
    """Every adapter of `paths` (see `adapter_files`), in that order. Raises
    `AdapterFileError` for the first file that is wrong, or that repeats an adapter id (or a
    claim of `unique`) that an earlier file declared."""
    adapters: list[ModelAdapter] = []
    owners: dict[str, Path] = {}
    for path in adapter_files(paths):
        adapter = load_adapter(path)
        claims = [f"adapter id {adapter.id}", *(c for claim in unique for c in claim(adapter))]
        for claim in claims:
            if claim in owners:
                message = f"{claim} is already declared in {owners[claim]}"
                raise AdapterFileError(path, [FileProblem(1, "", message)])
            owners[claim] = path
        adapters.append(adapter)
    return tuple(adapters)
