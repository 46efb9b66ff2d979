"""UCUM units that model inputs are commonly charted in, and conversion between them.

Not a UCUM parser: a table of the unit codes that clinical feeds actually send for the
inputs cdsflow reads, each with its dimension and its linear relation to that dimension's
base unit (value_in_base = value * scale + offset). Curly-brace annotations carry no
meaning in UCUM (`{beats}/min` is `/min`, `{score}` is `1`), so they are dropped before the
look-up. Which units an input accepts is the adapter's to say (`accept_units`): two units
that convert are not always the same clinical quantity (an eGFR normalised to 1.73 m² and a
measured clearance are both mL/min here).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

_ANNOTATION = re.compile(r"\{[^{}]*\}")


@dataclass(frozen=True)
class LinearUnit:
    dimension: str
    scale: float
    offset: float = 0.0


_DAYS_PER_YEAR = 365.25  # UCUM's mean Julian year

KNOWN_UNITS: dict[str, LinearUnit] = {
    # temperature, base Cel
    "Cel": LinearUnit("temperature", 1.0),
    "[degF]": LinearUnit("temperature", 5.0 / 9.0, -32.0 * 5.0 / 9.0),
    "K": LinearUnit("temperature", 1.0, -273.15),
    # pressure, base mm[Hg]
    "mm[Hg]": LinearUnit("pressure", 1.0),
    "kPa": LinearUnit("pressure", 7.500617),
    "Pa": LinearUnit("pressure", 0.007500617),
    "cm[H2O]": LinearUnit("pressure", 0.7355592),
    # events per time, base /min
    "/min": LinearUnit("frequency", 1.0),
    "/s": LinearUnit("frequency", 60.0),
    "/h": LinearUnit("frequency", 1.0 / 60.0),
    # dimensionless, base 1 (a score, a fraction)
    "1": LinearUnit("dimensionless", 1.0),
    "%": LinearUnit("dimensionless", 0.01),
    # time spans (ages), base a
    "a": LinearUnit("time", 1.0),
    "mo": LinearUnit("time", 1.0 / 12.0),
    "wk": LinearUnit("time", 7.0 / _DAYS_PER_YEAR),
    "d": LinearUnit("time", 1.0 / _DAYS_PER_YEAR),
    "h": LinearUnit("time", 1.0 / (_DAYS_PER_YEAR * 24.0)),
    # flow (clearances, eGFR), base mL/min
    "mL/min": LinearUnit("flow", 1.0),
    "mL/s": LinearUnit("flow", 60.0),
    "L/min": LinearUnit("flow", 1000.0),
    # mass concentration, base mg/dL
    "mg/dL": LinearUnit("mass-concentration", 1.0),
    "mg/L": LinearUnit("mass-concentration", 0.1),
    "g/L": LinearUnit("mass-concentration", 100.0),
    "g/dL": LinearUnit("mass-concentration", 1000.0),
    # substance concentration, base mmol/L
    "mmol/L": LinearUnit("substance-concentration", 1.0),
    "umol/L": LinearUnit("substance-concentration", 0.001),
    # mass, base kg
    "kg": LinearUnit("mass", 1.0),
    "g": LinearUnit("mass", 0.001),
    "[lb_av]": LinearUnit("mass", 0.45359237),
    # length, base cm
    "cm": LinearUnit("length", 1.0),
    "m": LinearUnit("length", 100.0),
    "[in_i]": LinearUnit("length", 2.54),
}

# Spellings that lab and device feeds send instead of the UCUM code.
_SYNONYMS: dict[str, str] = {
    "mL/min/1.73m2": "mL/min",
    "mL/min/1.73 m2": "mL/min",
    "degF": "[degF]",
    "mmHg": "mm[Hg]",
    "": "1",
}


@lru_cache(maxsize=512)
def canonical_unit(code: str) -> str:
    """The code with annotations dropped and known spellings mapped (`{beats}/min` → `/min`)."""
    text = code.strip()
    if text in _SYNONYMS:
        return _SYNONYMS[text]
    stripped = _ANNOTATION.sub("", text)
    if stripped == "":
        return "1"
    if stripped.startswith("/") or stripped in KNOWN_UNITS:
        return stripped
    # an annotation used as a divisor ("mL/min/{1.73_m2}") leaves a trailing slash
    return stripped.rstrip("/")


def is_known_unit(code: str) -> bool:
    return canonical_unit(code) in KNOWN_UNITS


def are_convertible(from_unit: str, to_unit: str) -> bool:
    source = KNOWN_UNITS.get(canonical_unit(from_unit))
    target = KNOWN_UNITS.get(canonical_unit(to_unit))
    return source is not None and target is not None and source.dimension == target.dimension


def convert(value: float, from_unit: str, to_unit: str) -> float | None:
    """`value` from `from_unit` into `to_unit`, or None when they do not convert."""
    source_code, target_code = canonical_unit(from_unit), canonical_unit(to_unit)
    if source_code == target_code:
        return value
    source = KNOWN_UNITS.get(source_code)
    target = KNOWN_UNITS.get(target_code)
    if source is None or target is None or source.dimension != target.dimension:
        return None
    in_base = value * source.scale + source.offset
    return (in_base - target.offset) / target.scale
