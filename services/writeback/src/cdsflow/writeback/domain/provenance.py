"""The FHIR `Provenance` of a write-back: which model asserted what, from which inputs, and
the trace that produced it.

- `target`: every resource written for the recommendation (the RiskAssessment and the
  DetectedIssues);
- `agent[0]`: `author` = the model's Device (name, version, model card);
  `agent[1]`: `assembler` = the cdsflow writeback that wrote it;
- `entity`: each resource the model read (`role` `source`), and the OpenTelemetry trace of
  the recommendation as a logical reference, `what.identifier` with system
  `https://www.w3.org/TR/trace-context/#trace-id` and the 32-hex trace id as its value, so
  that an SRE goes from the chart to the trace in one step;
- labelled AI-asserted (`meta.security` AIAST) as the content it describes, and tagged with
  the recommendation id (its conditional create matches on that tag).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from cdsflow.contracts import Recommendation
from cdsflow.writeback.domain.recommendations import produced_at
from cdsflow.writeback.domain.risk_assessment import ai_asserted_label, recommendation_tag

TRACE_ID_SYSTEM = "https://www.w3.org/TR/trace-context/#trace-id"
WRITEBACK_SYSTEM = "urn:cdsflow:service"
PARTICIPANT_TYPE_SYSTEM = "http://terminology.hl7.org/CodeSystem/provenance-participant-type"
DATA_OPERATION_SYSTEM = "http://terminology.hl7.org/CodeSystem/v3-DataOperation"


def fhir_instant(moment: datetime) -> str:
    """An aware datetime as a FHIR instant (`...Z`)."""
    return moment.isoformat().replace("+00:00", "Z")


def writeback_agent() -> dict[str, Any]:
    """The cdsflow writeback as a logical reference (it is no resource on the EHR)."""
    return {
        "identifier": {"system": WRITEBACK_SYSTEM, "value": "writeback"},
        "display": "cdsflow writeback",
    }


def provenance_for(
    recommendation: Recommendation,
    *,
    targets: Sequence[str],
    model_device: str,
    trace_id: str | None,
    recorded: datetime,
) -> dict[str, Any]:
    """The Provenance of the resources in `targets` (references; urn:uuid inside a Bundle)."""
    entities: list[dict[str, Any]] = [
        {"role": "source", "what": {"reference": reference}}
        for reference in dict.fromkeys(recommendation.basis.resource_references)
        if reference
    ]
    if trace_id:
        entities.append(
            {
                "role": "source",
                "what": {
                    "identifier": {"system": TRACE_ID_SYSTEM, "value": trace_id},
                    "display": "OpenTelemetry trace that produced this recommendation",
                },
            }
        )
    provenance: dict[str, Any] = {
        "resourceType": "Provenance",
        "meta": {
            "security": [ai_asserted_label()],
            "tag": [recommendation_tag(recommendation.recommendation_id)],
        },
        "target": [{"reference": reference} for reference in targets],
        "occurredDateTime": fhir_instant(produced_at(recommendation)),
        "recorded": fhir_instant(recorded),
        "activity": {"coding": [{"system": DATA_OPERATION_SYSTEM, "code": "CREATE"}]},
        "agent": [
            {
                "type": _participant("author", "Author"),
                "who": {"reference": model_device},
            },
            {"type": _participant("assembler", "Assembler"), "who": writeback_agent()},
        ],
    }
    if entities:
        provenance["entity"] = entities
    return provenance


def _participant(code: str, display: str) -> dict[str, Any]:
    return {"coding": [{"system": PARTICIPANT_TYPE_SYSTEM, "code": code, "display": display}]}
