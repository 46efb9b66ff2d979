"""The SubscriptionTopic that the embedded EHR offers for vital signs, so that `cdsflow up
--with-ehr` and the demo receive them as topic-based notifications (R4 backport).

An R4 server holds a topic as a `Basic` resource carrying the R5 SubscriptionTopic elements as
cross-version extensions (code `SubscriptionTopic`): a canonical URL, a title, and a resource
trigger — here any created or updated Observation whose category is vital-signs — that a
Subscription may filter by patient.
"""

from __future__ import annotations

from typing import Any

import httpx

TOPIC_EXTENSION = "http://hl7.org/fhir/5.0/StructureDefinition/extension-SubscriptionTopic"
VITAL_SIGNS_TOPIC_URL = "https://cdsflow.dev/fhir/SubscriptionTopic/vital-signs"
VITAL_SIGNS_TOPIC_ID = "cdsflow-vital-signs"


def vital_signs_topic() -> dict[str, Any]:
    """The topic as a `Basic` resource."""
    trigger = [
        {"url": "description", "valueMarkdown": "A vital-sign Observation was recorded"},
        {"url": "resource", "valueUri": "http://hl7.org/fhir/StructureDefinition/Observation"},
        {"url": "supportedInteraction", "valueCode": "create"},
        {"url": "supportedInteraction", "valueCode": "update"},
        {
            "url": "queryCriteria",
            "extension": [{"url": "current", "valueString": "category=vital-signs"}],
        },
    ]
    return {
        "resourceType": "Basic",
        "id": VITAL_SIGNS_TOPIC_ID,
        "modifierExtension": [{"url": f"{TOPIC_EXTENSION}.status", "valueCode": "active"}],
        "extension": [
            {"url": f"{TOPIC_EXTENSION}.url", "valueUri": VITAL_SIGNS_TOPIC_URL},
            {"url": f"{TOPIC_EXTENSION}.title", "valueString": "Vital signs recorded"},
            {"url": f"{TOPIC_EXTENSION}.resourceTrigger", "extension": trigger},
            {
                "url": f"{TOPIC_EXTENSION}.canFilterBy",
                "extension": [
                    {"url": "resource", "valueUri": "Observation"},
                    {"url": "filterParameter", "valueString": "patient"},
                ],
            },
        ],
        "code": {
            "coding": [{"system": "http://hl7.org/fhir/fhir-types", "code": "SubscriptionTopic"}]
        },
    }


def define_vital_signs_topic(ehr_base_url: str) -> None:
    """PUT the topic on the EHR (idempotent); raises `httpx.HTTPError` when refused."""
    answer = httpx.put(
        f"{ehr_base_url}/Basic/{VITAL_SIGNS_TOPIC_ID}",
        json=vital_signs_topic(),
        headers={"Content-Type": "application/fhir+json"},
        timeout=10,
    )
    answer.raise_for_status()
