"""Operator actions on the EHR that `cdsflow up` and `demo` perform."""

from __future__ import annotations

import contextlib

import httpx

from cdsflow.fhir import EhrClient, EhrError
from cdsflow.runtime.stack import StackOptions
from cdsflow.runtime.subscriptions import create_subscription


async def create_listener_subscription(
    ehr_base_url: str, listener_endpoint: str, options: StackOptions
) -> str:
    async with httpx.AsyncClient(timeout=10) as http:
        ehr = EhrClient(ehr_base_url, http)
        return await create_subscription(ehr, listener_endpoint, options.channel_secret)


async def delete_subscription(ehr_base_url: str, subscription_id: str) -> None:
    """Best effort on the way out: an EHR that is gone already has no Subscription to stop."""
    async with httpx.AsyncClient(timeout=10) as http:
        with contextlib.suppress(EhrError, httpx.HTTPError):
            await EhrClient(ehr_base_url, http, attempts=1).delete("Subscription", subscription_id)
