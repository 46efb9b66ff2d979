from __future__ import annotations

import pytest

from cdsflow.models.units import are_convertible, canonical_unit, convert


@pytest.mark.parametrize(
    ("value", "source", "target", "expected"),
    [
        (98.6, "[degF]", "Cel", 37.0),
        (32.0, "[degF]", "Cel", 0.0),
        (310.15, "K", "Cel", 37.0),
        (37.0, "Cel", "[degF]", 98.6),
        (16.0, "kPa", "mm[Hg]", 120.01),
        (120.0, "mm[Hg]", "kPa", 15.999),
        (0.97, "1", "%", 97.0),
        (2.0, "/s", "/min", 120.0),
        (24.0, "mo", "a", 2.0),
        (1.0, "mL/s", "mL/min", 60.0),
    ],
)
def test_converts_between_units_of_one_dimension(
    value: float, source: str, target: str, expected: float
) -> None:
    converted = convert(value, source, target)
    assert converted == pytest.approx(expected, abs=0.01)


def test_annotations_carry_no_meaning() -> None:
    assert canonical_unit("{beats}/min") == "/min"
    assert canonical_unit("{score}") == "1"
    assert canonical_unit("") == "1"
    assert canonical_unit("mL/min/{1.73_m2}") == "mL/min"
    assert convert(72.0, "{beats}/min", "/min") == 72.0


@pytest.mark.parametrize(
    ("source", "target"),
    [("kPa", "Cel"), ("%", "/min"), ("furlong", "m"), ("mm[Hg]", "parsec")],
)
def test_units_of_different_dimensions_or_unknown_do_not_convert(source: str, target: str) -> None:
    assert convert(1.0, source, target) is None
    assert not are_convertible(source, target)
