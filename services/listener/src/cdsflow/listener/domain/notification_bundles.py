"""Read a topic-based notification Bundle, in each of the three shapes an EHR sends.

- **R4 backport** (what SEKMET sends): a `history` Bundle whose first entry is a `Parameters`
  (profile `backport-subscription-status-r4`): kebab-case names, counters as `valueString`.
- **R4B backport**: a `history` Bundle whose first entry is a `SubscriptionStatus`.
- **R5**: a `subscription-notification` Bundle whose first entry is a `SubscriptionStatus`.

The result is one `SubscriptionNotification` whatever the shape. Anything malformed raises
`NotificationRejected` (400) with the element's path, never its value.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from cdsflow.fhir import MalformedJson, parse_json_document
from cdsflow.listener.domain.notification_status import (
    notification_from_parameters,
    notification_from_subscription_status,
)
from cdsflow.listener.domain.rejections import NotificationRejected, bad_request
from cdsflow.listener.domain.subscription_notifications import (
    EVENT_TYPES,
    NotificationEvent,
    StatusContent,
    SubscriptionNotification,
    invalid_element,
    invalid_notification,
    reference_path,
)

R4_BACKPORT = "r4-backport"
R4B_BACKPORT = "r4b-backport"
R5 = "r5"
# Bundle.type -> which first-entry resource types make which shape
_SHAPES = {
    "history": {"Parameters": R4_BACKPORT, "SubscriptionStatus": R4B_BACKPORT},
    "subscription-notification": {"SubscriptionStatus": R5},
}
STATUS_ENTRY = "Bundle.entry[0].resource"


def read_posted_notification(raw: bytes) -> SubscriptionNotification | None:
    """The notification in a rest-hook POST body, or None when the body is another resource
    (an R4 rest-hook that POSTs the changed resource); `NotificationRejected` (400) when it
    is not FHIR. The body is parsed once, here."""
    try:
        bundle = parse_json_document(raw)
    except MalformedJson as exc:
        raise bad_request("structure", exc.reason, exc.description) from None
    if not isinstance(bundle, dict) or not isinstance(bundle.get("resourceType"), str):
        raise invalid_notification(
            "not-fhir", "the body is not a FHIR resource: 'resourceType' is missing"
        )
    if bundle["resourceType"] != "Bundle":
        return None
    return notification_of(bundle)


def read_notification_bundle(raw: bytes) -> SubscriptionNotification:
    """The notification in a rest-hook POST body, or `NotificationRejected` (400)."""
    notification = read_posted_notification(raw)
    if notification is None:
        raise invalid_notification(
            "not-a-notification",
            "a POST to the rest-hook endpoint carries a notification Bundle (or nothing: a ping)",
            "resourceType",
        )
    return notification


def notification_of(bundle: Mapping[str, Any]) -> SubscriptionNotification:
    """The notification in a parsed Bundle (see the module's docstring for the shapes)."""
    bundle_type = bundle.get("type")
    shapes = _SHAPES.get(bundle_type) if isinstance(bundle_type, str) else None
    if shapes is None:
        raise invalid_notification(
            "not-a-notification",
            "'Bundle.type' must be 'history' (R4/R4B backport) or 'subscription-notification' (R5)",
            "Bundle.type",
        )
    entries = bundle.get("entry")
    if (
        not isinstance(entries, list)
        or not entries
        or not all(isinstance(entry, dict) for entry in entries)
    ):
        raise _no_status_entry()
    status = entries[0].get("resource")
    status_type = status.get("resourceType") if isinstance(status, dict) else None
    shape = shapes.get(status_type) if isinstance(status_type, str) else None
    if shape is None or not isinstance(status, dict):
        raise _no_status_entry()
    if shape == R4_BACKPORT:
        content = notification_from_parameters(status, STATUS_ENTRY)
    else:
        content = notification_from_subscription_status(status, STATUS_ENTRY)
    return _notification(shape, content, entries[1:])


def _notification(
    shape: str, content: StatusContent, entries: Sequence[dict[str, Any]]
) -> SubscriptionNotification:
    if content.notification_type in EVENT_TYPES and not content.events:
        raise invalid_element(
            STATUS_ENTRY, f"of a '{content.notification_type}' must carry a notification event"
        )
    resources = _entry_resources(entries)
    only_urls = [entry["fullUrl"] for entry in entries if _only_full_url(entry)]
    events = []
    for event in content.events:
        focus = event.focus
        if focus is None and len(content.events) == 1 and len(only_urls) == 1:
            focus = only_urls[0]  # an id-only payload that names its resource by fullUrl only
        resource = _resource_for(focus, resources) if focus is not None else None
        events.append(
            NotificationEvent(
                event_number=event.event_number,
                focus=focus,
                resource=resource,
                additional_context=event.additional_context,
                context_resources=tuple(
                    found
                    for reference in event.additional_context
                    if (found := _resource_for(reference, resources)) is not None
                ),
            )
        )
    return SubscriptionNotification(
        shape=shape,
        subscription=content.subscription,
        topic=content.topic,
        status=content.status,
        notification_type=content.notification_type,
        events_since_subscription_start=content.events_since_subscription_start,
        events=tuple(events),
    )


def _entry_resources(entries: Sequence[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The Bundle's resources (after the status) by `fullUrl` and by `Type/id`."""
    found: dict[str, dict[str, Any]] = {}
    for index, entry in enumerate(entries, start=1):
        resource = entry.get("resource")
        if resource is None:
            continue
        if not isinstance(resource, dict) or not isinstance(resource.get("resourceType"), str):
            raise invalid_notification(
                "not-fhir",
                "a Bundle entry's resource is not a FHIR resource",
                f"Bundle.entry[{index}].resource",
            )
        full_url = entry.get("fullUrl")
        if isinstance(full_url, str):
            found.setdefault(full_url, resource)
        if isinstance(resource.get("id"), str):
            found.setdefault(f"{resource['resourceType']}/{resource['id']}", resource)
    return found


def _resource_for(focus: str, resources: Mapping[str, dict[str, Any]]) -> dict[str, Any] | None:
    """The entry that holds the focus: the same `fullUrl`, else the same type and id (EHRs
    differ in scheme or base between `focus` and `fullUrl`)."""
    if focus in resources:
        return resources[focus]
    path = reference_path(focus)
    return resources.get(path) if path is not None else None


def _only_full_url(entry: Mapping[str, Any]) -> bool:
    return isinstance(entry.get("fullUrl"), str) and "resource" not in entry


def _no_status_entry() -> NotificationRejected:
    return invalid_notification(
        "no-subscription-status",
        "the first entry of a notification Bundle must be its status: a Parameters "
        "(R4 backport) or a SubscriptionStatus (R4B 'history', R5 'subscription-notification')",
        STATUS_ENTRY,
    )
