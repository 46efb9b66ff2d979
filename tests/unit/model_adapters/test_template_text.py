from __future__ import annotations

import pytest

from cdsflow.models.template_text import (
    TemplateError,
    TemplateValue,
    literal_text,
    render_template,
    template_fields,
)


def test_fields_with_members_and_numeric_formats() -> None:
    fields = template_fields("{score:.0%} and {value.heart_rate:.1f} at {as_of}")
    assert [(f.name, f.format_spec, f.family, f.member) for f in fields] == [
        ("score", ".0%", "score", None),
        ("value.heart_rate", ".1f", "value", "heart_rate"),
        ("as_of", "", "as_of", None),
    ]
    assert literal_text("{score:.0%} and {as_of}") == " and "


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("{score.__class__}", "lowercase name"),
        ("{value[0]}", "lowercase name"),
        ("{score!r}", "conversions"),
        ("{score:>40}", "format"),
        ("{score", "malformed"),
        ("{}", "lowercase name"),
    ],
)
def test_anything_but_a_plain_field_is_refused(text: str, words: str) -> None:
    with pytest.raises(TemplateError, match=words):
        template_fields(text)


def test_rendering() -> None:
    values: dict[str, TemplateValue] = {"score": 0.256, "value.egfr": 24.4, "band_label": "High"}
    assert render_template("{band_label}: {score:.0%}", values) == "High: 26%"
    assert render_template("eGFR {value.egfr:.0f}", values) == "eGFR 24"
    # a number that was not observed is its text, whatever the format
    assert render_template("eGFR {value.egfr:.0f}", {"value.egfr": "not observed"}) == (
        "eGFR not observed"
    )
    with pytest.raises(TemplateError, match=r"no value for field \{missing\}"):
        render_template("{missing}", values)
