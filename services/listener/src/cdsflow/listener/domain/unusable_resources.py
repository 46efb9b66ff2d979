"""Resources that are valid FHIR but that cdsflow cannot use.

A notification carrying one is still acknowledged (2xx): refusing it would make the EHR retry
and then mark the whole Subscription as failing, cutting off every other patient's events.
It is recorded instead, on the clinical-events topic's `.dlq` twin, with the reason in headers,
and counted by reason.
"""

from __future__ import annotations

# Reasons, as metric labels and as the `cdsflow-error-type` header on the `.dlq` twin.
NO_PATIENT = "no-patient"
FOREIGN_PATIENT = "foreign-patient"
# an id-only notification's focus that is not on the configured EHR: never fetched
FOREIGN_FOCUS = "foreign-focus"
# the EHR no longer has the focus (404/410), or answered with something that is not it
FOCUS_NOT_FOUND = "focus-not-found"
UNREADABLE_FOCUS = "unreadable-focus"
# valid FHIR R5 that is not valid R4 (an R5 notification's resource): cdsflow reads R4
R5_ONLY = "r5-only"
ERROR_TYPES = {
    NO_PATIENT: "NoPatient",
    FOREIGN_PATIENT: "ForeignPatient",
    FOREIGN_FOCUS: "ForeignFocus",
    FOCUS_NOT_FOUND: "FocusNotFound",
    UNREADABLE_FOCUS: "UnreadableFocus",
    R5_ONLY: "R5OnlyResource",
}


class UnusableResource(Exception):
    """The resource cannot become a clinical event; `description` names elements, not values."""

    def __init__(self, reason: str, description: str, *expression: str) -> None:
        super().__init__(description)
        self.reason = reason
        self.description = description
        self.expression = expression

    @property
    def error_type(self) -> str:
        return ERROR_TYPES[self.reason]
