"""Why an event cannot be processed. Messages name what is wrong, never patient data.

The class name is what the dead-letter header `cdsflow-error-type` carries.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from cdsflow.models import ModelAdapter, RefusalReason, RefusedValue


class UnprocessableEvent(Exception):
    """The event itself is wrong: retrying will not help, it belongs on the dead-letter topic."""


class ForeignPatient(UnprocessableEvent):
    """The event, or its resource's subject, names no patient of the configured EHR (another
    server, a malformed reference), or two different patients: it is never charted."""


class PatientKeyMismatch(UnprocessableEvent):
    """The event's patient key is not the key of its patient: its recommendation would be
    shown on somebody else's chart."""


class UnknownPatient(UnprocessableEvent):
    """The configured EHR does not know the event's patient: it gets no recommendation."""


@dataclass(frozen=True)
class AdapterRefusal:
    """A value of the event's own resource refused by an adapter's data feed."""

    adapter: ModelAdapter
    refused: RefusedValue


class ImplausibleValue(UnprocessableEvent):
    """A value of the event's own resource is one no patient can have (or cannot be read: a
    unit the feed does not accept, no time); the message names the data and the rule, never
    the value. Nothing is scored for the event."""

    def __init__(self, refusals: Sequence[AdapterRefusal]) -> None:
        self.refusals = tuple(refusals)
        rules = dict.fromkeys(refusal_rule(r.adapter, r.refused) for r in self.refusals)
        super().__init__("; ".join(rules))


_RULES = {
    RefusalReason.NOT_FINITE: "is not a finite number",
    RefusalReason.NOT_FLOAT32: "is beyond the range of a 32-bit float",
    RefusalReason.NOT_WHOLE: "is not a whole number",
    RefusalReason.UNKNOWN_UNIT: "is recorded in a unit its model does not accept",
    RefusalReason.NO_TIME: "has no time",
}


def refusal_rule(adapter: ModelAdapter, refused: RefusedValue) -> str:
    """The rule a refused value broke, naming the data and never the value, e.g.
    `oxygen_saturation is above its plausible range (0-100 %)`."""
    feed = adapter.data.get(refused.data)
    plausible = getattr(feed, "plausible_range", None)
    if refused.reason in (RefusalReason.BELOW_RANGE, RefusalReason.ABOVE_RANGE):
        side = "below" if refused.reason is RefusalReason.BELOW_RANGE else "above"
        bounds = ""
        if plausible is not None:
            unit = getattr(feed, "unit", "")
            bounds = f" ({plausible.low:g}-{plausible.high:g} {unit})".replace(" )", ")")
        return f"{refused.data} is {side} its plausible range{bounds}"
    return f"{refused.data} {_RULES.get(refused.reason, 'cannot be used')}"
