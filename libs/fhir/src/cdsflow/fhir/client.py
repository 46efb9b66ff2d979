"""An async client for the EHR's FHIR REST API (the configured base URL only).

Reads and searches retry on transport errors and on 429/5xx; a conditional create
(`If-None-Exist`) is idempotent, so it retries too. A transaction is sent once: its caller
owns the retry policy, and an `EhrError` carries what it needs (the status, `Retry-After`,
the OperationOutcome's issue codes). Bodies never reach logs.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from typing import Any

import httpx
import orjson
from tenacity import (
    AsyncRetrying,
    retry_if_exception,
    stop_after_attempt,
    wait_exponential,
)

from cdsflow.fhir.outcomes import FHIR_JSON
from cdsflow.fhir.retry_after import retry_after_s

log = logging.getLogger("cdsflow.fhir")

_RETRYABLE_STATUS = frozenset({429, 500, 502, 503, 504})
# an OperationOutcome issue code as FHIR spells them (`invalid`, `not-found`, ...); anything
# else the EHR puts there is left out, so that no free text travels on
_ISSUE_CODE = re.compile(r"[a-z][a-z-]{0,63}\Z")


class EhrError(Exception):
    """The EHR answered with an error, or could not be reached."""

    def __init__(
        self,
        message: str,
        status_code: int | None = None,
        *,
        retry_after_s: float | None = None,
        issue_codes: tuple[str, ...] = (),
    ) -> None:
        super().__init__(message)
        self.status_code = status_code
        # the EHR's `Retry-After`, in seconds from when it answered (429/503), if it sent one
        self.retry_after_s = retry_after_s
        # `OperationOutcome.issue.code`s of the answer: coded, so free of patient data
        self.issue_codes = issue_codes

    @property
    def is_outage(self) -> bool:
        """True when trying again later can cure it: timed out, overloaded, failing (408,
        429, 5xx). A refusal (another 4xx) or an unreadable answer will not change."""
        status = self.status_code
        return status is not None and (status in (408, 429) or status >= 500)


def is_ehr_outage(exc: BaseException) -> bool:
    """True for a failure that a later retry can cure: the EHR unreachable or timing out (an
    httpx transport error), or answering 408, 429 or 5xx."""
    return isinstance(exc, httpx.TransportError) or (isinstance(exc, EhrError) and exc.is_outage)


def _retryable(exc: BaseException) -> bool:
    if isinstance(exc, httpx.TransportError):
        return True
    return isinstance(exc, EhrError) and exc.status_code in _RETRYABLE_STATUS


class EhrClient:
    """FHIR R4 REST against one base URL. The httpx client is built by the caller's lifespan."""

    def __init__(self, base_url: str, http: httpx.AsyncClient, attempts: int = 3) -> None:
        self.base_url = base_url.rstrip("/")
        self._http = http
        self._attempts = attempts

    def is_on_ehr(self, url: str) -> bool:
        """True when `url` is under the configured base URL (we fetch nothing elsewhere)."""
        return url == self.base_url or url.startswith(self.base_url + "/")

    async def read(self, resource_type: str, resource_id: str) -> dict[str, Any] | None:
        """The current version, or None when the EHR has no such resource."""
        response = await self._send("GET", f"{self.base_url}/{resource_type}/{resource_id}")
        if response.status_code in (404, 410):
            return None
        return self._json(response)

    async def search(
        self,
        resource_type: str,
        params: Sequence[tuple[str, str]],
        max_pages: int = 5,
    ) -> list[dict[str, Any]]:
        """Matching resources (search mode `match`), following `next` links on the EHR only."""
        found: list[dict[str, Any]] = []
        url: str | None = f"{self.base_url}/{resource_type}"
        query: list[tuple[str, str]] | None = list(params)
        for _ in range(max_pages):
            if url is None:
                break
            bundle = self._json(await self._send("GET", url, params=query))
            for entry in bundle.get("entry", []) or []:
                mode = (entry.get("search") or {}).get("mode", "match")
                resource = entry.get("resource")
                if mode == "match" and isinstance(resource, dict):
                    found.append(resource)
            following = [
                str(link.get("url"))
                for link in bundle.get("link", []) or []
                if link.get("relation") == "next"
            ]
            url = next((link for link in following if self.is_on_ehr(link)), None)
            if following and url is None:
                # an EHR that names itself by another base URL (behind a proxy) cuts every
                # search at its first page: said, without the link (it may name a patient)
                log.warning(
                    "the EHR's searchset names its next page off the configured EHR base URL; "
                    "not followed, the search stops there",
                    extra={"resource_type": resource_type},
                )
            query = None
        return found

    async def operation(
        self,
        resource_type: str,
        resource_id: str,
        name: str,
        params: Sequence[tuple[str, str]] = (),
    ) -> dict[str, Any]:
        """GET an instance operation, `{base}/{type}/{id}/${name}?params` (a `$status`, an
        `$events`); its answer, a resource."""
        url = f"{self.base_url}/{resource_type}/{resource_id}/${name}"
        response = await self._send("GET", url, params=list(params))
        if response.status_code in (404, 410):
            raise _answered_with_error(response, "GET")
        return self._json(response)

    async def capabilities(self) -> dict[str, Any]:
        """The EHR's CapabilityStatement (`GET {base}/metadata`)."""
        return self._json(await self._send("GET", f"{self.base_url}/metadata"))

    async def search_count(self, resource_type: str, params: Sequence[tuple[str, str]] = ()) -> int:
        """How many resources match (`_summary=count`)."""
        query = [*params, ("_summary", "count")]
        bundle = self._json(
            await self._send("GET", f"{self.base_url}/{resource_type}", params=query)
        )
        return int(bundle.get("total", 0))

    async def create(
        self, resource: dict[str, Any], if_none_exist: str | None = None
    ) -> dict[str, Any]:
        """POST the resource; with `if_none_exist` the EHR creates it at most once."""
        headers = {"Prefer": "return=representation"}
        if if_none_exist:
            headers["If-None-Exist"] = if_none_exist
        response = await self._send(
            "POST",
            f"{self.base_url}/{resource['resourceType']}",
            json_body=resource,
            headers=headers,
        )
        return self._json(response)

    async def transaction(self, bundle: dict[str, Any] | bytes) -> dict[str, Any]:
        """POST a transaction (or batch) Bundle to the base URL, once: no retry here, since
        the caller decides (its `EhrError` holds the status and `Retry-After`). The Bundle
        may come already serialized (JSON bytes), e.g. when a large one was built off the
        event loop."""
        response = await self._send(
            "POST",
            self.base_url,
            json_body=bundle,
            headers={"Prefer": "return=minimal"},
            attempts=1,
        )
        if response.status_code >= 400:  # a 404 or 410 too: no transaction was done
            raise _answered_with_error(response, "POST")
        body = self._json(response)
        if body.get("resourceType") != "Bundle" or not str(body.get("type", "")).endswith(
            "-response"
        ):
            raise EhrError(
                "EHR answered a transaction with something other than a Bundle response",
                response.status_code,
            )
        return body

    async def update(self, resource: dict[str, Any]) -> dict[str, Any]:
        """PUT the resource at its id."""
        response = await self._send(
            "PUT",
            f"{self.base_url}/{resource['resourceType']}/{resource['id']}",
            json_body=resource,
            headers={"Prefer": "return=representation"},
        )
        return self._json(response)

    async def delete(self, resource_type: str, resource_id: str) -> None:
        """DELETE the resource; a resource already gone is not an error."""
        await self._send("DELETE", f"{self.base_url}/{resource_type}/{resource_id}")

    async def _send(
        self,
        method: str,
        url: str,
        *,
        params: Sequence[tuple[str, str]] | None = None,
        json_body: dict[str, Any] | bytes | None = None,
        headers: dict[str, str] | None = None,
        attempts: int | None = None,
    ) -> httpx.Response:
        request_headers = {"Accept": FHIR_JSON, **(headers or {})}
        content = None
        if json_body is not None:
            request_headers["Content-Type"] = FHIR_JSON
            # encoded once for every try; orjson: building the request of a write-back's
            # Bundle (7 kB) took 0.25 ms with the standard library's encoder, 0.05-0.09 ms so
            content = json_body if isinstance(json_body, bytes) else orjson.dumps(json_body)
        async for attempt in AsyncRetrying(
            retry=retry_if_exception(_retryable),
            stop=stop_after_attempt(attempts or self._attempts),
            wait=wait_exponential(multiplier=0.2, max=2.0),
            reraise=True,
        ):
            with attempt:
                response = await self._http.request(
                    method,
                    url,
                    params=list(params) if params is not None else None,
                    content=content,
                    headers=request_headers,
                )
                if response.status_code in _RETRYABLE_STATUS:
                    raise _answered_with_error(response, method)
        if response.status_code >= 400 and response.status_code not in (404, 410):
            raise _answered_with_error(response, method)
        return response

    @staticmethod
    def _json(response: httpx.Response) -> dict[str, Any]:
        try:
            body = orjson.loads(response.content)
        except ValueError:  # not JSON (or not UTF-8): the EHR misbehaves, as in an outage
            raise EhrError(
                "EHR answered with a body that is not JSON", response.status_code
            ) from None
        if not isinstance(body, dict):
            raise EhrError(
                "EHR answered with a body that is not a FHIR resource", response.status_code
            )
        return body


def _answered_with_error(response: httpx.Response, method: str) -> EhrError:
    # no URL in the message: its path and query can hold patient ids
    return EhrError(
        f"EHR answered {response.status_code} to {method}",
        response.status_code,
        retry_after_s=retry_after_s(response.headers.get("retry-after")),
        issue_codes=_issue_codes(response),
    )


def _issue_codes(response: httpx.Response) -> tuple[str, ...]:
    """The issue codes of an OperationOutcome answer (never its diagnostics, which may
    repeat values); empty when the body is anything else."""
    try:
        body = response.json()
    except ValueError:
        return ()
    if not isinstance(body, dict) or body.get("resourceType") != "OperationOutcome":
        return ()
    issues = body.get("issue")
    codes = [issue.get("code") for issue in issues or [] if isinstance(issue, dict)]
    return tuple(code for code in codes if isinstance(code, str) and _ISSUE_CODE.match(code))[:5]
