"""Turn an accepted notification into one `ClinicalEvent`."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from google.protobuf.timestamp_pb2 import Timestamp

from cdsflow.contracts import ClinicalEvent, EventSource, NotificationKind
from cdsflow.listener.domain.subscription_notifications import reference_path


def clinical_event_id(
    ehr_base_url: str,
    resource_type: str,
    resource_id: str,
    version_id: str,
    resource: Mapping[str, Any],
) -> str:
    """Hex SHA-256 that names one change of one resource on one EHR.

    The change is the resource's `meta.versionId`; without one, the digest of its canonical
    JSON. So the same change delivered twice yields the same id, and a retry by the EHR can be
    recognised downstream.
    """
    change = version_id or "sha256:" + _sha256_hex(canonical_json(resource))
    # a JSON array keeps the parts unambiguous whatever characters they hold
    parts = json.dumps([ehr_base_url.rstrip("/"), resource_type, resource_id, change])
    return _sha256_hex(parts.encode())


def canonical_json(resource: Mapping[str, Any]) -> bytes:
    """Key order and whitespace removed, so equal resources give equal bytes."""
    return json.dumps(resource, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def build_clinical_event(
    resource: Mapping[str, Any],
    resource_json: bytes,
    *,
    kind: NotificationKind.ValueType,
    ehr_base_url: str,
    patient_reference: str,
    patient_key: str,
    received_at: datetime,
) -> ClinicalEvent:
    """The event for a validated resource; `resource_json` is the body as the EHR sent it."""
    resource_type = str(resource["resourceType"])
    resource_id = str(resource["id"])
    meta = resource.get("meta")
    meta = meta if isinstance(meta, Mapping) else {}
    version_id = meta.get("versionId")
    version_id = version_id if isinstance(version_id, str) else ""
    occurred_at = _instant(meta.get("lastUpdated")) or received_at
    return ClinicalEvent(
        event_id=clinical_event_id(ehr_base_url, resource_type, resource_id, version_id, resource),
        resource_type=resource_type,
        resource_id=resource_id,
        resource_version=version_id,
        resource_json=resource_json,
        patient_key=patient_key,
        patient_reference=patient_reference,
        source=EventSource(ehr_base_url=ehr_base_url.rstrip("/"), kind=kind),
        occurred_at=_timestamp(occurred_at),
        received_at=_timestamp(received_at),
    )


def build_focus_record(
    focus: str,
    *,
    kind: NotificationKind.ValueType,
    ehr_base_url: str,
    received_at: datetime,
) -> ClinicalEvent:
    """The record of an event whose resource cannot be had (a focus on another server, or
    one the EHR no longer has): no resource and no patient; its id names the focus, so a
    redelivery is recognised."""
    resource_type, resource_id = _type_and_id(focus)
    parts = json.dumps([ehr_base_url.rstrip("/"), "focus", focus])
    return ClinicalEvent(
        event_id=_sha256_hex(parts.encode()),
        resource_type=resource_type,
        resource_id=resource_id,
        source=EventSource(ehr_base_url=ehr_base_url.rstrip("/"), kind=kind),
        occurred_at=_timestamp(received_at),
        received_at=_timestamp(received_at),
    )


def _type_and_id(focus: str) -> tuple[str, str]:
    path = reference_path(focus)
    if path is None:
        return "", ""
    resource_type, _, resource_id = path.partition("/")
    return resource_type, resource_id


def _instant(value: object) -> datetime | None:
    """A FHIR instant (always with a time zone), or None when absent or unreadable."""
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else None


def _timestamp(moment: datetime) -> Timestamp:
    stamp = Timestamp()
    stamp.FromDatetime(moment)
    return stamp


def _sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
