"""What the EHR's authorization server answers: its SMART configuration (where the token
endpoint is) and its token endpoint (an access token, or why not), read into an `AccessToken`
or an error that says whether trying again can help.

- 408, 429 and 5xx are an outage: `EhrError` with that status (`is_outage`), retried like any
  other EHR outage.
- Any other refusal (400 `invalid_scope`, 401 `invalid_client`, ...) or a useless answer is an
  `EhrAuthError`: configuration, not weather; never retried. Its message names the OAuth error
  and the server's description, with anything shaped like a JWT withheld, so that no
  assertion or token reaches a log.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import httpx

from cdsflow.fhir.client import EhrError
from cdsflow.fhir.retry_after import retry_after_s

# refresh this long before `expires_in` runs out: a fifth of the lifetime, at most a minute
MAX_REFRESH_MARGIN_S = 60.0
# SMART requires `expires_in`; an answer without one is trusted for this long
DEFAULT_EXPIRES_IN_S = 300
_OUTAGE_STATUS = frozenset({408, 429})
_OAUTH_ERROR = re.compile(r"[a-z][a-z_]{0,63}\Z")
_JWT_LIKE = re.compile(r"eyJ[A-Za-z0-9_-]*\.[A-Za-z0-9_-]*(\.[A-Za-z0-9_-]*)?")
_UNPRINTABLE = re.compile(r"[^\x20-\x7e]")
_MAX_DESCRIPTION_CHARS = 200


class EhrAuthError(EhrError):
    """cdsflow could not get an access token from the EHR, and trying again will not help:
    the token endpoint refused the client, or the configuration is wrong."""

    def __init__(
        self, message: str, status_code: int | None = None, *, oauth_error: str | None = None
    ) -> None:
        super().__init__(message, status_code)
        # the OAuth `error` code (`invalid_client`, `invalid_scope`, ...) when the EHR sent one
        self.oauth_error = oauth_error

    @property
    def is_outage(self) -> bool:
        return False


@dataclass(frozen=True)
class AccessToken:
    """A bearer token and when to stop using it (on the monotonic clock it was fetched by)."""

    value: str = field(repr=False)
    refresh_at: float
    scope: str


def refresh_margin_s(expires_in_s: float) -> float:
    """How long before expiry a token is replaced: a fifth of its life, at most a minute."""
    return min(MAX_REFRESH_MARGIN_S, expires_in_s / 5)


def access_token_from(response: httpx.Response, requested_at: float) -> AccessToken:
    """The token endpoint's answer as a token (`requested_at`: the monotonic time the request
    left, so that expiry is counted from before the EHR started the clock)."""
    body = _checked_json(response, "token endpoint")
    value = body.get("access_token")
    if not isinstance(value, str) or not value:
        raise EhrAuthError("the EHR's token endpoint answered without an access_token", 200)
    token_type = body.get("token_type")
    if not isinstance(token_type, str) or token_type.lower() != "bearer":
        raise EhrAuthError("the EHR's token endpoint answered a token that is not a bearer", 200)
    expires_in = body.get("expires_in", DEFAULT_EXPIRES_IN_S)
    if isinstance(expires_in, bool) or not isinstance(expires_in, int | float) or expires_in <= 0:
        raise EhrAuthError("the EHR's token endpoint answered an unusable expires_in", 200)
    scope = body.get("scope")
    return AccessToken(
        value=value,
        refresh_at=requested_at + expires_in - refresh_margin_s(expires_in),
        scope=scope if isinstance(scope, str) else "",
    )


def token_endpoint_from(response: httpx.Response, base_url: str) -> str:
    """The `token_endpoint` of the EHR's `.well-known/smart-configuration` answer; an https
    base URL must not send the client assertion over plain http."""
    body = _checked_json(response, "SMART configuration")
    token_url = body.get("token_endpoint")
    if not isinstance(token_url, str) or not token_url.startswith(("http://", "https://")):
        raise EhrAuthError(
            "the EHR's SMART configuration names no http(s) token_endpoint; "
            "set CDSFLOW_EHR_TOKEN_URL",
            response.status_code,
        )
    if base_url.startswith("https://") and not token_url.startswith("https://"):
        raise EhrAuthError(
            "the EHR's SMART configuration names a plain-http token_endpoint for an https EHR",
            response.status_code,
        )
    return token_url


def _checked_json(response: httpx.Response, what: str) -> dict[str, Any]:
    status = response.status_code
    if status in _OUTAGE_STATUS or status >= 500:
        raise EhrError(
            f"the EHR's {what} answered {status}",
            status,
            retry_after_s=retry_after_s(response.headers.get("retry-after")),
        )
    body = _json_object(response)
    if status != 200:
        raise _refusal(what, status, body)
    if body is None:
        raise EhrAuthError(f"the EHR's {what} answered with something other than JSON", status)
    return body


def _refusal(what: str, status: int, body: dict[str, Any] | None) -> EhrAuthError:
    error = (body or {}).get("error")
    oauth_error = error if isinstance(error, str) and _OAUTH_ERROR.match(error) else None
    description = _safe_description((body or {}).get("error_description"))
    reason = ": ".join(part for part in (oauth_error, description) if part)
    return EhrAuthError(
        f"the EHR's {what} refused cdsflow ({status}){': ' + reason if reason else ''}",
        status,
        oauth_error=oauth_error,
    )


def _safe_description(description: Any) -> str | None:
    """The server's `error_description`, printable, short, with JWT-shaped text withheld."""
    if not isinstance(description, str):
        return None
    text = _UNPRINTABLE.sub(" ", _JWT_LIKE.sub("[token withheld]", description)).strip()
    return text[:_MAX_DESCRIPTION_CHARS] or None


def _json_object(response: httpx.Response) -> dict[str, Any] | None:
    try:
        body = response.json()
    except ValueError:
        return None
    return body if isinstance(body, dict) else None
