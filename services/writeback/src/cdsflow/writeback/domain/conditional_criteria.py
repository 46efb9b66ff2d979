"""Search criteria for conditional creates (`If-None-Exist`, `Bundle.entry.request.ifNoneExist`).

A value is escaped as FHIR search requires (`\\`, `,`, `|`, `$` get a backslash) and then
percent-encoded, so that an id holding `&`, `=` or `,` cannot change the query's meaning.

Which parameters a server indexes differs: SEKMET (measured: `tests/integration/
test_writeback_bundle.py`) answers `400 Unknown search parameter` to a conditional create on
`RiskAssessment?identifier=`, and indexes neither `identifier` on DetectedIssue, Provenance
nor AuditEvent; `_tag` is a parameter of every resource type, so the writeback matches on it.
`Device?identifier=` is indexed.
"""

from __future__ import annotations

from urllib.parse import quote

_FHIR_SEARCH_SPECIALS = ("\\", ",", "|", "$")


def escaped_search_value(value: str) -> str:
    """One FHIR search value, escaped and percent-encoded for a query string."""
    for special in _FHIR_SEARCH_SPECIALS:
        value = value.replace(special, "\\" + special)
    return quote(value, safe=":/\\-._~")


def token_criteria(parameter: str, system: str, code: str) -> str:
    """`parameter=system|code`, e.g. `_tag=urn:cdsflow:recommendation|rec-1`."""
    return f"{parameter}={escaped_search_value(system)}|{escaped_search_value(code)}"
