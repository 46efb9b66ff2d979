"""The CDS Hooks card a deterioration score implies (none for a low risk).

Card text holds values, LOINC-named vital signs and times, never a patient identifier.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, timedelta

from cdsflow.contracts import Card, Indicator
from cdsflow.reasoner.domain.model_adapter import ModelOutputs
from cdsflow.reasoner.domain.patient_context import PatientContext
from cdsflow.reasoner.domain.risk_bands import RiskBand
from cdsflow.reasoner.domain.vital_signs import VITAL_SIGN_BY_NAME, VITAL_SIGNS

_CARD_NAMESPACE = uuid.UUID("6a0f3c52-4a8e-5d7b-9c1e-2f4d8b6a0c31")

_SUMMARIES = {
    RiskBand.HIGH: "Risk of clinical deterioration: high — review now",
    RiskBand.MEDIUM: "Risk of clinical deterioration: medium — assess and increase monitoring",
}
_INDICATORS = {
    RiskBand.HIGH: Indicator.INDICATOR_CRITICAL,
    RiskBand.MEDIUM: Indicator.INDICATOR_WARNING,
}
_UNIT_LABELS = {"mm[Hg]": " mmHg", "Cel": " °C", "%": "%", "/min": "/min", "{score}": ""}


@dataclass(frozen=True)
class CardSource:
    label: str
    url: str = ""


def deterioration_cards(
    recommendation_id: str,
    band: RiskBand,
    outputs: ModelOutputs,
    context: PatientContext,
    lookback: timedelta,
    source: CardSource,
) -> list[Card]:
    """One card for a medium or high risk, none for a low one."""
    summary = _SUMMARIES.get(band)
    if summary is None:
        return []
    return [
        Card(
            uuid=str(uuid.uuid5(_CARD_NAMESPACE, f"{recommendation_id}/{band.value}")),
            summary=summary,
            detail=card_detail(outputs, context, lookback),
            indicator=_INDICATORS[band],
            source_label=source.label,
            source_url=source.url,
        )
    ]


def card_detail(outputs: ModelOutputs, context: PatientContext, lookback: timedelta) -> str:
    """Markdown: the score, the vital signs that scored points (most first), what is missing."""
    lines = [
        f"Deterioration score **{outputs.deterioration_score:.2f}** "
        f"(early warning points **{_number(outputs.early_warning_points)}**), "
        f"from the latest vital signs up to {context.as_of.astimezone(UTC):%Y-%m-%d %H:%M} UTC.",
    ]
    contributing = sorted(
        (
            (points, name)
            for name, points in outputs.vital_sign_points.items()
            if points > 0 and name in context.readings
        ),
        key=lambda item: (-item[0], _model_order(item[1])),
    )
    if contributing:
        lines += ["", "Contributing vital signs:"]
        for points, name in contributing:
            reading = context.readings[name]
            label = VITAL_SIGN_BY_NAME[name].label
            value = f"{_number(reading.value)}{_UNIT_LABELS.get(reading.unit, ' ' + reading.unit)}"
            lines.append(f"- {label} {value}: {_number(points)} points")
    missing = [VITAL_SIGN_BY_NAME[name].label for name in context.missing()]
    if missing:
        hours = _number(lookback.total_seconds() / 3600)
        lines += ["", f"Not observed in the {hours} h before: {', '.join(missing)}."]
    return "\n".join(lines)


def _number(value: float) -> str:
    return f"{round(value, 1):g}"


def _model_order(name: str) -> int:
    return next(i for i, vital_sign in enumerate(VITAL_SIGNS) if vital_sign.name == name)
