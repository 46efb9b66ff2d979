"""The model adapters this writeback serves: `CDSFLOW_ADAPTERS`, files or folders of them
(`*.yaml`/`*.yml`), separated by commas, as the reasoner reads them.

An adapter id or CDS service id declared twice is refused at start, as is a file that is
wrong (`AdapterFileError` names the file, the line and the member).
"""

from __future__ import annotations

from pathlib import Path

from cdsflow.models import AdapterFileError, ModelAdapter, load_adapter
from cdsflow.models.adapter_catalogue import load_adapters
from cdsflow.models.adapter_file import FileProblem


def configured_adapters(setting: str) -> tuple[ModelAdapter, ...]:
    """Every adapter named by the setting, in the order given (a folder's by file name)."""
    adapters: list[ModelAdapter] = []
    owners: dict[str, Path] = {}
    for part in (p.strip() for p in setting.split(",")):
        if not part:
            continue
        path = Path(part)
        found = list(load_adapters(path).values()) if path.is_dir() else [load_adapter(path)]
        for adapter in found:
            for claim in (
                f"adapter id {adapter.id}",
                *(f"CDS service {h.id}" for h in adapter.hooks),
            ):
                if claim in owners:
                    message = f"{claim} is already declared in {owners[claim]}"
                    raise AdapterFileError(path, [FileProblem(1, "", message)])
                owners[claim] = path
            adapters.append(adapter)
    return tuple(adapters)
