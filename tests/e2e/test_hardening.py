"""Issue 5, defects 1 and 2, through the whole pipeline as `cdsflow up` runs it: a notification
about another server's patient, an impossible vital sign and a patient the EHR does not know
are never scored, never shown as a card and never written back into the EHR."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaConsumer

from cdsflow.contracts import CLINICAL_EVENTS, ClinicalEvent, dead_letter_topic
from cdsflow.fhir import EhrClient
from cdsflow.runtime.scenario import patient_view_cards
from cdsflow.runtime.stack import CDS_SERVICE_ID, Stack
from cdsflow.runtime.story import vital_sign_observation
from tests.support.polling import eventually

pytestmark = pytest.mark.e2e
EFFECTIVE = datetime(2026, 1, 2, 3, tzinfo=UTC)


def respiratory_rate(subject: str, observation_id: str, value: float) -> dict[str, Any]:
    resource = vital_sign_observation(subject, EFFECTIVE, "9279-1", value=value, ucum="/min")
    resource["id"] = observation_id
    return resource


async def notify(http: httpx.AsyncClient, stack: Stack, resource: dict[str, Any]) -> str:
    """PUT the resource to the listener as the EHR's rest-hook does; the answer's diagnostics."""
    response = await http.put(
        f"{stack.endpoints['listener']}/Observation/{resource['id']}",
        json=resource,
        headers={
            "Authorization": f"Bearer {stack.options.channel_secret}",
            "Content-Type": "application/fhir+json",
        },
    )
    assert response.status_code == 200, response.text
    diagnostics: str = response.json()["issue"][0]["diagnostics"]
    return diagnostics


def event_id_in(diagnostics: str) -> str:
    assert diagnostics.startswith("clinical event "), diagnostics
    return diagnostics.split()[2]


async def dead_lettered(bootstrap: str, event_ids: set[str]) -> dict[str, str]:
    """event_id -> `cdsflow-error-type` of the reasoner's dead letters, once all have arrived."""
    consumer = AIOKafkaConsumer(
        dead_letter_topic(CLINICAL_EVENTS),
        bootstrap_servers=bootstrap,
        group_id=f"test-hardening-{uuid.uuid4().hex[:8]}",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        fetch_max_wait_ms=5,
    )
    await consumer.start()
    found: dict[str, str] = {}
    try:
        async with asyncio.timeout(90):
            while not event_ids <= found.keys():
                record = await consumer.getone()
                event = ClinicalEvent.FromString(record.value)
                headers = {key: value.decode() for key, value in record.headers}
                found[event.event_id] = headers.get("cdsflow-error-type", "")
    finally:
        await consumer.stop()
    return {event_id: found[event_id] for event_id in event_ids}


async def test_foreign_impossible_and_unknown_patients_are_never_written_back(
    stack: Stack,
) -> None:
    run = uuid.uuid4().hex[:8]
    async with httpx.AsyncClient(timeout=15) as http:
        ehr = EhrClient(stack.endpoints["ehr"], http)
        patient_id = str((await ehr.create({"resourceType": "Patient", "active": True}))["id"])
        local = f"Patient/{patient_id}"

        # another server's patient with the same id: acknowledged, recorded, never charted
        foreign = [
            f"//other.example/fhir/{local}",
            f"http:/other.example/fhir/{local}",
            f"other.example/fhir/{local}",
            f"a/b/c/{local}",
            f"{ehr.base_url}/../other/{local}",
            "Patient/..",
        ]
        for index, subject in enumerate(foreign):
            answer = await notify(http, stack, respiratory_rate(subject, f"f{index}-{run}", 40))
            assert "foreign-patient" in answer

        # impossible vital signs of the local patient: published, then refused by the reasoner
        impossible = {}
        for index, value in enumerate([1e308, -5, -273.16]):
            observation = respiratory_rate(local, f"i{index}-{run}", value)
            impossible[event_id_in(await notify(http, stack, observation))] = observation["id"]

        # a patient the EHR does not know
        unknown = respiratory_rate(f"Patient/unknown-{run}", f"u-{run}", 30)
        unknown_event = event_id_in(await notify(http, stack, unknown))

        # last, a plausible reading of the local patient: the same patient key, so the
        # reasoner and the writeback handle it after everything above about this patient
        plausible = respiratory_rate(local, f"ok-{run}", 22)
        await notify(http, stack, plausible)

        async def written_back() -> list[dict[str, Any]] | None:
            found = await ehr.search("RiskAssessment", [("subject", local)])
            mine = [a for a in found if a.get("subject", {}).get("reference") == local]
            bases = [{b.get("reference") for b in a.get("basis", [])} for a in mine]
            return mine if any(f"Observation/{plausible['id']}" in b for b in bases) else None

        assessments = await eventually(
            written_back, timeout_s=90, what="the plausible reading's RiskAssessment"
        )
        errors = await dead_lettered(stack.endpoints["broker"], {*impossible, unknown_event})
        unknown_assessments = await ehr.search(
            "RiskAssessment", [("subject", f"Patient/unknown-{run}")]
        )
        cards = await patient_view_cards(
            http,
            stack.endpoints["cds_services"],
            CDS_SERVICE_ID,
            patient_id,
            ehr.base_url,
            stack.hook_signing_key,
        )

    # exactly one write-back for the local patient: the plausible reading's, low risk
    [assessment] = assessments
    basis = {b["reference"] for b in assessment["basis"]}
    assert not basis & {f"Observation/{oid}" for oid in impossible.values()}
    assert assessment["prediction"][0]["probabilityDecimal"] < 0.5
    assert cards == []
    assert set(errors.values()) <= {"ImplausibleValue", "UnknownPatient"}
    assert [errors[e] for e in impossible] == ["ImplausibleValue"] * 3
    assert errors[unknown_event] == "UnknownPatient"
    assert not [
        a
        for a in unknown_assessments
        if a.get("subject", {}).get("reference") == f"Patient/unknown-{run}"
    ]
