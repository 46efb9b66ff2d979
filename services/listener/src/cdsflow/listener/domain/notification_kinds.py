"""Short, stable names for how the EHR notified us (metric labels and span attributes)."""

from __future__ import annotations

REST_HOOK_FULL_RESOURCE = "rest-hook-full-resource"
REST_HOOK_PING = "rest-hook-ping"
# a notification Bundle that could not be read far enough to know its type
TOPIC_NOTIFICATION = "topic-notification"


def topic_kind(notification_type: str) -> str:
    """`topic-handshake`, `topic-heartbeat`, `topic-event-notification`, ..."""
    return f"topic-{notification_type}"
