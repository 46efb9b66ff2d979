"""A generative model's prompt, built from the patient's context by the adapter's template."""

from __future__ import annotations

from cdsflow.models.adapter_schema import ModelAdapter
from cdsflow.models.basis_text import NOT_OBSERVED, measured_text, observation_line, time_text
from cdsflow.models.feature_extraction import ExtractedInputs
from cdsflow.models.template_text import TemplateValue, render_template


def column_fields(extracted: ExtractedInputs) -> dict[str, TemplateValue]:
    """`value.<column>` (a number, or "not observed"), `unit.`, `label.`, `observed_at.`."""
    fields: dict[str, TemplateValue] = {}
    for column in extracted.columns:
        name = column.column.name
        fields[f"value.{name}"] = column.value if column.value is not None else NOT_OBSERVED
        fields[f"unit.{name}"] = column.display_unit
        fields[f"label.{name}"] = column.label
        fields[f"observed_at.{name}"] = measured_text(column) or NOT_OBSERVED
    return fields


def missing_text(extracted: ExtractedInputs) -> str:
    labels = [column.label for column in extracted.missing()]
    return ", ".join(labels) if labels else "none"


def render_prompt(adapter: ModelAdapter, extracted: ExtractedInputs) -> str:
    """The prompt text; cut to the declared `max_chars`."""
    prompt = adapter.inputs.prompt
    if prompt is None:
        raise ValueError(f"adapter {adapter.id} declares no prompt")
    observed = [observation_line(c) for c in extracted.columns if c.present]
    fields = column_fields(extracted) | {
        "as_of": time_text(extracted.as_of),
        "missing": missing_text(extracted),
        "observations": "\n".join(f"- {line}" for line in observed) or "- none",
    }
    return render_template(prompt.template, fields)[: prompt.max_chars]
