"""Read the status entry of a notification Bundle: an R4 backport `Parameters`
(kebab-case names, `value[x]`, `part`) or an R4B/R5 `SubscriptionStatus`."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from cdsflow.listener.domain.subscription_notifications import (
    NOTIFICATION_TYPES,
    NotificationEvent,
    StatusContent,
    code_of,
    counter,
    invalid_element,
    reference_of,
)

# Parameters.parameter.value[x] names each backport parameter may use
_COUNTERS = ("valueString", "valueUnsignedInt", "valueInteger", "valueInteger64")
_CANONICALS = ("valueCanonical", "valueUri", "valueUrl", "valueString")


def notification_from_parameters(status: Mapping[str, Any], path: str) -> StatusContent:
    """The R4 backport status (`backport-subscription-status-r4`)."""
    parameters = _parameters(status.get("parameter"), f"{path}.parameter")
    subscription = _one(parameters, "subscription", path)
    notification_type = _one(parameters, "type", path)
    since = _optional(parameters, "events-since-subscription-start", path)
    topic = _optional(parameters, "topic", path)
    status_code = _optional(parameters, "status", path)
    events = tuple(
        _event_from_parts(parameter, event_path)
        for parameter, event_path in parameters.get("notification-event", [])
    )
    return StatusContent(
        subscription=reference_of(subscription[0].get("valueReference"), subscription[1]),
        topic=_canonical(topic) if topic else None,
        status=code_of(status_code[0].get("valueCode"), status_code[1]) if status_code else None,
        notification_type=code_of(
            notification_type[0].get("valueCode"), notification_type[1], NOTIFICATION_TYPES
        ),
        events_since_subscription_start=counter(_value(since, _COUNTERS), since[1])
        if since
        else None,
        events=events,
    )


def notification_from_subscription_status(status: Mapping[str, Any], path: str) -> StatusContent:
    """The R4B or R5 `SubscriptionStatus`."""
    topic = status.get("topic")
    if topic is not None and not isinstance(topic, str):
        raise invalid_element(f"{path}.topic", "must be a canonical URL")
    status_code = status.get("status")
    since = status.get("eventsSinceSubscriptionStart")
    raw_events = status.get("notificationEvent", [])
    if not isinstance(raw_events, list):
        raise invalid_element(f"{path}.notificationEvent", "must be a list")
    return StatusContent(
        subscription=reference_of(status.get("subscription"), f"{path}.subscription"),
        topic=topic,
        status=code_of(status_code, f"{path}.status") if status_code is not None else None,
        notification_type=code_of(status.get("type"), f"{path}.type", NOTIFICATION_TYPES),
        events_since_subscription_start=counter(since, f"{path}.eventsSinceSubscriptionStart")
        if since is not None
        else None,
        events=tuple(
            _event_from_element(event, f"{path}.notificationEvent[{index}]")
            for index, event in enumerate(raw_events)
        ),
    )


def _event_from_element(event: object, path: str) -> NotificationEvent:
    if not isinstance(event, Mapping):
        raise invalid_element(path, "must be an object")
    focus = event.get("focus")
    context = event.get("additionalContext", [])
    if not isinstance(context, list):
        raise invalid_element(f"{path}.additionalContext", "must be a list")
    return NotificationEvent(
        event_number=counter(event.get("eventNumber"), f"{path}.eventNumber"),
        focus=reference_of(focus, f"{path}.focus") if focus is not None else None,
        resource=None,
        additional_context=tuple(
            reference_of(item, f"{path}.additionalContext[{index}]")
            for index, item in enumerate(context)
        ),
    )


def _event_from_parts(parameter: Mapping[str, Any], path: str) -> NotificationEvent:
    parts = _parameters(parameter.get("part"), f"{path}.part")
    number = _one(parts, "event-number", path)
    focus = _optional(parts, "focus", path)
    return NotificationEvent(
        event_number=counter(_value(number, _COUNTERS), number[1]),
        focus=reference_of(focus[0].get("valueReference"), focus[1]) if focus else None,
        resource=None,
        additional_context=tuple(
            reference_of(part.get("valueReference"), part_path)
            for part, part_path in parts.get("additional-context", [])
        ),
    )


_Named = dict[str, list[tuple[Mapping[str, Any], str]]]


def _parameters(value: object, path: str) -> _Named:
    """Parameters (or parts) by name, each with its element path."""
    if not isinstance(value, list):
        raise invalid_element(path, "must be a list")
    named: _Named = {}
    for index, parameter in enumerate(value):
        element = f"{path}[{index}]"
        if not isinstance(parameter, Mapping) or not isinstance(parameter.get("name"), str):
            raise invalid_element(element, "must be an object with a 'name'")
        named.setdefault(parameter["name"], []).append((parameter, element))
    return named


def _one(named: _Named, name: str, path: str) -> tuple[Mapping[str, Any], str]:
    found = named.get(name, [])
    if len(found) != 1:
        raise invalid_element(path, f"must have exactly one parameter named '{name}'")
    return found[0]


def _optional(named: _Named, name: str, path: str) -> tuple[Mapping[str, Any], str] | None:
    found = named.get(name, [])
    if len(found) > 1:
        raise invalid_element(path, f"must have at most one parameter named '{name}'")
    return found[0] if found else None


def _value(parameter: tuple[Mapping[str, Any], str], names: tuple[str, ...]) -> Any:
    """The parameter's value in the first of `names` it has."""
    element, path = parameter
    for name in names:
        if name in element:
            return element[name]
    raise invalid_element(path, f"must have one of {', '.join(names)}")


def _canonical(parameter: tuple[Mapping[str, Any], str]) -> str:
    value = _value(parameter, _CANONICALS)
    if not isinstance(value, str):
        raise invalid_element(parameter[1], "must be a canonical URL")
    return value
