"""Every adapter file in a folder: the models a deployment runs and the CDS services it
offers. Ids, CDS service ids and Triton model names must be unique across the files."""

from __future__ import annotations

from pathlib import Path

from cdsflow.models.adapter_file import AdapterFileError, FileProblem, load_adapter
from cdsflow.models.adapter_schema import ModelAdapter

ADAPTER_SUFFIXES = (".yaml", ".yml")


def load_adapters(folder: Path) -> dict[str, ModelAdapter]:
    """`{adapter id: adapter}` for every `*.yaml`/`*.yml` file in `folder`, by file name.

    Raises `AdapterFileError` for the first file that is wrong, or that repeats an id, a
    CDS service id or a Triton model that another file declared.
    """
    adapters: dict[str, ModelAdapter] = {}
    owners: dict[str, Path] = {}
    files = sorted(p for p in folder.iterdir() if p.suffix in ADAPTER_SUFFIXES and p.is_file())
    for path in files:
        adapter = load_adapter(path)
        claims = [
            f"adapter id {adapter.id}",
            f"Triton model {adapter.model.triton_name}",
            *(f"CDS service {hook.id}" for hook in adapter.hooks),
        ]
        for claim in claims:
            if claim in owners:
                message = f"{claim} is already declared in {owners[claim].name}"
                raise AdapterFileError(path, [FileProblem(1, "", message)])
            owners[claim] = path
        adapters[adapter.id] = adapter
    return adapters
