"""The CLI's own calls to the EHR (`up`'s Subscription delete, `demo`'s story, `hook`'s
prefetch), with the auth that the services use: `CDSFLOW_EHR_AUTH` and its variables
(`CDSFLOW_EHR_BEARER_TOKEN`, or `CDSFLOW_EHR_CLIENT_ID`, `CDSFLOW_EHR_PRIVATE_KEY_FILE`,
`CDSFLOW_EHR_KEY_ID`, ...), read from the environment by the services' own settings
(`cdsflow.service.ServiceSettings`), so an EHR that asks the services for a token asks the
CLI for the same one. `up` hands the same environment to the services it starts."""

from __future__ import annotations

import contextlib

import httpx
from pydantic import ValidationError

from cdsflow.fhir import EhrClient, EhrError, UnusableSigningKey


class EhrAuthMisconfigured(ValueError):
    """`CDSFLOW_EHR_AUTH` and its variables are incomplete, or the key cannot be used."""


def ehr_http_client(
    ehr_base_url: str,
    timeout_s: float,
    *,
    transport: httpx.AsyncBaseTransport | None = None,
) -> httpx.AsyncClient:
    """An httpx client for the EHR at `ehr_base_url`, authenticated as the services are;
    `EhrAuthMisconfigured` (its message names the variables, never a secret) otherwise."""
    # imported here: the service library is heavy, and most commands never call the EHR
    from cdsflow.service import ServiceSettings, ehr_auth

    class CliEhrSettings(ServiceSettings):
        """The services' EHR settings, for the CLI; it serves nothing, so no port."""

        http_port: int = 0

    try:
        settings = CliEhrSettings(ehr_base_url=ehr_base_url)
        auth = ehr_auth(settings)
    except ValidationError as exc:
        problems = "; ".join(error["msg"] for error in exc.errors())
        raise EhrAuthMisconfigured(f"the EHR settings are incomplete: {problems}") from None
    except (UnusableSigningKey, OSError) as exc:
        raise EhrAuthMisconfigured(f"CDSFLOW_EHR_PRIVATE_KEY_FILE cannot be used: {exc}") from None
    return httpx.AsyncClient(timeout=timeout_s, auth=auth, transport=transport)


async def delete_subscription(subscription_url: str) -> None:
    """Best effort on the way out: an EHR that is gone already has no Subscription to stop."""
    base_url, _, subscription_id = subscription_url.rpartition("/Subscription/")
    with contextlib.suppress(EhrAuthMisconfigured):
        async with ehr_http_client(base_url, 10) as http:
            with contextlib.suppress(EhrError, httpx.HTTPError):
                await EhrClient(base_url, http, attempts=1).delete("Subscription", subscription_id)
