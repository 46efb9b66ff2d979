"""FHIR OperationOutcome bodies for errors returned to clients.

They say what was wrong with the request, never echo patient data, never carry a trace-back.
"""

from __future__ import annotations

from typing import Any, Literal

IssueSeverity = Literal["fatal", "error", "warning", "information"]
FHIR_JSON = "application/fhir+json"


def operation_outcome(
    code: str,
    diagnostics: str,
    severity: IssueSeverity = "error",
    expression: list[str] | None = None,
) -> dict[str, Any]:
    """An OperationOutcome with one issue; `code` is from the FHIR issue-type value set."""
    issue: dict[str, Any] = {"severity": severity, "code": code, "diagnostics": diagnostics}
    if expression:
        issue["expression"] = expression
    return {"resourceType": "OperationOutcome", "issue": [issue]}
