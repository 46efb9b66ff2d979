"""How an input, its value and its time read on a card or in a prompt (Markdown, no
identifiers: a label, a number with its unit, a UTC time)."""

from __future__ import annotations

from datetime import UTC, datetime
from functools import lru_cache

from cdsflow.models.data_schema import Aggregation
from cdsflow.models.feature_extraction import ColumnValue

NOT_OBSERVED = "not observed"


def number_text(value: float) -> str:
    return f"{round(value, 1):g}"


@lru_cache(maxsize=4096)  # the same few reading times are written on many cards
def time_text(when: datetime) -> str:
    return f"{when.astimezone(UTC):%Y-%m-%d %H:%M} UTC"


def value_text(column: ColumnValue) -> str:
    """`28 /min`, `+10 /min` for a trend, `yes`/`no` for exists, `not observed`."""
    if column.value is None:
        return NOT_OBSERVED
    if column.column.aggregation is Aggregation.EXISTS:
        return "yes" if column.value else "no"
    sign = "+" if column.column.aggregation is Aggregation.TREND and column.value > 0 else ""
    unit = f" {column.display_unit}" if column.display_unit else ""
    return f"{sign}{number_text(column.value)}{unit}"


def measured_text(column: ColumnValue) -> str:
    """When the value's readings were taken: one time, or the span from first to last."""
    times = sorted(r.observed_at for r in column.readings if r.observed_at is not None)
    if not times:
        return ""
    if times[0] == times[-1]:
        return time_text(times[0])
    return f"{time_text(times[0])} to {time_text(times[-1])}"


def observation_line(column: ColumnValue) -> str:
    """`Respiratory rate: 28 /min (2026-11-29 17:00 UTC)`."""
    when = measured_text(column)
    return f"{column.label}: {value_text(column)}" + (f" ({when})" if when else "")
