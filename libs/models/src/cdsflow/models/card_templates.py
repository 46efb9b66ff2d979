"""The CDS Hooks cards a result implies, rendered from the adapter's card templates.

A card is rendered when the result's band is one of the template's `bands` (a generative
adapter's card without bands: always) and every column in `requires_present` was observed.
Card text holds labels, values and times, never a patient identifier; `{patient}` is meant
for suggestion resources, which go to the EHR that already knows the patient.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from cdsflow.models.adapter_schema import ModelAdapter
from cdsflow.models.basis_text import NOT_OBSERVED, measured_text, observation_line, time_text
from cdsflow.models.card_schema import CardTemplate, SuggestionAction
from cdsflow.models.feature_extraction import ColumnValue
from cdsflow.models.outputs import InputBasis, ModelResult
from cdsflow.models.prompts import missing_text
from cdsflow.models.template_fields import PER_COLUMN_FAMILIES, card_fields
from cdsflow.models.template_text import TemplateValue, render_template
from cdsflow.models.tensors import ModelInputs

MAX_SUMMARY_CHARS = 139  # CDS Hooks: "<140 characters"
_CARD_NAMESPACE = uuid.UUID("3f1c7a52-9d0b-5e6f-8a21-6c4d2b7e9f10")


@dataclass(frozen=True)
class CardRendering:
    """What the renderer needs beyond the result: which model version, which patient, and a
    seed that makes the card ids stable (e.g. the recommendation id)."""

    model_version: str
    patient_reference: str
    card_id_seed: str


@dataclass(frozen=True)
class RenderedCard:
    uuid: str
    summary: str
    indicator: str
    detail: str
    source: dict[str, str]
    suggestions: list[dict[str, Any]] = field(default_factory=list)
    selection_behavior: str | None = None
    links: list[dict[str, str]] = field(default_factory=list)
    override_reasons: list[dict[str, str]] = field(default_factory=list)

    def as_cds_hooks(self) -> dict[str, Any]:
        """The CDS Hooks 2.0 card; optional members are left out rather than sent empty."""
        card: dict[str, Any] = {
            "uuid": self.uuid,
            "summary": self.summary,
            "indicator": self.indicator,
            "source": self.source,
        }
        if self.detail:
            card["detail"] = self.detail
        if self.suggestions:
            card["suggestions"] = self.suggestions
            card["selectionBehavior"] = self.selection_behavior
        if self.links:
            card["links"] = self.links
        if self.override_reasons:
            card["overrideReasons"] = self.override_reasons
        return card


def render_cards(
    adapter: ModelAdapter, inputs: ModelInputs, result: ModelResult, rendering: CardRendering
) -> list[RenderedCard]:
    """Every card whose template applies to this result, in the adapter's order."""
    applying = [
        (index, template)
        for index, template in enumerate(adapter.cards)
        if _applies(template, inputs, result)
    ]
    if not applying:  # most results show no card: their fields are not worth computing
        return []
    fields = card_field_values(adapter, inputs, result, rendering)
    return [
        _rendered(adapter, index, template, inputs, result, rendering, fields)
        for index, template in applying
    ]


def card_field_values(
    adapter: ModelAdapter, inputs: ModelInputs, result: ModelResult, rendering: CardRendering
) -> CardFields:
    """The value of every field a card template may use (`template_fields.card_fields`)."""
    return CardFields(adapter, inputs, result, rendering)


class CardFields(Mapping[str, TemplateValue]):
    """Every field a card template may use (`template_fields.card_fields`), each worked out
    the first time a template uses it: a card uses a few of the many per-column fields."""

    def __init__(
        self,
        adapter: ModelAdapter,
        inputs: ModelInputs,
        result: ModelResult,
        rendering: CardRendering,
    ) -> None:
        self._adapter = adapter
        self._inputs = inputs
        self._result = result
        self._rendering = rendering
        self._values: dict[str, TemplateValue] = {}
        self._columns: dict[str, ColumnValue] | None = None

    def __getitem__(self, name: str) -> TemplateValue:
        value = self._values.get(name)
        if value is None:
            value = self._values[name] = self._value(name)
        return value

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(card_fields(self._adapter)))

    def __len__(self) -> int:
        return len(card_fields(self._adapter))

    def _value(self, name: str) -> TemplateValue:
        """The field's value; `KeyError` for a field that cards do not have."""
        family, _, member = name.partition(".")
        if member:
            if family == "output":
                return self._result.values[member]
            if family not in PER_COLUMN_FAMILIES:
                raise KeyError(name)
            return _column_field(family, self._column(member))
        result, extracted = self._result, self._inputs.extracted
        if name == "score":
            return result.score if result.score is not None else "no score"
        if name in ("band", "band_label"):
            if result.band is None:
                return ""
            return result.band.name if name == "band" else result.band.label
        if name == "as_of":
            return time_text(extracted.as_of)
        if name == "model":
            return f"{self._adapter.model.triton_name} v{self._rendering.model_version}"
        if name == "basis":
            return basis_markdown(result.basis)
        if name == "missing":
            return missing_text(extracted)
        if name == "refused":
            return _refused_text(self._adapter, self._inputs)
        if name == "patient":
            return self._rendering.patient_reference
        if name == "generated_text" and self._adapter.is_generative:
            return result.generated_text or ""
        raise KeyError(name)

    def _column(self, name: str) -> ColumnValue:
        if self._columns is None:
            self._columns = {c.column.name: c for c in self._inputs.extracted.columns}
        return self._columns[name]


def _column_field(family: str, column: ColumnValue) -> TemplateValue:
    """`value.<column>` (a number, or "not observed"), `unit.`, `label.`, `observed_at.`."""
    if family == "value":
        return column.value if column.value is not None else NOT_OBSERVED
    if family == "unit":
        return column.display_unit
    if family == "label":
        return column.label
    return measured_text(column) or NOT_OBSERVED


def basis_markdown(basis: tuple[InputBasis, ...]) -> str:
    """One list item per observed input; with contributions, the largest first and signed."""
    lines = []
    for item in basis:
        line = f"- {observation_line(item.column)}"
        if item.contribution is not None:
            effect = "raises" if item.contribution > 0 else "lowers"
            if round(item.contribution, 2) == 0:
                effect = "does not change"
            sign = "+" if item.contribution > 0 else ""
            line += f" — {effect} the score ({sign}{item.contribution:.2f})"
        lines.append(line)
    return "\n".join(lines) if lines else "- none"


def _refused_text(adapter: ModelAdapter, inputs: ModelInputs) -> str:
    refused = [
        f"{adapter.data[value.data].label} ({value.reason.value})"
        for value in inputs.extracted.refused
    ]
    return ", ".join(refused) if refused else "none"


def _applies(template: CardTemplate, inputs: ModelInputs, result: ModelResult) -> bool:
    if template.bands is not None and (
        result.band is None or result.band.name not in template.bands
    ):
        return False
    return all(inputs.extracted.column(name).present for name in template.requires_present)


def _rendered(
    adapter: ModelAdapter,
    index: int,
    template: CardTemplate,
    inputs: ModelInputs,
    result: ModelResult,
    rendering: CardRendering,
    fields: Mapping[str, TemplateValue],
) -> RenderedCard:
    source = {"label": template.source.label}
    if template.source.url:
        source["url"] = template.source.url
    seed = f"{rendering.card_id_seed}/{adapter.id}/{index}"
    return RenderedCard(
        uuid=str(uuid.uuid5(_CARD_NAMESPACE, seed)),
        summary=short_summary(render_template(template.summary, fields)),
        indicator=template.indicator or result.indicator or "info",
        detail=render_template(template.detail, fields).strip(),
        source=source,
        suggestions=_suggestions(template, seed, inputs, fields),
        selection_behavior=template.selection_behavior,
        links=[
            {"label": link.label, "url": link.url, "type": link.type} for link in template.links
        ],
        override_reasons=[
            {"system": reason.system, "code": reason.code, "display": reason.display}
            for reason in template.override_reasons
        ],
    )


def _suggestions(
    template: CardTemplate, seed: str, inputs: ModelInputs, fields: Mapping[str, TemplateValue]
) -> list[dict[str, Any]]:
    """The template's suggestions; one left with no action (nothing to delete) is dropped."""
    rendered = []
    for index, suggestion in enumerate(template.suggestions):
        actions = [_action(action, inputs, fields) for action in suggestion.actions]
        kept = [action for action in actions if action is not None]
        if not kept:
            continue
        rendered.append(
            {
                "label": render_template(suggestion.label, fields),
                "uuid": str(uuid.uuid5(_CARD_NAMESPACE, f"{seed}/suggestion/{index}")),
                "isRecommended": suggestion.recommended,
                "actions": kept,
            }
        )
    return rendered


def _action(
    action: SuggestionAction, inputs: ModelInputs, fields: Mapping[str, TemplateValue]
) -> dict[str, Any] | None:
    """The CDS Hooks action; None for a delete with nothing to delete (a resource in the
    context without an id, such as a draft order that has none, cannot be named)."""
    rendered: dict[str, Any] = {
        "type": action.type,
        "description": render_template(action.description, fields),
    }
    if action.resource is not None:
        rendered["resource"] = rendered_resource(action.resource, fields)
    if action.resource_ids_from is not None:
        references = sorted(
            {
                reading.resource_reference
                for column in inputs.extracted.columns
                if column.column.data == action.resource_ids_from
                for reading in column.readings
                if not reading.resource_reference.endswith("/")
            }
        )
        if not references:
            return None
        rendered["resourceId"] = references
    return rendered


def rendered_resource(value: Any, fields: Mapping[str, TemplateValue]) -> Any:
    """A resource template with each of its strings rendered."""
    if isinstance(value, str):
        return render_template(value, fields)
    if isinstance(value, dict):
        return {key: rendered_resource(member, fields) for key, member in value.items()}
    if isinstance(value, list):
        return [rendered_resource(member, fields) for member in value]
    return value


def short_summary(text: str) -> str:
    """One line, under 140 characters (cut with an ellipsis when a value made it longer)."""
    line = " ".join(text.split())
    if len(line) <= MAX_SUMMARY_CHARS:
        return line
    return line[: MAX_SUMMARY_CHARS - 1].rstrip() + "…"
