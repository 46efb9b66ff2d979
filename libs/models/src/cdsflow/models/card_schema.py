"""Risk bands and the CDS Hooks cards that an adapter's result implies (`risk_bands:`,
`cards:`); every text member is a template (`cdsflow.models.template_text`)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from cdsflow.models.data_schema import Declared, Name

Indicator = Literal["info", "warning", "critical"]


class RiskBand(Declared):
    """Scores from `from` (inclusive) up to the next band's `from` fall in this band.

    The first band has no `from`: it starts below every score.
    """

    name: Name
    label: str
    from_score: float | None = Field(default=None, alias="from")
    indicator: Indicator


class CardSource(Declared):
    label: str
    url: str | None = Field(default=None, pattern=r"^https?://")


class CardLink(Declared):
    label: str
    url: str = Field(pattern=r"^https?://")
    type: Literal["absolute", "smart"] = "absolute"


class OverrideReason(Declared):
    """A coded reason a clinician can give for dismissing the card (CDS Hooks 2.0 Coding)."""

    system: str
    code: str
    display: str


class SuggestionAction(Declared):
    """A CDS Hooks action; `create`/`update` carry a resource whose texts are templates,
    `delete` names the data feed whose matched resources it proposes to remove."""

    type: Literal["create", "update", "delete"]
    description: str
    resource: dict[str, Any] | None = None
    resource_ids_from: Name | None = None


class Suggestion(Declared):
    label: str
    recommended: bool = False
    actions: list[SuggestionAction] = Field(min_length=1)


class CardTemplate(Declared):
    """A card shown when the result falls in one of `bands` (a generative adapter without
    bands: always) and every column in `requires_present` was observed."""

    bands: list[Name] | None = None
    requires_present: list[Name] = Field(default_factory=list)
    summary: str = Field(min_length=1)
    # the band's indicator when absent
    indicator: Indicator | None = None
    detail: str = ""
    source: CardSource
    suggestions: list[Suggestion] = Field(default_factory=list)
    selection_behavior: Literal["at-most-one", "any"] | None = None
    links: list[CardLink] = Field(default_factory=list)
    override_reasons: list[OverrideReason] = Field(default_factory=list)


class SystemActionTemplate(Declared):
    """A CDS Hooks `systemActions` entry that the EHR may apply by itself (CDS Hooks 2.0.1
    "System Action"): offered with an **active** recommendation whose band is in `bands`
    (never with a shadow one) and every column in `requires_present` was observed. Only
    `create` and `update`: a deletion without a clinician is never proposed. The resource's
    strings are templates, like a suggestion's."""

    bands: list[Name] = Field(min_length=1)
    requires_present: list[Name] = Field(default_factory=list)
    type: Literal["create", "update"]
    description: str = Field(min_length=1)
    resource: dict[str, Any]


HookName = Literal["patient-view", "order-select", "order-sign", "encounter-start"]


class HookService(Declared):
    """A CDS service that the writeback answers with this adapter's cards."""

    hook: HookName
    id: str = Field(pattern=r"^[a-z0-9][a-z0-9-]{0,62}$")
    title: str
    description: str
    # CDS Hooks prefetch templates: key -> FHIR query with {{context.*}} tokens
    prefetch: dict[str, str] = Field(default_factory=dict)


class Subscriptions(Declared):
    """What the listener must subscribe to on the EHR for this adapter's data to arrive."""

    # R4 rest-hook criteria: `Observation?category=vital-signs`
    criteria: list[str] = Field(default_factory=list, max_length=32)
    # topic-based (R4B backport / R5) SubscriptionTopic canonical URLs
    topics: list[str] = Field(default_factory=list)


class EvaluationGate(Declared):
    """What `cdsflow evaluate` must measure before a version may become active."""

    min_auroc: float | None = Field(default=None, ge=0, le=1)
    min_sensitivity: float | None = Field(default=None, ge=0, le=1)
    min_ppv: float | None = Field(default=None, ge=0, le=1)
    max_alerts_per_100_patient_days: float | None = Field(default=None, ge=0)
    calibration_slope_between: tuple[float, float] | None = None


class Evaluation(Declared):
    # a labelled evaluation set, relative to the repository (or the operator's) root
    dataset: str | None = None
    # a result in this band or a higher one is an alert (sensitivity, PPV, alert rate)
    alert_from_band: Name
    gate: EvaluationGate
