"""One FHIR transaction Bundle per active recommendation: everything the EHR gets, at once.

Entries, in order, each a conditional create (`request.ifNoneExist`) so that a redelivered
recommendation, or the same one written by two replicas, writes nothing new:

| entry | matched on |
|---|---|
| `Device` (the model, name/version) | `identifier=urn:cdsflow:model|<name>/<version>` |
| `RiskAssessment` | `_tag=urn:cdsflow:recommendation|<recommendation id>` |
| `DetectedIssue`, one per card | `_tag=urn:cdsflow:card|<card uuid>` |
| `Provenance` (of the RiskAssessment and DetectedIssues) | `_tag=urn:cdsflow:recommendation|<id>` |
| `AuditEvent` (BALP, the disclosure) | `_tag=urn:cdsflow:recommendation|<id>` |

Entries reference each other through their `urn:uuid:` fullUrls, which the EHR rewrites to
the ids it assigns (or to the matched resource's id). The fullUrls are UUIDv5 of the
recommendation id and the entry's role, so the same recommendation always yields the same
Bundle but for the `recorded` times.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from cdsflow.contracts import Recommendation
from cdsflow.writeback.domain.cards import cards_for
from cdsflow.writeback.domain.detected_issue import card_criteria, detected_issue_for
from cdsflow.writeback.domain.disclosure_audit import disclosure_audit_for
from cdsflow.writeback.domain.model_device import model_device_criteria, model_device_for
from cdsflow.writeback.domain.provenance import provenance_for
from cdsflow.writeback.domain.risk_assessment import (
    PREDICTED_OUTCOME,
    risk_assessment_for,
    writeback_criteria,
)

_ENTRY_NAMESPACE = uuid.UUID("5b0f1c52-4a53-5d7e-9a55-c7d0d4a1e3b1")


@dataclass(frozen=True)
class BundleWording:
    """How the resources name what the model assessed: the adapter's own words."""

    predicted_outcome: str = PREDICTED_OUTCOME
    issue_title: str = "Risk of clinical deterioration"


def entry_full_url(recommendation_id: str, role: str) -> str:
    """`urn:uuid:<UUIDv5 of the recommendation id and the entry's role>`."""
    return f"urn:uuid:{uuid.uuid5(_ENTRY_NAMESPACE, f'{recommendation_id}/{role}')}"


def writeback_bundle(
    recommendation: Recommendation,
    *,
    trace_id: str | None,
    recorded: datetime,
    ehr_base_url: str,
    described_as: BundleWording | None = None,
) -> dict[str, Any]:
    """The transaction Bundle for a valid, active recommendation (see `recommendation_problems`).

    `described_as` says what the adapter's score predicts and what its cards are about (the
    adapter's score meaning and title); None: the deterioration wording of the first model.

    `trace_id` is the 32-hex id of the trace that produced it (None: no trace to name);
    `recorded` is when the write happens (Provenance.recorded, AuditEvent.recorded)."""
    wording = described_as or BundleWording()
    rec_id = recommendation.recommendation_id
    device_url = entry_full_url(rec_id, "model-device")
    assessment_url = entry_full_url(rec_id, "risk-assessment")
    entries = [
        _entry(device_url, model_device_for(recommendation), model_device_criteria(recommendation)),
        _entry(
            assessment_url,
            risk_assessment_for(recommendation, wording.predicted_outcome),
            writeback_criteria(rec_id),
        ),
    ]
    for index, card in enumerate(cards_for(recommendation)):
        issue = detected_issue_for(
            recommendation,
            card,
            author=device_url,
            evidence=assessment_url,
            issue_title=wording.issue_title,
        )
        entries.append(
            _entry(entry_full_url(rec_id, f"card/{index}"), issue, card_criteria(card["uuid"]))
        )
    written = [entry["fullUrl"] for entry in entries[1:]]
    provenance_url = entry_full_url(rec_id, "provenance")
    provenance = provenance_for(
        recommendation,
        targets=written,
        model_device=device_url,
        trace_id=trace_id,
        recorded=recorded,
    )
    entries.append(_entry(provenance_url, provenance, writeback_criteria(rec_id)))
    audit = disclosure_audit_for(
        recommendation,
        written=[*written, provenance_url],
        model_device=device_url,
        ehr_base_url=ehr_base_url,
        trace_id=trace_id,
        recorded=recorded,
    )
    entries.append(_entry(entry_full_url(rec_id, "audit"), audit, writeback_criteria(rec_id)))
    return {"resourceType": "Bundle", "type": "transaction", "entry": entries}


def created_entries(transaction_response: dict[str, Any]) -> int:
    """How many entries of a `transaction-response` the EHR created (`201`); 0 when every
    conditional create matched what an earlier write left."""
    return sum(
        1
        for entry in transaction_response.get("entry", []) or []
        if isinstance(entry, dict)
        and str((entry.get("response") or {}).get("status", "")).startswith("201")
    )


def _entry(full_url: str, resource: dict[str, Any], if_none_exist: str) -> dict[str, Any]:
    return {
        "fullUrl": full_url,
        "resource": resource,
        "request": {
            "method": "POST",
            "url": resource["resourceType"],
            "ifNoneExist": if_none_exist,
        },
    }
