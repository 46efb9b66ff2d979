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
  (the hook answers 412).
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
from cdsflow.writeback.domain.client_tokens import TrustedIssuer
from cdsflow.writeback.domain.discovery import CdsService
from cdsflow.writeback.domain.hook_requests import HookRequest
from cdsflow.writeback.domain.prefetch import is_provided, prefetch_plan, resources_of
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


class OnDemandScoring:
    def __init__(
        self,
        *,
        adapters: Mapping[str, ModelAdapter],
        scorer: TritonScorer | None,
        fhir_http: httpx.AsyncClient,
        deadline_s: float,
        ehr_base_url: str,
    ) -> None:
        self._adapters = adapters
        self._scorer = scorer
        self._http = fhir_http
        self._deadline_s = deadline_s
        self._ehr_base_url = ehr_base_url

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
                f"prefetch {_keys(plan.unresolvable)} not provided, and its template cannot "
                "be resolved from this request"
            )
        if plan.to_fetch and not _may_fetch(request, issuer):
            raise PrefetchUnavailable(
                f"prefetch {_keys(plan.to_fetch)} not provided, and the service may not fetch "
                "it (no fhirAuthorization, or fhirServer not allowed for this issuer)"
            )
        loop = asyncio.get_running_loop()
        ends_at = loop.time() + self._deadline_s
        try:
            async with asyncio.timeout_at(ends_at):
                fetched = await self._fetched(plan.to_fetch, request)
                resources = [
                    *(r for found in plan.provided.values() for r in found),
                    *(r for found in fetched.values() for r in found),
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

    async def _fetched(
        self, queries: Mapping[str, str], request: HookRequest
    ) -> dict[str, list[dict[str, Any]]]:
        """Each query run against `fhirServer` with the call's bearer token, concurrently."""
        if not queries:
            return {}
        assert request.fhir_server is not None
        assert request.fhir_authorization is not None
        base = request.fhir_server.rstrip("/")
        headers = {
            "Accept": FHIR_JSON,
            "Authorization": f"Bearer {request.fhir_authorization.access_token}",
        }
        keys = list(queries)
        answers = await asyncio.gather(
            *(self._read(f"{base}/{queries[key].lstrip('/')}", headers, key) for key in keys)
        )
        return dict(zip(keys, answers, strict=True))

    async def _read(self, url: str, headers: dict[str, str], key: str) -> list[dict[str, Any]]:
        try:
            response = await self._http.get(url, headers=headers)
        except httpx.TimeoutException:
            raise TimeoutError from None
        except httpx.HTTPError as exc:
            raise PrefetchUnavailable(
                f"prefetch '{key}' not provided, and fhirServer could not be reached "
                f"({type(exc).__name__})"
            ) from None
        if response.status_code == 404 and "?" not in url:
            return []  # a read of something that does not exist: no data
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
        return resources_of(body)


def _may_fetch(request: HookRequest, issuer: TrustedIssuer | None) -> bool:
    return (
        issuer is not None
        and request.fhir_server is not None
        and request.fhir_authorization is not None
        and issuer.may_fetch_from(request.fhir_server)
    )


def _keys(keys: Mapping[str, Any] | tuple[str, ...]) -> str:
    return ", ".join(f"'{key}'" for key in keys)


def _current_trace_id() -> str:
    context = trace.get_current_span().get_span_context()
    return format(context.trace_id, "032x") if context.is_valid else ""
