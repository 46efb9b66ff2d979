"""What a topic-based notification says, whatever shape (R4/R4B backport, R5) it came in."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from cdsflow.fhir import is_fhir_id
from cdsflow.listener.domain.rejections import NotificationRejected, bad_request

HANDSHAKE = "handshake"
HEARTBEAT = "heartbeat"
EVENT_NOTIFICATION = "event-notification"
QUERY_STATUS = "query-status"
QUERY_EVENT = "query-event"
NOTIFICATION_TYPES = (HANDSHAKE, HEARTBEAT, EVENT_NOTIFICATION, QUERY_STATUS, QUERY_EVENT)
# the types that carry events (R5 invariant sst-1)
EVENT_TYPES = (EVENT_NOTIFICATION, QUERY_EVENT)

# payload content, per event and per notification
EMPTY = "empty"
ID_ONLY = "id-only"
FULL_RESOURCE = "full-resource"

_RESOURCE_TYPE = re.compile(r"[A-Z][A-Za-z]{1,63}")


@dataclass(frozen=True)
class NotificationEvent:
    """One event: its number, the changed resource's reference (`focus`), the resource itself
    when the payload is full-resource, the references given as additional context and the
    resources among them that the Bundle carries."""

    event_number: int
    focus: str | None
    resource: dict[str, Any] | None
    additional_context: tuple[str, ...]
    # the additional-context resources that the Bundle carries (full-resource), in order
    context_resources: tuple[dict[str, Any], ...] = ()
    # the carried resource is valid FHIR R5 only (an R5 notification's), once checked
    r5_only: bool = False

    @property
    def payload(self) -> str:
        if self.resource is not None:
            return FULL_RESOURCE
        return ID_ONLY if self.focus is not None else EMPTY


@dataclass(frozen=True)
class StatusContent:
    """The status entry (R4 `Parameters` or `SubscriptionStatus`), read; events without
    resources yet."""

    subscription: str
    topic: str | None
    status: str | None
    notification_type: str
    events_since_subscription_start: int | None
    events: tuple[NotificationEvent, ...]


@dataclass(frozen=True)
class SubscriptionNotification(StatusContent):
    """A notification Bundle, read: the status and each event with its resource if given."""

    shape: str

    @property
    def payload(self) -> str:
        """`full-resource` when any event carries its resource, `id-only` when any names its
        focus, else `empty` (a handshake or heartbeat is `empty` too)."""
        payloads = {event.payload for event in self.events}
        for payload in (FULL_RESOURCE, ID_ONLY):
            if payload in payloads:
                return payload
        return EMPTY


def reference_path(reference: str) -> str | None:
    """`Type/id` at the end of a literal reference (relative or absolute, `_history` dropped),
    or None when it does not end so."""
    parts = reference.split("/")
    if len(parts) >= 4 and parts[-2] == "_history":
        parts = parts[:-2]
    if len(parts) < 2 or not _RESOURCE_TYPE.fullmatch(parts[-2]) or not is_fhir_id(parts[-1]):
        return None
    return f"{parts[-2]}/{parts[-1]}"


def subscription_id_of(reference: str) -> str:
    """The Subscription's logical id from the status's `subscription` reference (absolute or
    relative, `_history` dropped); the reference itself when it names no `Subscription/id`."""
    path = reference_path(reference.strip())
    if path is not None and path.startswith("Subscription/"):
        return path.removeprefix("Subscription/")
    return reference.strip()


def counter(value: object, path: str) -> int:
    """A count or event number: a JSON integer, or digits in a string (R4 `valueString`, R5
    integer64); at least 0."""
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    if isinstance(value, str) and value.isascii() and value.isdigit():
        return int(value)
    raise invalid_element(path, "must be a non-negative integer")


def reference_of(value: object, path: str) -> str:
    """`reference` of a Reference, which must be a non-empty string."""
    reference = value.get("reference") if isinstance(value, Mapping) else None
    if not isinstance(reference, str) or not reference.strip():
        raise invalid_element(path, "must be a Reference with a 'reference'")
    return reference


def code_of(value: object, path: str, allowed: tuple[str, ...] | None = None) -> str:
    if not isinstance(value, str) or not value or (allowed is not None and value not in allowed):
        expected = f"one of {', '.join(allowed)}" if allowed else "a code"
        raise invalid_element(path, f"must be {expected}")
    return value


def invalid_notification(reason: str, diagnostics: str, *expression: str) -> NotificationRejected:
    """400: the notification is malformed; `diagnostics` names the rule, never a value."""
    issue_code = "structure" if reason in {"not-fhir", "no-subscription-status"} else "invalid"
    return bad_request(issue_code, reason, diagnostics, *expression)


def invalid_element(path: str, rule: str) -> NotificationRejected:
    """400 for one element of the notification: `'<path>' <rule>`."""
    return invalid_notification("invalid", f"'{path}' {rule}", path)
