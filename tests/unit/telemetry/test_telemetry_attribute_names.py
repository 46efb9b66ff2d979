"""Every `cdsflow.*` span attribute that the code sets is on the export allowlist; one that
is not would be dropped silently on its way to the trace backend."""

from __future__ import annotations

import re
from pathlib import Path

from cdsflow.telemetry import ALLOWED_SPAN_ATTRIBUTES
from tests.conftest import REPO_ROOT

# `set_attribute("cdsflow.x", ...)` and `"cdsflow.x": ...` in an attributes mapping
SET_ATTRIBUTE = re.compile(r'set_attribute\(\s*"(cdsflow\.[\w.]+)"')
MAPPING_KEY = re.compile(r'"(cdsflow\.[\w.]+)"\s*:')


def attribute_names_set_in(folder: Path) -> set[str]:
    names: set[str] = set()
    for source in folder.rglob("*.py"):
        text = source.read_text()
        names |= set(SET_ATTRIBUTE.findall(text)) | set(MAPPING_KEY.findall(text))
    return names


def test_every_cdsflow_span_attribute_set_is_exported() -> None:
    used = attribute_names_set_in(REPO_ROOT / "services") | attribute_names_set_in(
        REPO_ROOT / "libs"
    )
    assert "cdsflow.patient_key" in used  # the scan finds what it looks for
    assert used - ALLOWED_SPAN_ATTRIBUTES == set()
