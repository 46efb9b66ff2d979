"""A channel: one Subscription that cdsflow owns on the EHR, declared in configuration.

A channel names what the EHR should notify about — FHIR R4 `criteria` (classic rest-hook) or
a `topic` (the R4 backport's topic-based Subscription, with optional filters) — and how: the
payload content and, for topics, the heartbeat period. The listener creates or adopts the
Subscription, sends the channel's secret in `channel.header`, and keeps it active.
"""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

BACKPORT = "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition"
# every Subscription cdsflow owns carries this tag, with the channel's name as its code
CHANNEL_TAG_SYSTEM = "urn:cdsflow:channel"
_CRITERIA = re.compile(r"^[A-Z][A-Za-z]{1,63}\?\S*$")

PayloadContent = Literal["full-resource", "id-only", "empty"]


class Channel(BaseModel):
    """One channel, as configured (`CDSFLOW_CHANNELS`, a JSON list of these)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9-]{0,62}$")
    # exactly one of: R4 criteria (`Observation?category=vital-signs`) or a topic's canonical URL
    criteria: str | None = None
    topic: str | None = None
    # a topic's filters, as the backport's filter criteria (`Encounter?patient=...`)
    filters: tuple[str, ...] = ()
    payload: PayloadContent = "full-resource"
    heartbeat_period_s: int | None = Field(default=None, gt=0)
    # how to find what a gap in the channel's notifications left out (`Type?params`, searched
    # since the channel's checkpoint); a criteria channel's own criteria by default
    recovery_search: str | None = None

    @model_validator(mode="after")
    def _one_kind(self) -> Channel:
        if (self.criteria is None) == (self.topic is None):
            raise ValueError(f"channel {self.name}: give exactly one of criteria and topic")
        if self.criteria is not None:
            if not _CRITERIA.match(self.criteria):
                raise ValueError(f"channel {self.name}: criteria must be Type?params")
            if self.payload == "id-only":
                raise ValueError(
                    f"channel {self.name}: an R4 criteria channel is full-resource or empty"
                )
            if self.filters or self.heartbeat_period_s is not None:
                raise ValueError(
                    f"channel {self.name}: filters and heartbeats belong to topic channels"
                )
        elif not self.topic or not self.topic.startswith(("http://", "https://", "urn:")):
            raise ValueError(f"channel {self.name}: a topic is its canonical URL")
        if self.recovery_search is not None and not _CRITERIA.match(self.recovery_search):
            raise ValueError(f"channel {self.name}: recovery_search must be Type?params")
        return self

    @property
    def search_for_gaps(self) -> str | None:
        """What is searched to recover a gap: the declared search, else the criteria."""
        return self.recovery_search or self.criteria

    @property
    def watches(self) -> str:
        """What it subscribes to: its criteria or its topic."""
        return self.criteria or self.topic or ""


def subscription_resource(
    channel: Channel, endpoint: str, secret: str, reason: str = ""
) -> dict[str, Any]:
    """The Subscription for `channel`: rest-hook to `endpoint` with the secret as a bearer
    header, tagged with the channel's name so that it is found again after a restart."""
    subscription: dict[str, Any] = {
        "resourceType": "Subscription",
        "meta": {"tag": [{"system": CHANNEL_TAG_SYSTEM, "code": channel.name}]},
        "status": "requested",
        "reason": reason or f"cdsflow channel {channel.name}",
        "criteria": channel.watches,
        "channel": {
            "type": "rest-hook",
            "endpoint": endpoint,
            "header": [f"Authorization: Bearer {secret}"],
        },
    }
    if channel.payload != "empty" or channel.topic is not None:
        # classic R4: a payload means full resources, none means an empty ping
        subscription["channel"]["payload"] = "application/fhir+json"
    if channel.topic is not None:
        subscription["meta"]["profile"] = [f"{BACKPORT}/backport-subscription"]
        subscription["channel"]["_payload"] = {
            "extension": [
                {"url": f"{BACKPORT}/backport-payload-content", "valueCode": channel.payload}
            ]
        }
        if channel.heartbeat_period_s is not None:
            subscription["channel"]["extension"] = [
                {
                    "url": f"{BACKPORT}/backport-heartbeat-period",
                    "valueUnsignedInt": channel.heartbeat_period_s,
                }
            ]
        if channel.filters:
            subscription["_criteria"] = {
                "extension": [
                    {"url": f"{BACKPORT}/backport-filter-criteria", "valueString": criteria}
                    for criteria in channel.filters
                ]
            }
    return subscription


def channel_tag(channel: Channel) -> str:
    """The `_tag` search value that finds the channel's Subscription."""
    return f"{CHANNEL_TAG_SYSTEM}|{channel.name}"
