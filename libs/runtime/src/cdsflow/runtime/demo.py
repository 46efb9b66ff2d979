"""`cdsflow demo`: the clinical story through the whole pipeline, printed for a person."""

from __future__ import annotations

import asyncio
import json
import sys
import time
from typing import Any

import httpx

from cdsflow.fhir import EhrClient
from cdsflow.runtime.ehr_setup import EhrAuthMisconfigured, ehr_http_client
from cdsflow.runtime.scenario import (
    PlayedPatient,
    describe_trace,
    patient_view_cards,
    pipeline_traces,
    wait_for_risk_assessment,
    write_story,
)
from cdsflow.runtime.stack import CDS_SERVICE_ID, Stack
from cdsflow.runtime.trace_collector import CollectedSpan
from cdsflow.telemetry import PatientKeyer

ALERTING = ("warning", "critical")


def _print_cards(patient: PlayedPatient, cards: list[dict[str, Any]]) -> None:
    print(f"\npatient-view for the {patient.label} patient ({patient.reference}):")
    if not cards:
        print("  no cards")
    for card in cards:
        print(f"  [{card.get('indicator')}] {card.get('summary')}")
        for line in str(card.get("detail", "")).splitlines():
            print(f"      {line}")


async def _wait_for_trace(
    stack: Stack, patient_key: str, timeout_s: float = 20
) -> list[CollectedSpan] | None:
    if stack.collector is None:
        return None
    deadline = time.monotonic() + timeout_s
    traces: list[list[CollectedSpan]] = []
    while time.monotonic() < deadline:
        traces = pipeline_traces(stack.collector, patient_key)
        # Triton exports its spans in batches: wait for them to join the trace
        with_triton = [t for t in traces if any("triton" in s.service for s in t)]
        if with_triton:
            return with_triton[-1]
        await asyncio.sleep(0.25)
    return traces[-1] if traces else None


async def run_demo(stack: Stack) -> int:
    endpoints = stack.endpoints
    signing_key = stack.hook_signing_key
    try:
        # the story is written as the services read: with CDSFLOW_EHR_AUTH (see ehr_setup)
        ehr_http = ehr_http_client(endpoints["ehr"], 15)
    except EhrAuthMisconfigured as exc:
        print(f"cdsflow demo: {exc}", file=sys.stderr)
        return 1
    async with httpx.AsyncClient(timeout=15) as http, ehr_http:
        ehr = EhrClient(endpoints["ehr"], ehr_http)
        print("\nWriting the story to the EHR: 2 patients, 3 rounds of vital signs each ...")
        played = await write_story(ehr)
        assessments = {
            label: await wait_for_risk_assessment(ehr, patient) for label, patient in played.items()
        }
        cards = {
            label: await patient_view_cards(
                http,
                endpoints["cds_services"],
                CDS_SERVICE_ID,
                patient.patient_id,
                ehr.base_url,
                signing_key,
            )
            for label, patient in played.items()
        }
    for label, patient in played.items():
        _print_cards(patient, cards[label])
    deteriorating = played["deteriorating"]
    print(f"\nWritten back into the EHR for the {deteriorating.label} patient:")
    print(json.dumps(assessments["deteriorating"], indent=2))
    keyer = PatientKeyer(stack.options.pseudonym_key)
    trace = await _wait_for_trace(stack, keyer.patient_key(deteriorating.reference))
    if trace is None:
        print("\nno complete trace was collected (traces go to the configured OTLP endpoint)")
    else:
        print(f"\ntrace {trace[0].trace_id}:")
        for line in describe_trace(trace):
            print(f"  {line}")
    alerting = [c for c in cards["deteriorating"] if c.get("indicator") in ALERTING]
    stable_alerts = [c for c in cards["stable"] if c.get("indicator") in ALERTING]
    if not alerting or stable_alerts:
        print("\ncdsflow demo: the cards are not what the story expects")
        return 1
    return 0
