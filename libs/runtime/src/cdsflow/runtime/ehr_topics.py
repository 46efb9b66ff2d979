"""SubscriptionTopics that cdsflow defines on the embedded EHR, so that `cdsflow up
--with-ehr` and the demo receive what the adapters need as topic-based notifications (R4
backport): vital signs, and one topic per search criteria an adapter declares.

An R4 server holds a topic as a `Basic` resource carrying the R5 SubscriptionTopic elements as
cross-version extensions (code `SubscriptionTopic`): a canonical URL, a title, and a resource
trigger — any created or updated resource of one type that the criteria's search matches
(`queryCriteria.current`) — that a Subscription may filter by patient.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx

TOPIC_EXTENSION = "http://hl7.org/fhir/5.0/StructureDefinition/extension-SubscriptionTopic"
TOPIC_BASE_URL = "https://cdsflow.dev/fhir/SubscriptionTopic"


@dataclass(frozen=True)
class CriteriaTopic:
    """A topic that fires for each created or updated resource that `criteria` matches."""

    name: str  # lowercase with hyphens: the topic's URL ends with it, its Basic id carries it
    criteria: str  # `Type?params`
    title: str

    @property
    def url(self) -> str:
        return f"{TOPIC_BASE_URL}/{self.name}"

    @property
    def basic_id(self) -> str:
        return f"cdsflow-{self.name}"

    @property
    def resource_type(self) -> str:
        return self.criteria.partition("?")[0]

    def as_basic(self) -> dict[str, Any]:
        """The topic as a `Basic` resource."""
        trigger = [
            {"url": "description", "valueMarkdown": self.title},
            {
                "url": "resource",
                "valueUri": f"http://hl7.org/fhir/StructureDefinition/{self.resource_type}",
            },
            {"url": "supportedInteraction", "valueCode": "create"},
            {"url": "supportedInteraction", "valueCode": "update"},
            {
                "url": "queryCriteria",
                "extension": [{"url": "current", "valueString": self.criteria.partition("?")[2]}],
            },
        ]
        return {
            "resourceType": "Basic",
            "id": self.basic_id,
            "modifierExtension": [{"url": f"{TOPIC_EXTENSION}.status", "valueCode": "active"}],
            "extension": [
                {"url": f"{TOPIC_EXTENSION}.url", "valueUri": self.url},
                {"url": f"{TOPIC_EXTENSION}.title", "valueString": self.title},
                {"url": f"{TOPIC_EXTENSION}.resourceTrigger", "extension": trigger},
                {
                    "url": f"{TOPIC_EXTENSION}.canFilterBy",
                    "extension": [
                        {"url": "resource", "valueUri": self.resource_type},
                        {"url": "filterParameter", "valueString": "patient"},
                    ],
                },
            ],
            "code": {
                "coding": [
                    {"system": "http://hl7.org/fhir/fhir-types", "code": "SubscriptionTopic"}
                ]
            },
        }


VITAL_SIGNS_TOPIC = CriteriaTopic(
    "vital-signs", "Observation?category=vital-signs", "Vital signs recorded"
)
VITAL_SIGNS_TOPIC_URL = VITAL_SIGNS_TOPIC.url
VITAL_SIGNS_TOPIC_ID = VITAL_SIGNS_TOPIC.basic_id
# topics with names of their own: criteria alike to theirs get their name and URL
NAMED_TOPICS = (VITAL_SIGNS_TOPIC,)


def vital_signs_topic() -> dict[str, Any]:
    """The vital-signs topic as a `Basic` resource."""
    return VITAL_SIGNS_TOPIC.as_basic()


def define_topic(ehr_base_url: str, topic: CriteriaTopic) -> None:
    """PUT the topic on the EHR (idempotent); raises `httpx.HTTPError` when refused."""
    answer = httpx.put(
        f"{ehr_base_url}/Basic/{topic.basic_id}",
        json=topic.as_basic(),
        headers={"Content-Type": "application/fhir+json"},
        timeout=10,
    )
    answer.raise_for_status()


def define_vital_signs_topic(ehr_base_url: str) -> None:
    """PUT the vital-signs topic on the EHR (idempotent)."""
    define_topic(ehr_base_url, VITAL_SIGNS_TOPIC)
