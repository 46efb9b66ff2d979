"""Which fields a card or prompt template of a given adapter may use.

Card templates:
- `{score}` (a number; e.g. `{score:.0%}`), `{band}`, `{band_label}`: the result;
- `{as_of}` (`2026-11-29 18:00 UTC`), `{model}` (`deterioration_risk v1`);
- `{basis}`: a Markdown list of the observed inputs (largest contribution first, when the
  model reports contributions), each with its value, unit and when it was measured;
- `{missing}`: the labels of the inputs not observed; `{refused}`: values refused, with why;
- `{patient}`: the `Patient/<id>` reference, for suggestion resources;
- per column: `{value.<column>}` (a number, or "not observed"), `{unit.<column>}`,
  `{label.<column>}`, `{observed_at.<column>}`;
- per named output: `{output.<name>}`; generative adapters: `{generated_text}`.

Prompt templates: the per-column fields, `{as_of}`, `{missing}`, `{observations}` (one line
per observed input).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from cdsflow.models.adapter_schema import ModelAdapter

CARD_FIELDS = frozenset(
    {"score", "band", "band_label", "as_of", "model", "basis", "missing", "refused", "patient"}
)
PROMPT_FIELDS = frozenset({"as_of", "missing", "observations"})
PER_COLUMN_FAMILIES = frozenset({"value", "unit", "label", "observed_at"})


def card_fields(adapter: ModelAdapter) -> frozenset[str]:
    names = set(CARD_FIELDS) | _per_column(adapter)
    names |= {f"output.{output.name}" for output in adapter.outputs.values}
    if adapter.is_generative:
        names.add("generated_text")
    return frozenset(names)


def prompt_fields(adapter: ModelAdapter) -> frozenset[str]:
    return frozenset(PROMPT_FIELDS | _per_column(adapter))


def _per_column(adapter: ModelAdapter) -> set[str]:
    return {
        f"{family}.{column.name}" for column in adapter.columns() for family in PER_COLUMN_FAMILIES
    }
