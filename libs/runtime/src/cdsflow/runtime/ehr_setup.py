"""Operator actions on the EHR that `cdsflow up` performs."""

from __future__ import annotations

import contextlib

import httpx

from cdsflow.fhir import EhrClient, EhrError


async def delete_subscription(subscription_url: str) -> None:
    """Best effort on the way out: an EHR that is gone already has no Subscription to stop."""
    base_url, _, subscription_id = subscription_url.rpartition("/Subscription/")
    async with httpx.AsyncClient(timeout=10) as http:
        with contextlib.suppress(EhrError, httpx.HTTPError):
            await EhrClient(base_url, http, attempts=1).delete("Subscription", subscription_id)
