"""Card and prompt templates: text with `{placeholder}` or `{placeholder:format}` fields.

Deliberately not `str.format` on objects: a field names one entry of a flat table of values
that the engine builds (`score`, `band_label`, `value.heart_rate`, ...), never an attribute
or an index, and a format is one of a few numeric ones. Fields are checked when the adapter
file is loaded, so a typo is reported with its line, not when a patient's card is rendered.
"""

from __future__ import annotations

import re
import string
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache

_FIELD_NAME = re.compile(r"[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)?")
# fixed-point, general or percentage with an optional precision; or nothing
_FORMAT_SPEC = re.compile(r"(\.\d)?[fg%]?")

TemplateValue = str | float | int


@dataclass(frozen=True)
class TemplateField:
    name: str
    format_spec: str

    @property
    def family(self) -> str:
        """`value` for `value.heart_rate`, the name itself otherwise."""
        return self.name.split(".", 1)[0]

    @property
    def member(self) -> str | None:
        return self.name.split(".", 1)[1] if "." in self.name else None


class TemplateError(ValueError):
    """A template that cannot be rendered: bad syntax, unknown field or format."""


def template_fields(text: str) -> list[TemplateField]:
    """Every field in `text`, in order; raises `TemplateError` on malformed ones."""
    fields = []
    try:
        parsed = list(string.Formatter().parse(text))
    except ValueError as error:
        raise TemplateError(f"malformed template: {error}") from None
    for _, name, spec, conversion in parsed:
        if name is None:
            continue
        if conversion is not None:
            raise TemplateError(f"field {{{name}}}: conversions (!r, !s) are not supported")
        if not _FIELD_NAME.fullmatch(name):
            raise TemplateError(
                f"field {{{name}}}: a field is a lowercase name, optionally with one "
                "'.member' (e.g. {score}, {value.heart_rate})"
            )
        if spec is None or not _FORMAT_SPEC.fullmatch(spec):
            raise TemplateError(f"field {{{name}}}: format '{spec}' is not .Nf, .Ng or .N%")
        fields.append(TemplateField(name, spec))
    return fields


def literal_text(text: str) -> str:
    """The template without its fields: what every rendering of it contains."""
    return "".join(literal for literal, _, _, _ in string.Formatter().parse(text))


@lru_cache(maxsize=1024)  # an adapter's few templates, rendered for many patients
def _parsed(text: str) -> tuple[tuple[str, str | None, str | None], ...]:
    return tuple((literal, name, spec) for literal, name, spec, _ in string.Formatter().parse(text))


def render_template(text: str, values: Mapping[str, TemplateValue]) -> str:
    """`text` with every field replaced; a field with no value raises `TemplateError`."""
    parts = []
    for literal, name, spec in _parsed(text):
        parts.append(literal)
        if name is None:
            continue
        if name not in values:
            raise TemplateError(f"no value for field {{{name}}}")
        value = values[name]
        if spec and isinstance(value, str):
            # a number that was not observed renders as its text ("not observed")
            parts.append(value)
        else:
            parts.append(format(value, spec or ""))
    return "".join(parts)
