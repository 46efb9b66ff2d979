"""The Subscription that makes the EHR notify the listener (FHIR R4 rest-hook)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from cdsflow.fhir import EhrClient, EhrError

VITAL_SIGNS_CRITERIA = "Observation?category=vital-signs"


def rest_hook_subscription(
    endpoint: str, channel_secret: str, criteria: str = VITAL_SIGNS_CRITERIA
) -> dict[str, Any]:
    """An R4 Subscription: full-resource rest-hook to `endpoint`, with the channel secret."""
    return {
        "resourceType": "Subscription",
        "status": "requested",
        "reason": "cdsflow: clinical events for the health system's model",
        "criteria": criteria,
        "channel": {
            "type": "rest-hook",
            "endpoint": endpoint,
            "payload": "application/fhir+json",
            "header": [f"Authorization: Bearer {channel_secret}"],
        },
    }


async def create_subscription(
    ehr: EhrClient,
    endpoint: str,
    channel_secret: str,
    criteria: str = VITAL_SIGNS_CRITERIA,
    timeout_s: float = 30,
) -> str:
    """Create the Subscription and wait until the EHR reports it active; returns its id."""
    created = await ehr.create(rest_hook_subscription(endpoint, channel_secret, criteria))
    subscription_id = str(created["id"])
    deadline = time.monotonic() + timeout_s
    while True:
        current = await ehr.read("Subscription", subscription_id) or {}
        status = current.get("status")
        if status == "active":
            return subscription_id
        if status in ("error", "off"):
            raise EhrError(
                f"the EHR set Subscription/{subscription_id} to {status}: "
                f"{current.get('error', 'no reason given')}"
            )
        if time.monotonic() > deadline:
            raise EhrError(f"Subscription/{subscription_id} not active after {timeout_s:.0f}s")
        await asyncio.sleep(0.2)
