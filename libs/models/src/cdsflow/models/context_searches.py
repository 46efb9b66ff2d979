"""The FHIR searches that fetch a patient's context for an adapter from the EHR, for when
the context is not already held (a patient seen for the first time): one search per
resource type, covering every declared code and the longest window.

Observations are searched by `combo-code` (the Observation's code or one of its components'),
since a feed reads components too: systolic `8480-6` out of a blood pressure panel `85354-9`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from cdsflow.models.adapter_schema import ModelAdapter
from cdsflow.models.data_schema import MedicationRequestData, ObservationData

SEARCH_PAGE_SIZE = "100"


@dataclass(frozen=True)
class ContextSearch:
    """`GET {base}/{resource_type}?{params}`; for Patient, a read of the patient itself."""

    resource_type: str
    params: tuple[tuple[str, str], ...]


def context_searches(
    adapter: ModelAdapter, patient_reference: str, as_of: datetime
) -> list[ContextSearch]:
    """What to ask the EHR for, so that `extract_inputs` sees all the data the adapter reads
    as of `as_of` (`patient_reference` is `Patient/<id>`)."""
    feeds = list(adapter.data.values())
    searches = []
    observations = [f for f in feeds if isinstance(f, ObservationData)]
    if observations:
        params = [("patient", patient_reference), ("combo-code", _codes(observations))]
        windows = [f.window for f in observations]
        if all(window is not None for window in windows):
            since = as_of - max(w for w in windows if w is not None)
            params.append(("date", f"ge{_instant(since)}"))
        params += [("date", f"le{_instant(as_of)}"), ("_sort", "-date")]
        params.append(("_count", SEARCH_PAGE_SIZE))
        searches.append(ContextSearch("Observation", tuple(params)))
    medications = [f for f in feeds if isinstance(f, MedicationRequestData)]
    if medications:
        statuses = sorted({status for feed in medications for status in feed.statuses})
        params = [
            ("patient", patient_reference),
            ("code", _codes(medications)),
            ("status", ",".join(statuses)),
            ("_count", SEARCH_PAGE_SIZE),
        ]
        searches.append(ContextSearch("MedicationRequest", tuple(params)))
    if any(feed.resource == "Patient" for feed in feeds):
        patient_id = patient_reference.removeprefix("Patient/")
        searches.append(ContextSearch("Patient", (("_id", patient_id),)))
    return searches


def _codes(feeds: list[ObservationData] | list[MedicationRequestData]) -> str:
    return ",".join(sorted({code for feed in feeds for code in feed.codes}))


def _instant(when: datetime) -> str:
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
