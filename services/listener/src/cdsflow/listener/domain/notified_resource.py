"""Check the resource that a rest-hook notification carries, before anything is published."""

from __future__ import annotations

from typing import Any

from cdsflow.fhir import (
    InvalidResource,
    is_fhir_id,
    parse_resource_json,
    validate_resource,
)
from cdsflow.listener.domain.rejections import bad_request


def read_notified_resource(raw: bytes, resource_type: str, resource_id: str) -> dict[str, Any]:
    """The resource in the body of `PUT {endpoint}/{resource_type}/{resource_id}`.

    It must parse, match the type and id in the URL, and be valid FHIR of its type;
    otherwise `NotificationRejected` (400) says which element is wrong, never its value.
    """
    if not is_fhir_id(resource_id):
        raise bad_request(
            "invalid", "invalid", "the resource id in the notification URL is not a FHIR id"
        )
    try:
        resource = parse_resource_json(raw)
    except InvalidResource as exc:
        raise bad_request("structure", exc.reason, str(exc)) from None
    if resource["resourceType"] != resource_type:
        raise bad_request(
            "invalid",
            "invalid",
            "'resourceType' does not match the resource type in the notification URL",
            "resourceType",
        )
    if resource.get("id") != resource_id:
        raise bad_request(
            "invalid",
            "invalid",
            "'id' does not match the resource id in the notification URL",
            "id",
        )
    try:
        validate_resource(resource)
    except InvalidResource as exc:
        raise bad_request("invalid", exc.reason, f"not a valid FHIR resource: {exc}") from None
    return resource


def validate_event_resource(resource: dict[str, Any], path: str, *, r5: bool = False) -> bool:
    """A resource that a notification Bundle carries must be valid FHIR of its type, as for
    `PUT`; otherwise `NotificationRejected` (400) names where it is in the Bundle. True when
    it is valid FHIR R4; with `r5` (it came in an R5 notification), False when it is valid
    FHIR R5 only (an R5 Encounter's `class`, ...): well-formed, but not what cdsflow reads."""
    try:
        validate_resource(resource)
    except InvalidResource as exc:
        if r5:
            try:
                validate_resource(resource, "R5")
            except InvalidResource:
                pass
            else:
                return False
        raise bad_request(
            "invalid", exc.reason, f"'{path}' is not a valid FHIR resource: {exc}", path
        ) from None
    return True


def read_posted_resource(raw: bytes) -> dict[str, Any]:
    """The resource that a rest-hook POSTs to the endpoint itself (SEKMET's `post-endpoint`):
    checked as a PUT's, its type and id read from the resource."""
    try:
        resource = parse_resource_json(raw)
    except InvalidResource as exc:
        raise bad_request("structure", exc.reason, str(exc)) from None
    resource_id = resource.get("id")
    if not isinstance(resource_id, str):
        raise bad_request("required", "invalid", "a notified resource needs its 'id'", "id")
    return read_notified_resource(raw, str(resource["resourceType"]), resource_id)
