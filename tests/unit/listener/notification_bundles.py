"""Topic-based notification Bundles for the listener's unit tests, in the three shapes EHRs
send: R4 backport (a `Parameters` status, as SEKMET sends), R4B and R5 (`SubscriptionStatus`).

An event is `(event number, focus reference or None, additional-context references)`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .vital_signs import EHR_BASE_URL

SUBSCRIPTION = f"{EHR_BASE_URL}/Subscription/sub-1"
TOPIC = "http://sekmet.dev/fhir/SubscriptionTopic/encounter-start"
Event = tuple[int, str | None, tuple[str, ...]]


def r4_backport(
    notification_type: str,
    events: Sequence[Event] = (),
    resources: Sequence[dict[str, Any]] = (),
    since: int | None = None,
    status: str = "active",
) -> dict[str, Any]:
    parameters: list[dict[str, Any]] = [
        {"name": "subscription", "valueReference": {"reference": SUBSCRIPTION}},
        {"name": "topic", "valueCanonical": TOPIC},
        {"name": "status", "valueCode": status},
        {"name": "type", "valueCode": notification_type},
        {"name": "events-since-subscription-start", "valueString": str(_since(since, events))},
    ]
    for number, focus, context in events:
        parts: list[dict[str, Any]] = [
            {"name": "event-number", "valueString": str(number)},
            {"name": "timestamp", "valueInstant": "2025-01-02T03:04:05+00:00"},
        ]
        if focus is not None:
            parts.append({"name": "focus", "valueReference": {"reference": focus}})
        parts += [
            {"name": "additional-context", "valueReference": {"reference": reference}}
            for reference in context
        ]
        parameters.append({"name": "notification-event", "part": parts})
    status_resource = {"resourceType": "Parameters", "id": "status-1", "parameter": parameters}
    return _bundle("history", status_resource, resources)


def subscription_status_bundle(
    notification_type: str,
    events: Sequence[Event] = (),
    resources: Sequence[dict[str, Any]] = (),
    since: int | None = None,
    r5: bool = False,
) -> dict[str, Any]:
    """R4B (`history`) or, with `r5`, R5 (`subscription-notification`)."""
    status_resource: dict[str, Any] = {
        "resourceType": "SubscriptionStatus",
        "id": "status-1",
        "status": "active",
        "type": notification_type,
        "eventsSinceSubscriptionStart": str(_since(since, events)),
        "subscription": {"reference": SUBSCRIPTION},
        "topic": TOPIC,
    }
    if events:
        status_resource["notificationEvent"] = [
            {
                "eventNumber": str(number),
                **({"focus": {"reference": focus}} if focus is not None else {}),
                **(
                    {"additionalContext": [{"reference": ref} for ref in context]}
                    if context
                    else {}
                ),
            }
            for number, focus, context in events
        ]
    bundle_type = "subscription-notification" if r5 else "history"
    return _bundle(bundle_type, status_resource, resources)


def full_url_entry(full_url: str) -> dict[str, Any]:
    """An id-only entry that names its resource by `fullUrl` only (as the R5 examples do)."""
    return {"fullUrl": full_url, "request": {"method": "PUT", "url": "x"}}


def _bundle(
    bundle_type: str, status_resource: dict[str, Any], resources: Sequence[dict[str, Any]]
) -> dict[str, Any]:
    entries: list[dict[str, Any]] = [
        {
            "fullUrl": "urn:uuid:6a1f5c1e-0000-4000-8000-000000000001",
            "resource": status_resource,
            "request": {"method": "GET", "url": "Subscription/sub-1/$status"},
            "response": {"status": "200"},
        }
    ]
    for resource in resources:
        if "resourceType" not in resource:  # an entry given as is
            entries.append(resource)
            continue
        entries.append(
            {
                "fullUrl": f"{EHR_BASE_URL}/{resource['resourceType']}/{resource['id']}",
                "resource": resource,
                "request": {"method": "PUT", "url": f"{resource['resourceType']}/{resource['id']}"},
                "response": {"status": "200"},
            }
        )
    return {"resourceType": "Bundle", "id": "notification-1", "type": bundle_type, "entry": entries}


def _since(since: int | None, events: Sequence[Event]) -> int:
    if since is not None:
        return since
    return max((number for number, _, _ in events), default=0)
