"""The listener's rules, as pure functions: no I/O, no clock, no configuration reads."""

from cdsflow.listener.domain.channel_secret import bearer_secret_matches
from cdsflow.listener.domain.clinical_event import (
    build_clinical_event,
    canonical_json,
    clinical_event_id,
)
from cdsflow.listener.domain.notification_kinds import REST_HOOK_FULL_RESOURCE, REST_HOOK_PING
from cdsflow.listener.domain.notified_resource import read_notified_resource
from cdsflow.listener.domain.patient_subject import PATIENT_ELEMENTS, patient_reference_of
from cdsflow.listener.domain.rejections import (
    NotificationRejected,
    unauthorized,
    unsupported_notification_bundle,
)
from cdsflow.listener.domain.unusable_resources import (
    FOREIGN_PATIENT,
    NO_PATIENT,
    UnusableResource,
)

__all__ = [
    "FOREIGN_PATIENT",
    "NO_PATIENT",
    "PATIENT_ELEMENTS",
    "REST_HOOK_FULL_RESOURCE",
    "REST_HOOK_PING",
    "NotificationRejected",
    "UnusableResource",
    "bearer_secret_matches",
    "build_clinical_event",
    "canonical_json",
    "clinical_event_id",
    "patient_reference_of",
    "read_notified_resource",
    "unauthorized",
    "unsupported_notification_bundle",
]
