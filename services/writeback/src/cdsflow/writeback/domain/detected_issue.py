"""A CDS Hooks card as the FHIR `DetectedIssue` written into the chart.

Why DetectedIssue and not Communication: a card is a clinical issue that decision support
found about a patient ("high risk of deterioration"), which is what DetectedIssue records
(`patient`, `severity`, `author` = the model's Device, `evidence` = the RiskAssessment,
`detail`, `reference` = the authority, here the model card). A Communication is a message
sent from a sender to recipients; the writeback sends nothing to anyone (the EHR pulls the
cards through CDS Hooks), and a Communication would have no place for severity or evidence.

One DetectedIssue per card, identified and tagged by the card's uuid (the uuid the EHR's
feedback names), so that a redelivery finds it.
"""

from __future__ import annotations

from typing import Any

from cdsflow.contracts import Recommendation
from cdsflow.writeback.domain.conditional_criteria import token_criteria
from cdsflow.writeback.domain.recommendations import produced_at
from cdsflow.writeback.domain.risk_assessment import ai_asserted_label, recommendation_tag

CARD_SYSTEM = "urn:cdsflow:card"
ISSUE_CODE_TEXT = "AI-generated decision support"

_SEVERITIES = {"critical": "high", "warning": "moderate", "info": "low"}


def card_criteria(card_uuid: str) -> str:
    """Finds the DetectedIssue already written for this card."""
    return token_criteria("_tag", CARD_SYSTEM, card_uuid)


def detected_issue_for(
    recommendation: Recommendation,
    card: dict[str, Any],
    *,
    author: str,
    evidence: str,
    issue_title: str = "Risk of clinical deterioration",
) -> dict[str, Any]:
    """The DetectedIssue for one rendered card (`cards_for`); `author` is the reference of the
    model's Device and `evidence` that of the RiskAssessment (urn:uuid inside a Bundle);
    `issue_title` is the adapter's title."""
    issue: dict[str, Any] = {
        "resourceType": "DetectedIssue",
        "meta": {
            "security": [ai_asserted_label()],
            "tag": [
                recommendation_tag(recommendation.recommendation_id),
                {"system": CARD_SYSTEM, "code": card["uuid"]},
            ],
        },
        "identifier": [{"system": CARD_SYSTEM, "value": card["uuid"]}],
        "status": "final",
        "code": {"text": f"{issue_title} ({ISSUE_CODE_TEXT})"},
        "severity": _SEVERITIES.get(card["indicator"], "low"),
        "patient": {"reference": recommendation.patient_reference},
        "identifiedDateTime": produced_at(recommendation).isoformat().replace("+00:00", "Z"),
        "author": {"reference": author},
        "evidence": [{"detail": [{"reference": evidence}]}],
        "detail": f"{card['summary']}\n\n{card['detail']}",
    }
    url = card.get("source", {}).get("url")
    if url:
        issue["reference"] = url
    return issue
