"""The EHR auth a service's settings ask for, as the `httpx.Auth` of its EHR client.

The reasoner and the writeback get it through `ehr_http` (their EHR client); the listener and
`cdsflow up` put it on clients of their own: `httpx.AsyncClient(..., auth=ehr_auth(settings))`.
"""

from __future__ import annotations

import httpx

from cdsflow.fhir import (
    BackendServicesClient,
    SmartBackendAuth,
    StaticBearerAuth,
    load_signing_key,
)
from cdsflow.service.settings import ServiceSettings


def ehr_auth(settings: ServiceSettings) -> httpx.Auth | None:
    """None for `CDSFLOW_EHR_AUTH=none`, a static bearer, or SMART Backend Services (its
    private key read now, so that a key that went missing since the settings were read
    stops the service at start)."""
    # the settings refuse an incomplete configuration; these checks only narrow the types
    if settings.ehr_auth == "bearer" and settings.ehr_bearer_token is not None:
        return StaticBearerAuth(settings.ehr_bearer_token.get_secret_value())
    client_id, key_file, key_id = (
        settings.ehr_client_id,
        settings.ehr_private_key_file,
        settings.ehr_key_id,
    )
    if settings.ehr_auth == "smart-backend" and client_id and key_file and key_id:
        return SmartBackendAuth(
            BackendServicesClient(
                base_url=settings.ehr_base_url,
                client_id=client_id,
                signing_key=load_signing_key(key_file, key_id),
                scopes=" ".join(settings.ehr_scopes.split()),
                token_url=settings.ehr_token_url,
            )
        )
    if settings.ehr_auth != "none":
        raise ValueError(f"incomplete settings for CDSFLOW_EHR_AUTH={settings.ehr_auth}")
    return None
