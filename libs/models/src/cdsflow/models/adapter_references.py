"""Checks that span several parts of an adapter file (names that must refer to something,
kinds that exclude members, units that must convert), each reported with its path in the
file, so that `adapter_file` can name the line."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterator
from typing import Any

from cdsflow.models.adapter_schema import ModelAdapter
from cdsflow.models.card_schema import CardTemplate, HookService
from cdsflow.models.data_schema import AGGREGATIONS_BY_RESOURCE, ObservationData
from cdsflow.models.template_fields import card_fields, prompt_fields
from cdsflow.models.template_text import TemplateError, literal_text, template_fields
from cdsflow.models.units import are_convertible, is_known_unit

Location = tuple[str | int, ...]
Problem = tuple[Location, str]

MAX_SUMMARY_CHARS = 139  # CDS Hooks: "<140 characters"
_PREFETCH_TOKEN = re.compile(r"\{\{\s*([^}]*?)\s*\}\}")
_USER_TOKENS = {
    "userPractitionerId",
    "userPractitionerRoleId",
    "userPatientId",
    "userRelatedPersonId",
}
# the context members each hook has that can stand in a prefetch query (CDS Hooks 2.0)
_HOOK_CONTEXT_IDS = {
    "patient-view": {"context.userId", "context.patientId", "context.encounterId"},
    "order-select": {"context.userId", "context.patientId", "context.encounterId"},
    "order-sign": {"context.userId", "context.patientId", "context.encounterId"},
    "encounter-start": {"context.userId", "context.patientId", "context.encounterId"},
}
# every member of each hook's context (CDS Hooks 3.0 FHIRPath tokens may read any of them)
_HOOK_CONTEXT_MEMBERS = {
    "patient-view": {"userId", "patientId", "encounterId"},
    "order-select": {"userId", "patientId", "encounterId", "selections", "draftOrders"},
    "order-sign": {"userId", "patientId", "encounterId", "draftOrders"},
    "encounter-start": {"userId", "patientId", "encounterId"},
}
# a 2.0 token: a context member's name or a user token; anything else is 3.0 FHIRPath
_SIMPLE_TOKEN = re.compile(r"^(context\.[A-Za-z][A-Za-z0-9]*|user[A-Za-z]+Id)$")
_CONTEXT_PATH = re.compile(r"(?<![A-Za-z0-9_.`])%?context\.([A-Za-z][A-Za-z0-9]*)")
_VARIABLE = re.compile(r"%(?:`([^`]+)`|([A-Za-z_][A-Za-z0-9_]*))")
_RESOURCE_TYPE = re.compile(r"^[A-Z][A-Za-z]{1,63}$")
_CRITERIA = re.compile(r"^([A-Z][A-Za-z]+)(\?\S*)?$")


def reference_problems(adapter: ModelAdapter) -> list[Problem]:
    """Every inconsistency in `adapter`, as (path in the file, message); empty when none."""
    return [
        *_model_problems(adapter),
        *_data_problems(adapter),
        *_input_problems(adapter),
        *_kind_problems(adapter),
        *_band_problems(adapter),
        *_card_problems(adapter),
        *_system_action_problems(adapter),
        *_hook_problems(adapter),
        *_subscription_problems(adapter),
        *_evaluation_problems(adapter),
    ]


def _duplicates(names: list[str]) -> set[str]:
    return {name for name, count in Counter(names).items() if count > 1}


def _model_problems(adapter: ModelAdapter) -> Iterator[Problem]:
    versions = [v.version for v in adapter.model.versions]
    for index, version in enumerate(versions):
        if version in _duplicates(versions):
            yield ("model", "versions", index, "version"), f"version {version} is declared twice"
    active = [i for i, v in enumerate(adapter.model.versions) if v.mode == "active"]
    for index in active[1:]:
        yield (
            ("model", "versions", index, "mode"),
            "at most one version may be active; the others run in shadow",
        )


def _data_problems(adapter: ModelAdapter) -> Iterator[Problem]:
    for key, feed in adapter.data.items():
        if not isinstance(feed, ObservationData):
            continue
        if not is_known_unit(feed.unit):
            yield ("data", key, "unit"), f"unit '{feed.unit}' is not a unit cdsflow converts"
        for index, unit in enumerate(feed.accept_units):
            if not are_convertible(unit, feed.unit):
                yield (
                    ("data", key, "accept_units", index),
                    f"unit '{unit}' does not convert to '{feed.unit}'",
                )


def _input_problems(adapter: ModelAdapter) -> Iterator[Problem]:
    places: list[tuple[Location, str]] = []
    for t, tensor in enumerate(adapter.inputs.tensors):
        places += [
            (("inputs", "tensors", t, "columns", c), c_.name) for c, c_ in enumerate(tensor.columns)
        ]
        if tensor.presence_tensor is None and not all(c.required for c in tensor.columns):
            yield (
                ("inputs", "tensors", t),
                "a tensor without presence_tensor must mark every column required: a missing "
                "input is never sent as a value",
            )
    if adapter.inputs.prompt is not None:
        places += [
            (("inputs", "prompt", "columns", c), column.name)
            for c, column in enumerate(adapter.inputs.prompt.columns)
        ]
    twice = _duplicates([name for _, name in places])
    columns = adapter.columns()
    for (location, name), column in zip(places, columns, strict=True):
        if name in twice:
            yield (*location, "name"), f"column '{name}' is declared twice"
        feed = adapter.data.get(column.data)
        if feed is None:
            yield (*location, "data"), f"'{column.data}' is not declared under data"
        elif column.aggregation not in AGGREGATIONS_BY_RESOURCE[feed.resource]:
            allowed = ", ".join(sorted(AGGREGATIONS_BY_RESOURCE[feed.resource]))
            yield (
                (*location, "aggregation"),
                f"'{column.aggregation}' does not apply to a {feed.resource} (use {allowed})",
            )
    tensor_names = [
        *(t.name for t in adapter.inputs.tensors),
        *(t.presence_tensor for t in adapter.inputs.tensors if t.presence_tensor),
    ]
    for name in sorted(_duplicates(tensor_names)):
        yield ("inputs", "tensors"), f"input tensor '{name}' is declared twice"


def _kind_problems(adapter: ModelAdapter) -> Iterator[Problem]:
    inputs, outputs = adapter.inputs, adapter.outputs
    if adapter.is_generative:
        if inputs.prompt is None:
            yield ("inputs",), "a generative model needs inputs.prompt"
        if outputs.generated_text is None:
            yield ("outputs",), "a generative model needs outputs.generated_text"
        if inputs.tensors:
            yield ("inputs", "tensors"), "a generative model takes its prompt, not tensors"
        if inputs.prompt is not None:
            yield from _template_problems(
                ("inputs", "prompt", "template"), inputs.prompt.template, prompt_fields(adapter)
            )
        return
    if not inputs.tensors:
        yield ("inputs",), "a predictive model needs inputs.tensors"
    if inputs.prompt is not None:
        yield ("inputs", "prompt"), "only a generative model takes a prompt"
    if outputs.score is None:
        yield ("outputs",), "a predictive model needs outputs.score"
    if outputs.generated_text is not None:
        yield ("outputs", "generated_text"), "only a generative model generates text"
    contributions = outputs.contributions
    if contributions is not None and contributions.input_tensor not in {
        t.name for t in inputs.tensors
    }:
        yield (
            ("outputs", "contributions", "input_tensor"),
            f"'{contributions.input_tensor}' is not a declared input tensor",
        )
    output_tensors = [
        *(o.tensor for o in (outputs.score, outputs.contributions) if o is not None),
        *(named.tensor for named in outputs.values),
    ]
    for name in sorted(_duplicates(output_tensors)):
        yield ("outputs",), f"output tensor '{name}' is given two meanings"
    if outputs.score is not None and outputs.score.range is not None:
        low, high = outputs.score.range
        if not low < high:
            yield ("outputs", "score", "range"), "a range is [low, high] with low < high"


def _band_problems(adapter: ModelAdapter) -> Iterator[Problem]:
    bands = adapter.risk_bands
    if adapter.outputs.score is not None and not bands:
        yield ("risk_bands",), "a model with a score needs risk_bands"
    if adapter.outputs.score is None and bands:
        yield ("risk_bands",), "risk bands cut a score; declare outputs.score"
    names = [band.name for band in bands]
    for index, band in enumerate(bands):
        if band.name in _duplicates(names):
            yield ("risk_bands", index, "name"), f"band '{band.name}' is declared twice"
        if index == 0 and band.from_score is not None:
            yield ("risk_bands", 0, "from"), "the first band starts below every score: no 'from'"
        if index > 0:
            previous = bands[index - 1].from_score
            if band.from_score is None:
                yield ("risk_bands", index), "every band after the first needs 'from'"
            elif previous is not None and band.from_score <= previous:
                yield (
                    ("risk_bands", index, "from"),
                    "bands are listed from the lowest score up: 'from' must increase",
                )


def _card_problems(adapter: ModelAdapter) -> Iterator[Problem]:
    bands = {band.name for band in adapter.risk_bands}
    columns = {column.name for column in adapter.columns()}
    fields = card_fields(adapter)
    for index, card in enumerate(adapter.cards):
        at: Location = ("cards", index)
        if card.bands is None and not adapter.is_generative:
            yield (*at,), "a card needs 'bands': the bands it is shown for"
        for b, name in enumerate(card.bands or ()):
            if name not in bands:
                yield (*at, "bands", b), f"'{name}' is not a declared risk band"
        for c, name in enumerate(card.requires_present):
            if name not in columns:
                yield (*at, "requires_present", c), f"'{name}' is not a declared column"
        if len(literal_text(card.summary)) > MAX_SUMMARY_CHARS:
            yield (*at, "summary"), "a summary is under 140 characters (CDS Hooks)"
        yield from _card_text_problems(at, card, fields, adapter)


def _card_text_problems(
    at: Location, card: CardTemplate, fields: frozenset[str], adapter: ModelAdapter
) -> Iterator[Problem]:
    yield from _template_problems((*at, "summary"), card.summary, fields)
    yield from _template_problems((*at, "detail"), card.detail, fields)
    if card.suggestions and card.selection_behavior is None:
        yield (*at,), "cards with suggestions need selection_behavior (at-most-one or any)"
    for s, suggestion in enumerate(card.suggestions):
        here: Location = (*at, "suggestions", s)
        yield from _template_problems((*here, "label"), suggestion.label, fields)
        for a, action in enumerate(suggestion.actions):
            place: Location = (*here, "actions", a)
            yield from _template_problems((*place, "description"), action.description, fields)
            if action.type == "delete":
                if action.resource_ids_from is None:
                    yield place, "a delete action needs resource_ids_from (a data name)"
                elif action.resource_ids_from not in adapter.data:
                    yield (
                        (*place, "resource_ids_from"),
                        f"'{action.resource_ids_from}' is not declared under data",
                    )
                elif action.resource_ids_from not in {c.data for c in adapter.columns()}:
                    yield (
                        (*place, "resource_ids_from"),
                        f"no column reads '{action.resource_ids_from}': it has no resources",
                    )
            elif action.resource is None:
                yield place, f"a {action.type} action needs a resource"
            for location, text in _strings_in((*place, "resource"), action.resource or {}):
                yield from _template_problems(location, text, fields)


def _system_action_problems(adapter: ModelAdapter) -> Iterator[Problem]:
    bands = {band.name for band in adapter.risk_bands}
    columns = {column.name for column in adapter.columns()}
    fields = card_fields(adapter)
    for index, action in enumerate(adapter.system_actions):
        at: Location = ("system_actions", index)
        for b, name in enumerate(action.bands):
            if name not in bands:
                yield (*at, "bands", b), f"'{name}' is not a declared risk band"
        for c, name in enumerate(action.requires_present):
            if name not in columns:
                yield (*at, "requires_present", c), f"'{name}' is not a declared column"
        yield from _template_problems((*at, "description"), action.description, fields)
        resource_type = action.resource.get("resourceType")
        if not isinstance(resource_type, str) or not _RESOURCE_TYPE.match(resource_type):
            yield (*at, "resource"), "the resource needs a resourceType (e.g. Flag, Task)"
        if action.type == "update" and not isinstance(action.resource.get("id"), str):
            yield (*at, "resource"), "an update carries the whole resource, its id included"
        for location, text in _strings_in((*at, "resource"), action.resource):
            yield from _template_problems(location, text, fields)


def _strings_in(at: Location, value: Any) -> Iterator[tuple[Location, str]]:
    if isinstance(value, str):
        yield at, value
    elif isinstance(value, dict):
        for key, member in value.items():
            yield from _strings_in((*at, key), member)
    elif isinstance(value, list):
        for index, member in enumerate(value):
            yield from _strings_in((*at, index), member)


def _template_problems(at: Location, text: str, allowed: frozenset[str]) -> Iterator[Problem]:
    try:
        fields = template_fields(text)
    except TemplateError as error:
        yield at, str(error)
        return
    for field in fields:
        if field.name not in allowed:
            yield at, f"unknown field {{{field.name}}}"


def _hook_problems(adapter: ModelAdapter) -> Iterator[Problem]:
    ids = [hook.id for hook in adapter.hooks]
    for index, hook in enumerate(adapter.hooks):
        if hook.id in _duplicates(ids):
            yield ("hooks", index, "id"), f"service id '{hook.id}' is declared twice"
        yield from _prefetch_problems(("hooks", index, "prefetch"), hook)


def _prefetch_problems(at: Location, hook: HookService) -> Iterator[Problem]:
    """2.0 tokens must be ones the hook provides; a 3.0 FHIRPath token may read the hook's
    context members (`context.x` or `%context.x`) and prefetch keys declared before its own
    (`%key`: no cycles). The FHIRPath itself is evaluated by the writeback, per call."""
    allowed = _HOOK_CONTEXT_IDS[hook.hook] | _USER_TOKENS
    declared: set[str] = set()
    for key, query in hook.prefetch.items():
        for token in _PREFETCH_TOKEN.findall(query):
            if _SIMPLE_TOKEN.match(token):
                if token not in allowed:
                    yield (
                        (*at, key),
                        f"prefetch token {{{{{token}}}}} is not available in {hook.hook}",
                    )
                continue
            for member in _CONTEXT_PATH.findall(token):
                if member not in _HOOK_CONTEXT_MEMBERS[hook.hook]:
                    yield (*at, key), f"{hook.hook} has no context.{member}"
            for quoted, plain in _VARIABLE.findall(token):
                name = quoted or plain
                if name != "context" and name not in declared:
                    yield (
                        (*at, key),
                        f"%{name} is not a prefetch key declared before '{key}'",
                    )
        declared.add(key)


def _subscription_problems(adapter: ModelAdapter) -> Iterator[Problem]:
    subscriptions = adapter.subscriptions
    if not subscriptions.criteria and not subscriptions.topics:
        yield ("subscriptions",), "declare at least one criteria or topic"
    read = {feed.resource for feed in adapter.data.values()}
    for index, criteria in enumerate(subscriptions.criteria):
        match = _CRITERIA.fullmatch(criteria)
        if match is None:
            yield ("subscriptions", "criteria", index), "criteria look like Type?param=value"
        elif match.group(1) not in read:
            yield (
                ("subscriptions", "criteria", index),
                f"the adapter reads no {match.group(1)}: subscribing to it feeds nothing",
            )
    for index, topic in enumerate(subscriptions.topics):
        if not topic.startswith(("http://", "https://")):
            yield ("subscriptions", "topics", index), "a topic is a canonical http(s) URL"


def _evaluation_problems(adapter: ModelAdapter) -> Iterator[Problem]:
    evaluation = adapter.evaluation
    if evaluation is None:
        return
    if adapter.band_named(evaluation.alert_from_band) is None:
        yield (
            ("evaluation", "alert_from_band"),
            f"'{evaluation.alert_from_band}' is not a declared risk band",
        )
    slope = evaluation.gate.calibration_slope_between
    if slope is not None and not slope[0] < slope[1]:
        yield ("evaluation", "gate", "calibration_slope_between"), "give [low, high], low < high"
