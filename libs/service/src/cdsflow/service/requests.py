"""Checks on an incoming HTTP request that every service makes the same way, before its body
is trusted: one `Authorization` header at most, a JSON media type in UTF-8, a bounded body.

Each raises `RequestRefused` with a status, a fixed `reason` label for metrics and a
description that names the rule, never what the client sent.
"""

from __future__ import annotations

from email.message import Message

from fastapi import Request


class RequestRefused(Exception):
    """The request itself is unacceptable: 4xx, and nothing in it is used."""

    def __init__(
        self,
        status_code: int,
        issue_code: str,
        reason: str,
        description: str,
        expression: tuple[str, ...] = (),
    ) -> None:
        super().__init__(description)
        self.status_code = status_code
        # from the FHIR issue-type value set, for the OperationOutcome
        self.issue_code = issue_code
        self.reason = reason
        self.description = description
        # the elements at fault (OperationOutcome.issue.expression), never their values
        self.expression = expression


def single_header(request: Request, name: str) -> str | None:
    """The header's one value, None when absent; a repeated header is refused (400)."""
    values = request.headers.getlist(name)
    if len(values) > 1:
        raise RequestRefused(400, "structure", "duplicate-header", f"more than one {name} header")
    return values[0] if values else None


def require_json_media_type(request: Request, accepted: tuple[str, ...]) -> None:
    """An absent Content-Type is taken as JSON; otherwise it must be one of `accepted`, well
    formed, with no charset other than UTF-8 (JSON is UTF-8 on the wire), else 415."""
    content_type = single_header(request, "content-type")
    if content_type is None:
        return
    if not is_json_media_type(content_type, accepted):
        raise RequestRefused(
            415,
            "not-supported",
            "unsupported-media-type",
            f"Content-Type must be one of {', '.join(accepted)} (charset utf-8, if any)",
        )


def is_json_media_type(content_type: str, accepted: tuple[str, ...]) -> bool:
    """True for `type/subtype[; charset=utf-8][; other=param]` with type/subtype in `accepted`."""
    media_type, _, parameters = content_type.partition(";")
    if media_type.strip().lower() not in accepted:
        return False
    if not parameters.strip():
        return True
    parsed = Message()
    parsed["content-type"] = content_type
    params = parsed.get_params(failobj=[])[1:]
    declared = [p for p in parameters.split(";") if p.strip()]
    if len(params) != len(declared) or any(not name or not value for name, value in params):
        return False  # `;;;`, `; charset`, `; =x`: not parameters
    charset = parsed.get_content_charset()
    return charset is None or charset in {"utf-8", "utf8"}


async def read_bounded_body(request: Request, limit_bytes: int) -> bytes:
    """At most `limit_bytes` of body: refused early on Content-Length and again while reading
    (413), so a large body is never held in memory."""
    declared = single_header(request, "content-length")
    if declared is not None and declared.strip().isdigit() and int(declared) > limit_bytes:
        raise body_too_large(limit_bytes)
    body = bytearray()
    async for chunk in request.stream():
        body.extend(chunk)
        if len(body) > limit_bytes:
            raise body_too_large(limit_bytes)
    return bytes(body)


def body_too_large(limit_bytes: int) -> RequestRefused:
    return RequestRefused(
        413, "too-costly", "too-large", f"the body exceeds the limit of {limit_bytes} bytes"
    )
