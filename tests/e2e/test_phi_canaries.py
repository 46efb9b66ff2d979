"""PHI canaries through the whole pipeline (issue 10, item 4).

Patients whose name, MRN, birth date and clinical free text are random tokens
(`tests/support/phi_canaries.py`) go through the running stack as an EHR sends them: written to
the EHR (its Subscription notifies the listener; the reasoner scores them on Triton; the
writeback writes a RiskAssessment back), shown in a signed `patient-view` call, scored on
demand from a call's own prefetch, and sent wrong on purpose (an invalid notification and an
invalid hook call that carry canaries in the offending element). Then everything that cdsflow
emits besides its clinical payloads is searched: every log line of the three services and of
Triton, every exported span (name, attributes, events, status, resource), every line of each
service's `/metrics`, and the headers and key of every record on every topic (the `.dlq`
twins included). One hit fails the test, naming the channel and place, not the value.

The EHR's own log is not searched: the EHR is the record system, and its data is the
patient's by right.
"""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from cdsflow.fhir import EhrClient
from cdsflow.runtime.sandbox_ehr_client import call_service
from cdsflow.runtime.scenario import (
    PlayedPatient,
    patient_view_cards,
    patient_view_request,
    pipeline_traces,
    wait_for_risk_assessment,
)
from cdsflow.runtime.stack import CDS_SERVICE_ID, REST_HOOK_PATH, SERVICES, Stack
from cdsflow.runtime.story import DETERIORATING, round_observations, round_times
from cdsflow.telemetry import PatientKeyer
from tests.support.phi_canaries import (
    MRN_SYSTEM,
    Canaries,
    CanaryHit,
    every_record,
    hits_in_kafka_headers,
    hits_in_log_files,
    hits_in_metrics,
    hits_in_spans,
)
from tests.support.polling import eventually

pytestmark = pytest.mark.e2e

# the parts whose logs are searched (the EHR's is the record system's own)
SEARCHED_LOGS = (*SERVICES, "triton", "broker")


def canary_patient(canaries: Canaries) -> dict[str, Any]:
    return {
        "resourceType": "Patient",
        "active": True,
        "identifier": [
            {
                "type": {
                    "coding": [
                        {"system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": "MR"}
                    ]
                },
                "system": MRN_SYSTEM,
                "value": canaries.mrn,
            }
        ],
        "name": [{"family": canaries.family, "given": [canaries.given]}],
        "gender": "female",
        "birthDate": canaries.birth_date,
    }


def canary_observations(canaries: Canaries, reference: str) -> list[dict[str, Any]]:
    """The deteriorating story's vital signs, each with a nurse's note holding the canaries."""
    now = datetime.now(UTC).replace(microsecond=0)
    times = round_times(now, len(DETERIORATING.rounds))
    note = f"{canaries.given} {canaries.family} ({canaries.mrn}): {canaries.free_text}"
    observations = []
    for vitals, effective in zip(DETERIORATING.rounds, times, strict=True):
        for observation in round_observations(reference, vitals, effective):
            observation["note"] = [{"text": note}]
            observations.append(observation)
    return observations


async def play_canaries(stack: Stack, canaries: Canaries) -> tuple[PlayedPatient, float]:
    """Drive the canary patients through every path; returns the one played through the EHR
    and the time of the last hook call."""
    async with httpx.AsyncClient(timeout=30) as http:
        ehr = EhrClient(stack.endpoints["ehr"], http)
        created = await ehr.create(canary_patient(canaries))
        played = PlayedPatient("canary", str(created["id"]))
        for observation in canary_observations(canaries, played.reference):
            written = await ehr.create(observation)
            played.observation_references.append(f"Observation/{written['id']}")
        await wait_for_risk_assessment(ehr, played, timeout_s=120)

        cds = stack.endpoints["cds_services"]
        service_url = f"{cds}/{CDS_SERVICE_ID}"
        key = stack.hook_signing_key
        await patient_view_cards(http, cds, CDS_SERVICE_ID, played.patient_id, ehr.base_url, key)

        # scored on demand from the call's own prefetch: a patient the pipeline never saw
        unseen = f"canary-{uuid.uuid4().hex[:12]}"
        request = patient_view_request(unseen, ehr.base_url)
        request["prefetch"] = {
            "patient": {**canary_patient(canaries), "id": unseen},
            "vital_signs": {
                "resourceType": "Bundle",
                "type": "searchset",
                "entry": [
                    {"resource": observation}
                    for observation in canary_observations(canaries, f"Patient/{unseen}")
                ],
            },
        }
        scored = await call_service(http, service_url, request, key)
        assert scored.status_code == 200, scored.text

        # wrong on purpose, the canaries in the element that is wrong
        invalid = canary_observations(canaries, played.reference)[0]
        invalid["valueQuantity"]["value"] = canaries.free_text
        invalid["id"] = "canary-invalid"
        refused = await http.put(
            f"{stack.endpoints['listener']}/Observation/canary-invalid",
            json=invalid,
            headers={
                "Authorization": f"Bearer {stack.options.channel_secret}",
                "Content-Type": "application/fhir+json",
            },
        )
        assert refused.status_code == 400, refused.text
        bad_call = patient_view_request(f"{canaries.family}/{canaries.mrn}", ehr.base_url)
        bad_call["context"]["userId"] = f"Practitioner/{canaries.given}"
        bad_call["prefetch"] = {"patient": {"resourceType": "Patient", "name": canaries.family}}
        last_call = time.time_ns()
        refused_call = await call_service(http, service_url, bad_call, key)
        assert 400 <= refused_call.status_code < 500, refused_call.text
    return played, last_call


async def test_no_canary_in_any_log_span_metric_or_kafka_header(stack: Stack) -> None:
    assert stack.collector is not None
    collector = stack.collector
    canaries = Canaries.fresh()
    played, last_call = await play_canaries(stack, canaries)
    key = PatientKeyer(stack.options.pseudonym_key).patient_key(played.reference)

    async def all_exported() -> bool:
        """The canary's pipeline trace reached the writeback, and the spans of the last
        (refused) hook call were exported."""
        traced = bool(pipeline_traces(collector, key))
        return traced and any(
            span.service == "writeback" and span.start_unix_nano >= last_call
            for span in collector.spans()
        )

    await eventually(all_exported, timeout_s=60, what="the canaries' spans exported")

    hits: list[CanaryHit] = []
    logs = [stack.options.work_dir / f"{name}.log" for name in SEARCHED_LOGS]
    assert all(log.is_file() for log in logs), [str(log) for log in logs if not log.is_file()]
    hits += hits_in_log_files(canaries, logs)
    hits += hits_in_spans(canaries, collector.spans())
    async with httpx.AsyncClient(timeout=30) as http:
        for name in SERVICES:
            base = stack.endpoints[name].removesuffix(REST_HOOK_PATH)
            metrics = await http.get(f"{base}/metrics")
            assert metrics.status_code == 200
            hits += hits_in_metrics(canaries, name, metrics.text)
    records = await every_record(stack.endpoints["broker"])
    assert {r.topic for r in records} >= {"cdsflow.clinical-events.v1"}, "no records read"
    hits += hits_in_kafka_headers(canaries, records)

    assert not hits, "patient data found: " + "; ".join(str(hit) for hit in hits[:20])
