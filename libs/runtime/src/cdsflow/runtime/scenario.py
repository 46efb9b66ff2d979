"""Play the clinical story against a running stack and read back what cdsflow made of it.

Shared by `cdsflow demo`, the end-to-end tests and the benchmark.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx

from cdsflow.fhir import EhrClient
from cdsflow.runtime.sandbox_ehr_client import HookSigningKey, call_service
from cdsflow.runtime.story import (
    STORY,
    StoryPatient,
    patient_resource,
    round_observations,
    round_times,
)
from cdsflow.runtime.trace_collector import CollectedSpan, TraceCollector


@dataclass
class PlayedPatient:
    """A story patient as written to the EHR."""

    label: str
    patient_id: str
    observation_references: list[str] = field(default_factory=list)

    @property
    def reference(self) -> str:
        return f"Patient/{self.patient_id}"


async def write_story(
    ehr: EhrClient, story: tuple[StoryPatient, ...] = STORY
) -> dict[str, PlayedPatient]:
    """Create each patient, then write the rounds of vital signs, oldest first."""
    played: dict[str, PlayedPatient] = {}
    for patient in story:
        created = await ehr.create(patient_resource(patient))
        played[patient.label] = PlayedPatient(patient.label, str(created["id"]))
    now = datetime.now(UTC).replace(microsecond=0)
    for patient in story:
        target = played[patient.label]
        times = round_times(now, len(patient.rounds))
        for vitals, effective in zip(patient.rounds, times, strict=True):
            for observation in round_observations(target.reference, vitals, effective):
                created = await ehr.create(observation)
                target.observation_references.append(f"Observation/{created['id']}")
    return played


async def wait_for_risk_assessment(
    ehr: EhrClient, patient: PlayedPatient, timeout_s: float = 60
) -> dict[str, Any]:
    """The RiskAssessment written back for the patient whose basis holds their last Observation."""
    last = patient.observation_references[-1]
    deadline = time.monotonic() + timeout_s
    while True:
        # not every EHR can search RiskAssessment by subject: check it here as well
        found = await ehr.search("RiskAssessment", [("subject", patient.reference)])
        for assessment in found:
            subject = (assessment.get("subject") or {}).get("reference")
            basis = {ref.get("reference") for ref in assessment.get("basis", [])}
            if subject == patient.reference and last in basis:
                return assessment
        if time.monotonic() > deadline:
            raise TimeoutError(
                f"no RiskAssessment for the {patient.label} patient's last Observation "
                f"after {timeout_s:.0f}s"
            )
        await asyncio.sleep(0.25)


def patient_view_request(patient_id: str, ehr_base_url: str) -> dict[str, Any]:
    """A CDS Hooks 2.0 patient-view request, as an EHR sends it when a chart opens."""
    return {
        "hookInstance": str(uuid.uuid4()),
        "hook": "patient-view",
        "fhirServer": ehr_base_url,
        "context": {"userId": "Practitioner/demo-clinician", "patientId": patient_id},
    }


async def patient_view_cards(
    http: httpx.AsyncClient,
    cds_services_url: str,
    service_id: str,
    patient_id: str,
    ehr: str,
    signing_key: HookSigningKey,
) -> list[dict[str, Any]]:
    """The cards of a patient-view call, signed as the sandbox EHR signs it."""
    request = patient_view_request(patient_id, ehr)
    response = await call_service(http, f"{cds_services_url}/{service_id}", request, signing_key)
    response.raise_for_status()
    cards: list[dict[str, Any]] = response.json()["cards"]
    return cards


def pipeline_traces(collector: TraceCollector, patient_key: str) -> list[list[CollectedSpan]]:
    """Traces that began at the listener for this patient and reached the writeback."""
    spans = collector.spans()
    started = [
        span.trace_id
        for span in spans
        if "listener" in span.service
        and (
            span.attributes.get("cdsflow.patient_key") == patient_key
            or patient_key in (span.attributes.get("cdsflow.patient_keys") or ())
        )
    ]
    traces = []
    for trace_id in dict.fromkeys(started):
        trace = [span for span in spans if span.trace_id == trace_id]
        if any("writeback" in span.service for span in trace):
            traces.append(trace)
    return traces


def describe_trace(trace: list[CollectedSpan]) -> list[str]:
    """One line per span, indented under its parent, in start order: `service: name`."""
    by_parent: dict[str, list[CollectedSpan]] = {}
    ids = {span.span_id for span in trace}
    for span in sorted(trace, key=lambda span: span.start_unix_nano):
        parent = span.parent_span_id if span.parent_span_id in ids else ""
        by_parent.setdefault(parent, []).append(span)
    lines: list[str] = []

    def walk(parent: str, depth: int) -> None:
        for span in by_parent.get(parent, []):
            lines.append(f"{'  ' * depth}{span.service}: {span.name}")
            walk(span.span_id, depth + 1)

    walk("", 0)
    return lines
