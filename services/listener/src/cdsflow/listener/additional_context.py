"""An event's `additional-context` (R4 backport `additional-context`, R4B/R5
`additionalContext`): resources related to the focus, such as its Patient or Encounter, that
the reasoner uses as the patient's context.

- **carried** in a full-resource Bundle: each one that is valid FHIR and about a patient of
  this EHR is published as a clinical event of its own, after the focus (its own `event_id`,
  so the same Patient version sent again is not published twice; `source.event_number` 0, as
  it is not the event's focus). One that is not valid, or names no patient here, is skipped:
  it is context, not the change, and never makes the notification fail.
- **referenced only** (id-only, or a Bundle that leaves it out): not read. One read per event
  is what the listener asks of the EHR; the reasoner reads a patient's context on a miss.

Each is counted in `cdsflow_listener_additional_context_total{outcome}`: `carried` (published,
unless already on the topic), `invalid`, `unusable`, `not-carried`.
"""

from __future__ import annotations

from datetime import datetime

from cdsflow.contracts import NotificationKind
from cdsflow.fhir import InvalidResource, validate_resource
from cdsflow.listener.domain import NotificationEvent
from cdsflow.listener.intake import NotificationIntake
from cdsflow.listener.resource_deliveries import EventDelivery, resource_delivery


def context_deliveries(
    intake: NotificationIntake,
    event: NotificationEvent,
    kind: NotificationKind.ValueType,
    received_at: datetime,
) -> list[EventDelivery]:
    """The usable additional-context resources the event carries, as clinical events."""
    counted = intake.metrics.additional_context
    not_carried = len(event.additional_context) - len(event.context_resources)
    if not_carried > 0:
        counted.labels("not-carried").inc(not_carried)
    deliveries = []
    for resource in event.context_resources:
        try:
            validate_resource(resource)
        except InvalidResource:
            counted.labels("invalid").inc()
            continue
        delivery = resource_delivery(intake, resource, kind, received_at)
        if delivery.unusable is not None:
            counted.labels("unusable").inc()
            continue
        counted.labels("carried").inc()
        deliveries.append(delivery)
    return deliveries
