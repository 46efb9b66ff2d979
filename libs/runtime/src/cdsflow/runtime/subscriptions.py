"""Waiting for the listener's Subscriptions: the listener creates them on the EHR itself (its
channels); `cdsflow up` returns once the EHR reports every one active."""

from __future__ import annotations

import time
from typing import Any

import httpx

from cdsflow.runtime.processes import ProcessFailed

_POLL_INTERVAL_S = 0.2


def wait_until_channels_active(listener_url: str, timeout_s: float) -> list[dict[str, Any]]:
    """The listener's `GET /subscriptions` once every channel is active; `ProcessFailed`,
    naming each channel's status and the EHR's error, when that takes over `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    states: list[dict[str, Any]] = []
    while True:
        try:
            answer = httpx.get(f"{listener_url}/subscriptions", timeout=5)
            states = answer.json() if answer.is_success else states
        except (httpx.HTTPError, ValueError):
            pass  # restarting or busy: ask again
        if states and all(state.get("status") == "active" for state in states):
            return states
        if time.monotonic() > deadline:
            shown = ", ".join(
                f"{state.get('channel')}: {state.get('status')}"
                + (f" ({state['error']})" if state.get("error") else "")
                for state in states
            )
            raise ProcessFailed(
                f"the EHR did not make the listener's Subscriptions active within "
                f"{timeout_s:.0f}s ({shown or 'none reported'}); can the EHR reach the "
                "listener? (--listener-public-url)"
            )
        time.sleep(_POLL_INTERVAL_S)
