"""The model as a FHIR `Device`: the agent of every write-back's Provenance.

One Device per model name and version (conditional create on its identifier, which SEKMET
indexes), so that an EHR user can list everything one model version asserted. Following HL7
AI Transparency on FHIR: the type says it is an AI system, `deviceName` and `version` name the
model, and the model card is linked in `note` (the IG's "Model-Card in Device.note.text"
pattern; the reasoner puts the link into each card's `source.url`).
"""

from __future__ import annotations

from typing import Any

from cdsflow.contracts import Recommendation
from cdsflow.writeback.domain.conditional_criteria import token_criteria

MODEL_SYSTEM = "urn:cdsflow:model"
AI_DEVICE_TYPE_TEXT = "Artificial Intelligence (machine-learning model)"


def model_identifier(recommendation: Recommendation) -> str:
    """`<model name>/<version>`: the Device's identifier value."""
    return f"{recommendation.model.name}/{recommendation.model.version}"


def model_card_url(recommendation: Recommendation) -> str | None:
    """The model card's link, as the reasoner gave it in a card's source URL."""
    return next((card.source_url for card in recommendation.cards if card.source_url), None)


def model_device_criteria(recommendation: Recommendation) -> str:
    """Finds the Device of this model version, if the EHR already holds it."""
    return token_criteria("identifier", MODEL_SYSTEM, model_identifier(recommendation))


def model_device_for(recommendation: Recommendation) -> dict[str, Any]:
    """The Device that stands for the recommendation's model and version."""
    name = recommendation.model.name or "unnamed model"
    device: dict[str, Any] = {
        "resourceType": "Device",
        "identifier": [{"system": MODEL_SYSTEM, "value": model_identifier(recommendation)}],
        "status": "active",
        "deviceName": [{"name": name, "type": "model-name"}],
        "type": {"text": AI_DEVICE_TYPE_TEXT},
    }
    if recommendation.model.version:
        device["version"] = [{"value": recommendation.model.version}]
    card = model_card_url(recommendation)
    if card:
        device["note"] = [{"text": f"Model card: {card}"}]
    return device
