"""A result's basis as flat entries, one per observed input: what a `Recommendation`'s
`Basis` carries (name, code, value, unit, the resource it came from, when it was measured)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from cdsflow.models.outputs import ModelResult


@dataclass(frozen=True)
class BasisEntry:
    name: str
    # the code the newest reading was recorded under (system|code), or "" for a count of none
    code: str
    value: float
    unit: str
    # "Observation/<id>" of the newest reading behind the value
    resource_reference: str
    observed_at: datetime | None
    contribution: float | None
    # how the input is named on cards ("Respiratory rate trend")
    label: str = ""


def basis_entries(result: ModelResult) -> list[BasisEntry]:
    """The observed inputs in the result's basis order (largest contribution first)."""
    entries = []
    for item in result.basis:
        column = item.column
        if column.value is None:
            continue
        newest = column.readings[-1] if column.readings else None
        entries.append(
            BasisEntry(
                name=column.column.name,
                code=newest.code if newest else "",
                value=column.value,
                unit=column.unit,
                resource_reference=newest.resource_reference if newest else "",
                observed_at=newest.observed_at if newest else None,
                contribution=item.contribution,
                label=column.label,
            )
        )
    return entries


def resource_references(result: ModelResult) -> list[str]:
    """Every resource that a used value came from, sorted, each once."""
    return sorted(
        {reading.resource_reference for item in result.basis for reading in item.column.readings}
    )
