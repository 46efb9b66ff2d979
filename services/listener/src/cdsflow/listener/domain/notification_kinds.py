"""Short, stable names for how the EHR notified us (metric labels and span attributes)."""

from __future__ import annotations

REST_HOOK_FULL_RESOURCE = "rest-hook-full-resource"
REST_HOOK_PING = "rest-hook-ping"
