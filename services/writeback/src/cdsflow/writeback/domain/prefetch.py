"""Prefetch (CDS Hooks "Providing FHIR Resources to a CDS Service"): which of a service's
templates the EHR satisfied, the queries for the ones it did not, searchset pages, and the
FHIR resources in what it sent.

A value the EHR sent as `null`, or as an `OperationOutcome` (a prefetch error), counts as not
provided: the service fetches it itself when it may, else it answers 412. Tokens are resolved
by `prefetch_tokens` (2.0 tokens, and 3.0 FHIRPath). A template whose FHIRPath reads another
prefetch key (`%key`) is resolved once that key is at hand (`dependent`); it must come after
that key in the templates (so there are no cycles), or it is unresolvable.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from cdsflow.writeback.domain.hook_requests import HookRequest
from cdsflow.writeback.domain.prefetch_tokens import (
    UnresolvableToken,
    prefetch_keys_used,
    resolved_template,
)


@dataclass(frozen=True)
class PrefetchPlan:
    """What the EHR sent that is usable, and what must still be fetched."""

    # key -> what the EHR sent (a FHIR resource or a Bundle), usable
    provided: Mapping[str, dict[str, Any]]
    # key -> the resolved query (relative to fhirServer) of each template not satisfied
    # whose tokens need no other key; None: a FHIRPath token yields nothing (no data)
    to_fetch: Mapping[str, str | None]
    # keys not satisfied whose templates read other keys (`%key`), in template order
    dependent: tuple[str, ...] = ()
    # key -> why its template cannot be resolved from this request
    unresolvable: Mapping[str, str] | None = None
    # provided searchsets with a `next` page, to be completed
    incomplete: tuple[str, ...] = ()


def prefetch_plan(templates: Mapping[str, str], request: HookRequest) -> PrefetchPlan:
    provided: dict[str, dict[str, Any]] = {}
    to_fetch: dict[str, str | None] = {}
    dependent: list[str] = []
    unresolvable: dict[str, str] = {}
    declared: list[str] = []
    for key, template in templates.items():
        value = request.prefetch.get(key)
        reads = prefetch_keys_used(template)
        if isinstance(value, dict) and is_provided(value):
            provided[key] = value
        elif not reads <= set(declared):
            unresolvable[key] = "its template reads a prefetch key that is not declared before it"
        elif reads:
            dependent.append(key)
        else:
            try:
                to_fetch[key] = resolved_template(template, request)
            except UnresolvableToken as exc:
                unresolvable[key] = str(exc)
        declared.append(key)
    incomplete = tuple(key for key, value in provided.items() if next_page(value) is not None)
    return PrefetchPlan(provided, to_fetch, tuple(dependent), unresolvable, incomplete)


def is_provided(value: Any) -> bool:
    """A FHIR resource other than an OperationOutcome (null and errors are not provided)."""
    return (
        isinstance(value, dict)
        and isinstance(value.get("resourceType"), str)
        and value["resourceType"] != "OperationOutcome"
    )


def resources_of(value: Mapping[str, Any]) -> list[dict[str, Any]]:
    """A read's resource, or a searchset's matches (its OperationOutcome entries, e.g. a
    warning with `search.mode` outcome, are left out)."""
    if value.get("resourceType") != "Bundle":
        return [dict(value)]
    found = []
    for entry in _entries(value):
        resource = entry.get("resource")
        if isinstance(resource, dict) and is_provided(resource):
            found.append(resource)
    return found


def next_page(value: Mapping[str, Any]) -> str | None:
    """The URL of a searchset's `next` link, if it has one."""
    if value.get("resourceType") != "Bundle":
        return None
    links = value.get("link")
    for link in links if isinstance(links, list) else []:
        if isinstance(link, dict) and link.get("relation") == "next":
            url = link.get("url")
            return url if isinstance(url, str) and url else None
    return None


def with_page(searchset: Mapping[str, Any], page: Mapping[str, Any]) -> dict[str, Any]:
    """The searchset with the entries of its next page added, and that page's links."""
    merged = dict(searchset)
    merged["entry"] = [*_entries(searchset), *_entries(page)]
    merged["link"] = page.get("link") if isinstance(page.get("link"), list) else []
    return merged


def bounded(searchset: Mapping[str, Any], max_entries: int) -> dict[str, Any]:
    """The searchset as it is used: at most `max_entries` entries, no paging links left."""
    kept = dict(searchset)
    if kept.get("resourceType") == "Bundle":
        kept["entry"] = _entries(searchset)[:max_entries]
        kept.pop("link", None)
    return kept


def entry_count(value: Mapping[str, Any]) -> int:
    return len(_entries(value)) if value.get("resourceType") == "Bundle" else 1


def is_on_server(url: str, fhir_server: str) -> bool:
    """`url` is on `fhir_server`: same scheme, host and port, its path at or below the
    server's base (a query is allowed: a `next` link's paging parameters)."""
    try:
        given, base = urlsplit(url), urlsplit(fhir_server)
        same_origin = (given.scheme, given.hostname, given.port) == (
            base.scheme,
            base.hostname,
            base.port,
        )
    except ValueError:
        return False
    if not same_origin or given.username is not None or given.fragment:
        return False
    prefix = base.path.rstrip("/")
    return given.path == base.path or given.path.startswith(prefix + "/")


def _entries(value: Mapping[str, Any]) -> list[dict[str, Any]]:
    entries = value.get("entry")
    return [e for e in entries if isinstance(e, dict)] if isinstance(entries, list) else []
