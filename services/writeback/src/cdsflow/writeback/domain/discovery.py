"""The CDS Hooks 2.0 discovery document: the one service that the writeback offers.

No prefetch is declared: the cards come from recommendations already computed, so asking
the EHR to send the patient's record with every call would move patient data for nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from cdsflow.writeback.domain.hook_requests import PATIENT_VIEW


@dataclass(frozen=True)
class CdsService:
    id: str
    hook: str
    title: str
    description: str

    def discovery_entry(self) -> dict[str, Any]:
        return {
            "hook": self.hook,
            "id": self.id,
            "title": self.title,
            "description": self.description,
        }


DETERIORATION_SERVICE = CdsService(
    id="cdsflow-deterioration",
    hook=PATIENT_VIEW,
    title="Clinical deterioration risk",
    description=(
        "Shows the health system's own deterioration model's latest assessment of the "
        "patient, computed from the patient's recent vital signs; AI-generated."
    ),
)


def discovery_document(services: tuple[CdsService, ...]) -> dict[str, Any]:
    """`GET /cds-services`: `{"services": [...]}`."""
    return {"services": [service.discovery_entry() for service in services]}
