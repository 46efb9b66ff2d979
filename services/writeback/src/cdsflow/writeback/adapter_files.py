"""The model adapters this writeback serves: `CDSFLOW_ADAPTERS`, files or folders of them
(`*.yaml`/`*.yml`), separated by commas, read as the reasoner reads them
(`cdsflow.models.load_adapter_set`).

A file that is wrong is refused at start (`AdapterFileError` names the file, the line and the
member), as is an adapter id or a CDS service id that two files declare. Two adapters may
score with one Triton model (answering different hooks).
"""

from __future__ import annotations

from pathlib import Path

from cdsflow.models import ModelAdapter, load_adapter_set
from cdsflow.models.adapter_set import cds_services


def configured_adapters(setting: str) -> tuple[ModelAdapter, ...]:
    """Every adapter named by the setting, in the order given (a folder's by file name)."""
    paths = [Path(part.strip()) for part in setting.split(",") if part.strip()]
    return load_adapter_set(paths, unique=(cds_services,))
