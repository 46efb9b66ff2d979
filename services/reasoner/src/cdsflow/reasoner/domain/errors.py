"""Why an event cannot be processed. Messages name what is wrong, never patient data.

The class name is what the dead-letter header `cdsflow-error-type` carries.
"""

from __future__ import annotations

from collections.abc import Sequence

from cdsflow.reasoner.domain.plausible_ranges import RefusedReading
from cdsflow.reasoner.domain.vital_signs import refusal_rule


class UnprocessableEvent(Exception):
    """The event itself is wrong: retrying will not help, it belongs on the dead-letter topic."""


class ForeignPatient(UnprocessableEvent):
    """The event, or its Observation's subject, names no patient of the configured EHR (another
    server, a malformed reference), or two different patients: it is never charted."""


class PatientKeyMismatch(UnprocessableEvent):
    """The event's patient key is not the key of its patient: its recommendation would be
    shown on somebody else's chart."""


class UnknownPatient(UnprocessableEvent):
    """The configured EHR does not know the event's patient: it gets no recommendation."""


class ImplausibleVitalSign(UnprocessableEvent):
    """A reading of the event's own Observation is one no patient can have; the message names
    the vital sign and the rule, never the value."""

    def __init__(self, refusals: Sequence[RefusedReading]) -> None:
        self.refusals = tuple(refusals)
        super().__init__("; ".join(refusal_rule(refused) for refused in self.refusals))
