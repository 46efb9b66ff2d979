"""The channel secret: the EHR proves it is the EHR by sending it with every notification."""

from __future__ import annotations

import hmac


def bearer_secret_matches(authorization: str | None, channel_secret: str) -> bool:
    """True when `authorization` is `Bearer <channel_secret>`, compared in constant time."""
    if not authorization:
        return False
    scheme, _, token = authorization.strip().partition(" ")
    if scheme.lower() != "bearer":
        return False
    return hmac.compare_digest(token.strip().encode(), channel_secret.encode())
