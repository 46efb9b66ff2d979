"""Prefetch tokens (CDS Hooks 2.0 and 3.0 FHIRPath) resolved for a parsed hook request: the
shared rules are `cdsflow.fhir.prefetch_tokens` (the CLI's sandbox EHR fills prefetch by
them too); here the request's checked members stand for its context's. No I/O here.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from cdsflow.fhir import prefetch_tokens
from cdsflow.fhir.prefetch_tokens import UnresolvableToken, prefetch_keys_used
from cdsflow.writeback.domain.hook_requests import HookRequest

__all__ = ["UnresolvableToken", "prefetch_keys_used", "resolved_template"]


def resolved_template(
    template: str, request: HookRequest, prefetched: Mapping[str, Any] | None = None
) -> str | None:
    """The template with its tokens replaced (`cdsflow.fhir.prefetch_tokens`); None when a
    FHIRPath token yields nothing."""
    return prefetch_tokens.resolved_template(template, token_context(request), prefetched)


def token_context(request: HookRequest) -> dict[str, Any]:
    """The hook's context as sent, with the members the request parsed and checked
    (`patientId`, `encounterId`, `userId`) taken from the request."""
    context = dict(request.context)
    context["patientId"] = request.patient_id
    for member, value in (("encounterId", request.encounter_id), ("userId", request.user_id)):
        if value is None:
            context.pop(member, None)
        else:
            context[member] = value
    return context
