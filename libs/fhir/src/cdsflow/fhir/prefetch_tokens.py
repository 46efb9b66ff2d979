"""Prefetch tokens (CDS Hooks 2.0 and 3.0): the text that replaces each `{{ }}` of a prefetch
template, from the hook's context and the prefetch already at hand. No I/O here. Shared by
the side that answers a hook (the writeback fetches what the EHR left out) and the side
that calls one (`cdsflow hook` fills prefetch as an EHR does).

- 2.0 tokens: `{{context.<member>}}` (patientId, encounterId, userId: only FHIR ids or
  `Type/id`, so that a context member cannot add search parameters of its own) and
  `{{userPractitionerId}}`, `{{userPractitionerRoleId}}`, `{{userPatientId}}`,
  `{{userRelatedPersonId}}` from `context.userId` when it names that resource type.
- 3.0 tokens holding (limited) FHIRPath, evaluated by fhirpathpy on the R4 model:
  `{{today() - 90 days}}`, `{{context.draftOrders.entry.resource.ofType(MedicationRequest)
  .medication.resolve().id}}`, `{{%otherKey.entry.resource.asserter.resolve().id}}`, unions
  with `|`. `context` (also `%context`) is the hook's context; `%<key>` is what another
  prefetch key holds (the EHR's, or what was fetched for it), and that key must come before
  this one in the templates. `resolve()` turns a reference into the resource it names as far
  as its type and id go (enough for `.ofType(X).id`); nothing is fetched to resolve it. A
  collection is written as a comma-separated list; every item must be a FHIR id, a `Type/id`
  reference, a date or time, or a number.

A token that cannot be resolved raises `UnresolvableToken`, whose message names the token's
fault, never a value. A FHIRPath token that yields nothing makes the query match nothing:
`resolved_template` then returns None, and nothing is fetched for that key.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from functools import lru_cache
from typing import Any
from urllib.parse import quote

import fhirpathpy
from fhirpathpy.engine.nodes import ResourceNode
from fhirpathpy.models import models

from cdsflow.fhir.references import is_fhir_id

TOKEN = re.compile(r"\{\{\s*([^{}]*?)\s*\}\}")
USER_TOKENS = {
    "userPractitionerId": "Practitioner",
    "userPractitionerRoleId": "PractitionerRole",
    "userPatientId": "Patient",
    "userRelatedPersonId": "RelatedPerson",
}
# a 2.0 token: the name of a context member, or a user token
_SIMPLE_TOKEN = re.compile(r"^(context\.[A-Za-z][A-Za-z0-9]*|user[A-Za-z]+Id)$")
# `%name` or %`name-with-hyphens`: another prefetch key
_VARIABLE = re.compile(r"%(?:`([^`]+)`|([A-Za-z_][A-Za-z0-9_]*))")
_REFERENCE = re.compile(r"(?:^|/)([A-Z][A-Za-z]{1,63})/([A-Za-z0-9\-.]{1,64})(?:/_history/[^/]+)?$")
_TYPED_REFERENCE = re.compile(r"^[A-Z][A-Za-z]{1,63}/[A-Za-z0-9\-.]{1,64}$")
_DATE_OR_TIME = re.compile(
    r"^[0-9]{4}(-[0-9]{2}(-[0-9]{2}(T[0-9]{2}(:[0-9]{2}(:[0-9]{2}(\.[0-9]+)?)?)?"
    r"(Z|[+-][0-9]{2}:[0-9]{2})?)?)?)?$|^T?[0-9]{2}:[0-9]{2}(:[0-9]{2}(\.[0-9]+)?)?$"
)
_NUMBER = re.compile(r"^-?[0-9]+(\.[0-9]+)?$")
# variables fhirpathpy defines itself; never prefetch keys
_BUILT_IN_VARIABLES = frozenset({"context", "ucum", "resource", "rootResource", "sct", "loinc"})


class UnresolvableToken(Exception):
    """A token of a template cannot be resolved from this context (the message says why,
    without a value)."""


def template_tokens(template: str) -> list[str]:
    return TOKEN.findall(template)


def is_fhirpath_token(token: str) -> bool:
    """Whether a token is a 3.0 FHIRPath expression rather than a 2.0 token."""
    return _SIMPLE_TOKEN.match(token) is None


def prefetch_keys_used(template: str) -> set[str]:
    """The other prefetch keys (`%key`) that a template's FHIRPath tokens read."""
    used: set[str] = set()
    for token in template_tokens(template):
        if is_fhirpath_token(token):
            for quoted, plain in _VARIABLE.findall(token):
                used.add(quoted or plain)
    return used - _BUILT_IN_VARIABLES


def resolved_template(
    template: str, context: Mapping[str, Any], prefetched: Mapping[str, Any] | None = None
) -> str | None:
    """The template with its tokens replaced. `context`: the hook's context; `prefetched`:
    prefetch key -> what it holds (a FHIR resource or Bundle), for `%key`. None when a
    FHIRPath token yields nothing."""
    values = simple_token_values(context)
    parts: list[str] = []
    position = 0
    for match in TOKEN.finditer(template):
        parts.append(template[position : match.start()])
        position = match.end()
        token = match.group(1)
        if not is_fhirpath_token(token):
            value = values.get(token)
            if value is None:
                raise UnresolvableToken(
                    f"its token {{{{{token}}}}} has no usable value in this context"
                )
            parts.append(value)
            continue
        items = _evaluated(token, context, prefetched or {})
        if not items:
            return None
        parts.append(",".join(items))
    parts.append(template[position:])
    return "".join(parts)


def simple_token_values(context: Mapping[str, Any]) -> dict[str, str]:
    """Each 2.0 token's value; only FHIR ids (and `Type/id`) are put into a query."""
    values: dict[str, str] = {}
    for member in ("patientId", "encounterId"):
        value = context.get(member)
        if isinstance(value, str) and is_fhir_id(value):
            values[f"context.{member}"] = value
    user = context.get("userId")
    if isinstance(user, str):
        kind, _, user_id = user.partition("/")
        if kind.isalpha() and is_fhir_id(user_id):
            values["context.userId"] = user
            for token, resource_type in USER_TOKENS.items():
                if kind == resource_type:
                    values[token] = user_id
    return values


def _evaluated(token: str, context: Mapping[str, Any], prefetched: Mapping[str, Any]) -> list[str]:
    """The FHIRPath token's items, each checked and made safe for a query."""
    variables: dict[str, Any] = {"context": dict(context)}
    for key in prefetch_keys_used("{{" + token + "}}"):
        if prefetched.get(key) is None:
            raise UnresolvableToken(
                f"its FHIRPath token reads prefetch '{key}', which is not at hand (not "
                "provided, not fetched, or not a key declared before it)"
            )
        variables[key] = prefetched[key]
    try:
        evaluate = _compiled(token)
        found = evaluate({"context": dict(context)}, variables)
    except Exception as exc:  # fhirpathpy raises plain Exceptions for syntax and types
        raise UnresolvableToken(
            f"its FHIRPath token cannot be evaluated ({type(exc).__name__})"
        ) from None
    return [_query_text(item) for item in found]


@lru_cache(maxsize=512)
def _compiled(expression: str) -> Callable[[Any, Any], list[Any]]:
    compiled: Callable[[Any, Any], list[Any]] = fhirpathpy.compile(
        expression,
        models["r4"],
        {"userInvocationTable": {"resolve": {"fn": _resolve, "arity": {0: []}}}},
    )
    return compiled


def _resolve(references: list[Any]) -> list[Any]:
    """FHIRPath `resolve()`: each `Type/id` reference (relative, or absolute ending so) as
    the resource it names, as far as its type and id go; others (contained `#x`, canonical
    URLs that are not `Type/id`) yield nothing."""
    resolved = []
    for item in references:
        reference = item.get("reference") if isinstance(item, Mapping) else item
        if not isinstance(reference, str):
            continue
        match = _REFERENCE.search(reference)
        if match is not None:
            stub = {"resourceType": match.group(1), "id": match.group(2)}
            resolved.append(ResourceNode.create_node(stub, match.group(1)))  # type: ignore[no-untyped-call]
    return resolved


def _query_text(item: Any) -> str:
    """One item of a result as it goes into a query: an id, a reference, a date or time
    (`+` of a zone percent-encoded), a number or a boolean; anything else is refused."""
    if isinstance(item, bool):
        return "true" if item else "false"
    text = str(item)
    if isinstance(item, int | float) or _NUMBER.match(text):
        return text
    if is_fhir_id(text) or _TYPED_REFERENCE.match(text):
        return text
    if _DATE_OR_TIME.match(text):
        return quote(text, safe="-:.T")
    raise UnresolvableToken(
        "its FHIRPath token yields a value that is not an id, a reference, a date or a number"
    )
