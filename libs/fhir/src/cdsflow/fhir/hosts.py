"""Whether a host is this machine: plain http is accepted only there (the embedded stack)."""

from __future__ import annotations

import ipaddress

_LOOPBACK_NAMES = frozenset({"localhost"})


def is_loopback_host(host: str | None) -> bool:
    """True for `localhost` and loopback addresses (`127.0.0.0/8`, `::1`)."""
    if not host:
        return False
    if host.lower() in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
