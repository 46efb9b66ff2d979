"""Scoring a hook call on demand, inside its budget, when no stored recommendation answers it
(and always for `order-select`/`order-sign`, whose draft orders are not in the EHR yet).

The same adapter as the reasoner's turns the call's data into the model's inputs: the
service's prefetch (what the EHR sent, plus what the writeback fetched itself) and the
context's draft orders. Its active model version on Triton scores them, and the result is
the same `Recommendation` message the reasoner publishes (`recommendation_message`), so its
cards look the same whichever way they came.

- Missing prefetch (absent, `null`, an `OperationOutcome`) is fetched from `fhirServer` with
  the call's `fhirAuthorization` bearer, only when that server is on the allowlist of the
  JWT's issuer (`fhir_servers`); never with the writeback's own EHR credentials, and without
  following redirects. When that is not allowed, or the EHR refuses, `PrefetchUnavailable`
  (the hook answers 412). Templates whose 3.0 FHIRPath tokens read another key (`%key`)
  are fetched once that key is at hand.
- A searchset (fetched, or prefetched by the EHR) with a `next` link is completed: its pages
  are fetched the same way, only from `fhirServer` itself, up to `PageBounds` (past them, what
  was read is used). A `next` link elsewhere is never fetched: 412.
- Everything (fetches and Triton) runs within `deadline_s`; past it, or with Triton down or
  answering outside the adapter's contract, the answer is no recommendation (no cards).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx
from opentelemetry import trace
from prometheus_client import Counter

from cdsflow.contracts import Recommendation
from cdsflow.fhir import FHIR_JSON
from cdsflow.models import (
    MissingRequiredInputs,
    ModelAdapter,
    ModelContractError,
    build_model_inputs,
    interpret_outputs,
)
from cdsflow.models.recommendation_messages import RecommendationSubject, recommendation_message
from cdsflow.service import AnswerTooLarge
from cdsflow.writeback.domain.client_tokens import TrustedIssuer
from cdsflow.writeback.domain.discovery import CdsService
from cdsflow.writeback.domain.hook_requests import HookRequest
from cdsflow.writeback.domain.prefetch import (
    PrefetchPlan,
    bounded,
    entry_count,
    is_on_server,
    is_provided,
    next_page,
    prefetch_plan,
    resources_of,
    with_page,
)
from cdsflow.writeback.domain.prefetch_tokens import (
    UnresolvableToken,
    prefetch_keys_used,
    resolved_template,
)
from cdsflow.writeback.model_scoring import ModelUnavailable, TritonScorer

logger = logging.getLogger(__name__)


class PrefetchUnavailable(Exception):
    """What the service needs was neither prefetched nor fetchable: 412. The message names
    the prefetch keys (the adapter's, never a value) and why."""


@dataclass(frozen=True)
class OnDemandResult:
    recommendation: Recommendation | None
    # for metrics and the span: scored, deadline, model-unavailable, model-error,
    # missing-inputs, no-model
    outcome: str


@dataclass(frozen=True)
class PageBounds:
    """How far a searchset's `next` links are followed (per prefetch key)."""

    max_pages: int = 10
    max_entries: int = 1_000


class OnDemandScoring:
    def __init__(
        self,
        *,
        adapters: Mapping[str, ModelAdapter],
        scorer: TritonScorer | None,
        fhir_http: httpx.AsyncClient,
        deadline_s: float,
        ehr_base_url: str,
        page_bounds: PageBounds | None = None,
        next_pages: Counter | None = None,
    ) -> None:
        self._adapters = adapters
        self._scorer = scorer
        self._http = fhir_http
        self._deadline_s = deadline_s
        self._ehr_base_url = ehr_base_url
        self._bounds = page_bounds or PageBounds()
        # `next` links by result: followed, bounded (past a bound, not followed)
        self._next_pages = next_pages

    async def score(
        self,
        service: CdsService,
        request: HookRequest,
        *,
        patient_key: str,
        issuer: TrustedIssuer | None,
    ) -> OnDemandResult:
        """The recommendation for this call, or why there is none; `PrefetchUnavailable`
        when the data that the service's prefetch names cannot be had."""
        adapter = self._adapters.get(service.adapter_id)
        if self._scorer is None or adapter is None or service.active_version is None:
            return OnDemandResult(None, "no-model")
        plan = prefetch_plan(service.prefetch, request)
        if plan.unresolvable:
            raise PrefetchUnavailable(
                "; ".join(
                    f"prefetch '{key}' not provided, and {why}"
                    for key, why in plan.unresolvable.items()
                )
            )
        fetching = [key for key, query in plan.to_fetch.items() if query is not None]
        if (fetching or plan.dependent) and not _may_fetch(request, issuer):
            raise PrefetchUnavailable(
                f"prefetch {_keys((*fetching, *plan.dependent))} not provided, and the service "
                "may not fetch it (no fhirAuthorization, or fhirServer not allowed for this "
                "issuer)"
            )
        if plan.incomplete and not _may_fetch(request, issuer):
            raise PrefetchUnavailable(
                f"prefetch {_keys(plan.incomplete)} has a next page, and the service may not "
                "fetch it (no fhirAuthorization, or fhirServer not allowed for this issuer)"
            )
        loop = asyncio.get_running_loop()
        ends_at = loop.time() + self._deadline_s
        try:
            async with asyncio.timeout_at(ends_at):
                at_hand = await self._prefetch_at_hand(service.prefetch, plan, request)
                resources = [
                    *(r for found in at_hand.values() for r in resources_of(found)),
                    *request.draft_orders,
                ]
                as_of = datetime.now(UTC)
                inputs = build_model_inputs(adapter, resources, as_of)
                outputs = await self._scorer.score(
                    adapter, service.active_version, inputs, ends_at - loop.time()
                )
        except TimeoutError:
            return OnDemandResult(None, "deadline")
        except ModelUnavailable:
            return OnDemandResult(None, "model-unavailable")
        except MissingRequiredInputs:
            return OnDemandResult(None, "missing-inputs")
        try:
            result = interpret_outputs(adapter, inputs, outputs)
        except ModelContractError:
            logger.warning("the model answered outside its adapter's contract (on demand)")
            return OnDemandResult(None, "model-error")
        recommendation = recommendation_message(
            adapter,
            inputs,
            result,
            model_version=service.active_version,
            mode="active",
            subject=RecommendationSubject(
                event_id=request.hook_instance,
                patient_key=patient_key,
                patient_reference=request.patient_reference,
                ehr_base_url=self._ehr_base_url,
                produced_at=as_of,
                trace_id=_current_trace_id(),
            ),
        )
        return OnDemandResult(recommendation, "scored")

    async def _prefetch_at_hand(
        self, templates: Mapping[str, str], plan: PrefetchPlan, request: HookRequest
    ) -> dict[str, dict[str, Any]]:
        """Every prefetch key's data: what the EHR sent (its searchsets' `next` pages
        followed), then what is fetched for the rest, concurrently; a template that reads
        other keys (`%key`) once they are at hand. A key with no data is left out."""
        at_hand: dict[str, dict[str, Any]] = {}
        first = {key: query for key, query in plan.to_fetch.items() if query is not None}
        keys = [*plan.provided, *first]
        answers = await asyncio.gather(
            *(self._completed(plan.provided[key], request, key) for key in plan.provided),
            *(self._read(query, request, key) for key, query in first.items()),
        )
        at_hand.update((key, found) for key, found in zip(keys, answers, strict=True) if found)
        done = set(templates) - set(plan.dependent)
        pending = list(plan.dependent)
        while pending:
            ready = [key for key in pending if prefetch_keys_used(templates[key]) <= done]
            if not ready:  # cannot happen: a key reads only keys declared before it
                raise PrefetchUnavailable(f"prefetch {_keys(pending)} cannot be resolved")
            queries: dict[str, str] = {}
            for key in ready:
                try:
                    query = resolved_template(templates[key], request, at_hand)
                except UnresolvableToken as exc:
                    raise PrefetchUnavailable(f"prefetch '{key}' not provided, and {exc}") from None
                if query is not None:
                    queries[key] = query
            answers = await asyncio.gather(
                *(self._read(query, request, key) for key, query in queries.items())
            )
            at_hand.update(
                (key, found) for key, found in zip(queries, answers, strict=True) if found
            )
            done.update(ready)
            pending = [key for key in pending if key not in done]
        return at_hand

    async def _read(self, query: str, request: HookRequest, key: str) -> dict[str, Any] | None:
        """One query run against `fhirServer` with the call's bearer token, its pages
        followed; None for a read of something that does not exist."""
        assert request.fhir_server is not None
        base = request.fhir_server.rstrip("/")
        url = f"{base}/{query.lstrip('/')}"
        found = await self._get(url, request, key, missing_is_none="?" not in query)
        return None if found is None else await self._completed(found, request, key)

    async def _completed(
        self, found: dict[str, Any], request: HookRequest, key: str
    ) -> dict[str, Any]:
        """A searchset with its `next` pages added: only pages on `fhirServer` itself, at
        most `max_pages` pages and `max_entries` entries in all (what was read is used)."""
        pages = 1
        link = next_page(found)
        while link is not None:
            assert request.fhir_server is not None
            if not is_on_server(link, request.fhir_server):
                raise PrefetchUnavailable(
                    f"prefetch '{key}' has a next page that is not on fhirServer; it is not fetched"
                )
            if pages >= self._bounds.max_pages or entry_count(found) >= self._bounds.max_entries:
                self._count_page("bounded")
                logger.warning(
                    "prefetch '%s': stopped following next pages at %d pages (bounds %d pages, "
                    "%d entries)",
                    key,
                    pages,
                    self._bounds.max_pages,
                    self._bounds.max_entries,
                )
                break
            page = await self._get(link, request, key, missing_is_none=False)
            assert page is not None
            self._count_page("followed")
            found = with_page(found, page)
            pages += 1
            link = next_page(page)
        return bounded(found, self._bounds.max_entries)

    async def _get(
        self, url: str, request: HookRequest, key: str, *, missing_is_none: bool
    ) -> dict[str, Any] | None:
        assert request.fhir_authorization is not None
        headers = {
            "Accept": FHIR_JSON,
            "Authorization": f"Bearer {request.fhir_authorization.access_token}",
        }
        try:
            response = await self._http.get(url, headers=headers)
        except httpx.TimeoutException:
            raise TimeoutError from None
        except AnswerTooLarge as exc:
            raise PrefetchUnavailable(
                f"prefetch '{key}' not provided, and fhirServer's answer was too large ({exc})"
            ) from None
        except httpx.HTTPError as exc:
            raise PrefetchUnavailable(
                f"prefetch '{key}' not provided, and fhirServer could not be reached "
                f"({type(exc).__name__})"
            ) from None
        if response.status_code == 404 and missing_is_none:
            return None  # a read of something that does not exist: no data
        try:
            body = response.json() if response.is_success else None
        except ValueError:
            body = None
        if not is_provided(body):
            raise PrefetchUnavailable(
                f"prefetch '{key}' not provided, and fhirServer answered {response.status_code}"
                + ("" if response.is_success else " to the service's fetch")
            )
        assert isinstance(body, dict)
        return body

    def _count_page(self, result: str) -> None:
        if self._next_pages is not None:
            self._next_pages.labels(result=result).inc()


def _may_fetch(request: HookRequest, issuer: TrustedIssuer | None) -> bool:
    return (
        issuer is not None
        and request.fhir_server is not None
        and request.fhir_authorization is not None
        and issuer.may_fetch_from(request.fhir_server)
    )


def _keys(keys: Mapping[str, Any] | tuple[str, ...] | list[str]) -> str:
    return ", ".join(f"'{key}'" for key in keys)


def _current_trace_id() -> str:
    context = trace.get_current_span().get_span_context()
    return format(context.trace_id, "032x") if context.is_valid else ""
