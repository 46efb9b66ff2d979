"""The listener's rules, as pure functions: no I/O, no clock, no configuration reads."""

from cdsflow.listener.domain.channel_secret import bearer_secret_matches
from cdsflow.listener.domain.clinical_event import (
    build_clinical_event,
    build_focus_record,
    canonical_json,
    clinical_event_id,
)
from cdsflow.listener.domain.notification_bundles import (
    R4_BACKPORT,
    R4B_BACKPORT,
    R5,
    notification_of,
    read_notification_bundle,
    read_posted_notification,
)
from cdsflow.listener.domain.notification_focus import FocusOnEhr, focus_on_ehr
from cdsflow.listener.domain.notification_kinds import (
    REST_HOOK_FULL_RESOURCE,
    REST_HOOK_PING,
    TOPIC_NOTIFICATION,
    topic_kind,
)
from cdsflow.listener.domain.notified_resource import (
    read_notified_resource,
    read_posted_resource,
    validate_event_resource,
)
from cdsflow.listener.domain.patient_subject import PATIENT_ELEMENTS, patient_reference_of
from cdsflow.listener.domain.rejections import NotificationRejected, unauthorized
from cdsflow.listener.domain.subscription_notifications import (
    EMPTY,
    EVENT_NOTIFICATION,
    EVENT_TYPES,
    FULL_RESOURCE,
    HANDSHAKE,
    HEARTBEAT,
    ID_ONLY,
    NOTIFICATION_TYPES,
    QUERY_EVENT,
    QUERY_STATUS,
    NotificationEvent,
    SubscriptionNotification,
    reference_path,
    subscription_id_of,
)
from cdsflow.listener.domain.unusable_resources import (
    FOCUS_NOT_FOUND,
    FOREIGN_FOCUS,
    FOREIGN_PATIENT,
    NO_PATIENT,
    R5_ONLY,
    UNREADABLE_FOCUS,
    UnusableResource,
)

__all__ = [
    "EMPTY",
    "EVENT_NOTIFICATION",
    "EVENT_TYPES",
    "FOCUS_NOT_FOUND",
    "FOREIGN_FOCUS",
    "FOREIGN_PATIENT",
    "FULL_RESOURCE",
    "HANDSHAKE",
    "HEARTBEAT",
    "ID_ONLY",
    "NOTIFICATION_TYPES",
    "NO_PATIENT",
    "PATIENT_ELEMENTS",
    "QUERY_EVENT",
    "QUERY_STATUS",
    "R4B_BACKPORT",
    "R4_BACKPORT",
    "R5",
    "R5_ONLY",
    "REST_HOOK_FULL_RESOURCE",
    "REST_HOOK_PING",
    "TOPIC_NOTIFICATION",
    "UNREADABLE_FOCUS",
    "FocusOnEhr",
    "NotificationEvent",
    "NotificationRejected",
    "SubscriptionNotification",
    "UnusableResource",
    "bearer_secret_matches",
    "build_clinical_event",
    "build_focus_record",
    "canonical_json",
    "clinical_event_id",
    "focus_on_ehr",
    "notification_of",
    "patient_reference_of",
    "read_notification_bundle",
    "read_notified_resource",
    "read_posted_notification",
    "read_posted_resource",
    "reference_path",
    "subscription_id_of",
    "topic_kind",
    "unauthorized",
    "validate_event_resource",
]
