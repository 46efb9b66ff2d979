"""What the EHR answers about a Subscription: which operations it offers (its
CapabilityStatement), and how many events it counted (`$status`)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from cdsflow.listener.domain.notification_status import (
    notification_from_parameters,
    notification_from_subscription_status,
)
from cdsflow.listener.domain.subscription_notifications import StatusContent, invalid_element

STATUS = "status"
EVENTS = "events"
# the definitions of $status and $events: R4/R4B backport and R5
_DEFINITION_ENDINGS = {
    "subscription-status": STATUS,
    "subscription-events": EVENTS,
}


def subscription_operations(capability: Mapping[str, Any]) -> frozenset[str]:
    """`status` and/or `events`: the Subscription operations the CapabilityStatement
    declares, by name or by definition (backport `backport-subscription-events`, R5
    `Subscription-events`)."""
    found: set[str] = set()
    for rest in _objects(capability.get("rest")):
        for resource in _objects(rest.get("resource")):
            if resource.get("type") != "Subscription":
                continue
            for operation in _objects(resource.get("operation")):
                name = operation.get("name")
                if isinstance(name, str) and name.lstrip("$") in (STATUS, EVENTS):
                    found.add(name.lstrip("$"))
                definition = operation.get("definition")
                if isinstance(definition, str):
                    ending = definition.rstrip("/").rsplit("/", 1)[-1].lower()
                    for suffix, operation_name in _DEFINITION_ENDINGS.items():
                        if ending.endswith(suffix):
                            found.add(operation_name)
    return frozenset(found)


def status_from_query(bundle: Mapping[str, Any]) -> StatusContent:
    """The status in a `$status` answer: a searchset Bundle whose first status resource (an
    R4 backport `Parameters` or a `SubscriptionStatus`) is the Subscription's;
    `NotificationRejected` when it holds none or a malformed one."""
    if bundle.get("resourceType") != "Bundle":
        raise invalid_element("Bundle", "must be the $status answer, a Bundle")
    for index, entry in enumerate(_objects(bundle.get("entry"))):
        resource = entry.get("resource")
        if not isinstance(resource, Mapping):
            continue
        path = f"Bundle.entry[{index}].resource"
        if resource.get("resourceType") == "Parameters":
            return notification_from_parameters(resource, path)
        if resource.get("resourceType") == "SubscriptionStatus":
            return notification_from_subscription_status(resource, path)
    raise invalid_element("Bundle.entry", "must hold the Subscription's status")


def _objects(value: object) -> list[Mapping[str, Any]]:
    return [item for item in value if isinstance(item, Mapping)] if isinstance(value, list) else []
