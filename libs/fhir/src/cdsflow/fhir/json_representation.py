"""FHIR's JSON rules that the fhir.resources models let through.

The models validate in pydantic's lax mode: `"value": "12"` becomes a decimal, `"true"` a
boolean, and `null` passes for any optional element. FHIR JSON allows none of these: numbers
and booleans are JSON numbers and booleans, and an element is present with a value or absent
(`null` only fills the gaps of a primitive array beside its `_element` extensions).
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from pydantic import BaseModel


def json_representation_problems(resource: dict[str, Any], instance: BaseModel) -> list[str]:
    """Element paths whose JSON form breaks FHIR's rules, walking the JSON beside the model."""
    problems: list[str] = []
    pending: list[tuple[Any, Any, str]] = [(resource, instance, "")]
    while pending:
        document, model, path = pending.pop()
        if not isinstance(document, dict) or not isinstance(model, BaseModel):
            continue
        names = _field_names(type(model))
        for key, value in document.items():
            where = f"{path}.{key}" if path else key
            if value is None:
                problems.append(f"{where}: null is not a FHIR value (leave the element out)")
                continue
            name = names.get(key)
            if name is None or key.startswith("_"):
                continue  # resourceType, and the extensions of primitives
            pending += _children(value, getattr(model, name, None), where, problems)
    return sorted(problems)


def _children(value: Any, parsed: Any, where: str, problems: list[str]) -> list[Any]:
    if isinstance(value, list) and isinstance(parsed, list):
        children = []
        for index, (item, parsed_item) in enumerate(zip(value, parsed, strict=False)):
            children += _children(item, parsed_item, f"{where}[{index}]", problems)
        return children
    if isinstance(value, str) and _is_number_or_boolean(parsed):
        kind = "boolean" if isinstance(parsed, bool) else "number"
        problems.append(f"{where}: must be a JSON {kind}, not a string")
        return []
    if isinstance(value, dict):
        return [(value, parsed, where)]
    return []


def _is_number_or_boolean(parsed: Any) -> bool:
    return isinstance(parsed, bool | int | float | Decimal)


_FIELD_NAMES: dict[type[BaseModel], dict[str, str]] = {}


def _field_names(model: type[BaseModel]) -> dict[str, str]:
    """JSON name (alias) -> attribute name, per model class."""
    names = _FIELD_NAMES.get(model)
    if names is None:
        names = {(field.alias or name): name for name, field in model.model_fields.items()}
        _FIELD_NAMES[model] = names
    return names
