"""The CDS Hooks 2.0 discovery document: one service per hook that a model adapter declares.

Each service carries the adapter's `prefetch` templates: a stored recommendation needs none
of it, but a call that must be scored on demand (no recommendation yet, or an order being
selected or signed) is scored from it. A service whose adapter has no `active` version is
listed too (an EHR configured with it keeps working while the model is in shadow); it
answers `{"cards": []}`, since a shadow result is never shown.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from cdsflow.models import ModelAdapter
from cdsflow.writeback.domain.hook_requests import PATIENT_VIEW
from cdsflow.writeback.domain.recommendations import LEGACY_ADAPTER_ID


@dataclass(frozen=True)
class CdsService:
    id: str
    hook: str
    title: str
    description: str
    # the adapter whose recommendations the service shows
    adapter_id: str = LEGACY_ADAPTER_ID
    prefetch: Mapping[str, str] = field(default_factory=dict)
    # the adapter's active model version; None when every version is shadow (no cards)
    active_version: str | None = "1"

    def discovery_entry(self) -> dict[str, Any]:
        entry: dict[str, Any] = {
            "hook": self.hook,
            "id": self.id,
            "title": self.title,
            "description": self.description,
        }
        if self.prefetch:
            entry["prefetch"] = dict(self.prefetch)
        return entry


DETERIORATION_SERVICE = CdsService(
    id="cdsflow-deterioration",
    hook=PATIENT_VIEW,
    title="Clinical deterioration risk",
    description=(
        "Shows the health system's own deterioration model's latest assessment of the "
        "patient, computed from the patient's recent vital signs; AI-generated."
    ),
)


def active_version(adapter: ModelAdapter) -> str | None:
    """The version whose results are shown (an adapter has at most one), else None."""
    return next((v.version for v in adapter.model.versions if v.mode == "active"), None)


def adapter_services(adapters: Iterable[ModelAdapter]) -> tuple[CdsService, ...]:
    """One service per hook entry of each adapter, in file order."""
    return tuple(
        CdsService(
            id=hook.id,
            hook=hook.hook,
            title=hook.title,
            description=hook.description,
            adapter_id=adapter.id,
            prefetch=dict(hook.prefetch or {}),
            active_version=active_version(adapter),
        )
        for adapter in adapters
        for hook in adapter.hooks
    )


def discovery_document(services: tuple[CdsService, ...]) -> dict[str, Any]:
    """`GET /cds-services`: `{"services": [...]}`."""
    return {"services": [service.discovery_entry() for service in services]}
