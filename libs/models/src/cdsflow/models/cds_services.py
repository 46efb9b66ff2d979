"""The CDS services an adapter offers, as CDS Hooks 2.0 discovery entries."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from cdsflow.models.adapter_schema import ModelAdapter


def discovery_entries(adapters: Iterable[ModelAdapter]) -> list[dict[str, Any]]:
    """One `GET /cds-services` entry per declared hook, in file order; `prefetch` only when
    the adapter declares one."""
    entries = []
    for adapter in adapters:
        for hook in adapter.hooks:
            entry: dict[str, Any] = {
                "hook": hook.hook,
                "id": hook.id,
                "title": hook.title,
                "description": hook.description,
            }
            if hook.prefetch:
                entry["prefetch"] = dict(hook.prefetch)
            entries.append(entry)
    return entries
