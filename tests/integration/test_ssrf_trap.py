"""Server-side request forgery through cdsflow, aimed at a listening trap (issue 10, item 3).

Two places make cdsflow fetch over HTTP on someone else's word: the listener reads the focus
of an id-only notification, and the writeback fetches a hook call's missing prefetch from its
`fhirServer`. Each is aimed at a trap (`tests/support/trap_server.py`, a TCP listener on
another loopback port that records every connection, TLS or not, and would answer with a
usable searchset): named directly, through a name or number that resolves to loopback
(`localhost`, `127.1`, `2130706433`), through credentials or a fragment in the URL, through a
3xx redirect or a `next` link from the allowlisted server, and at link-local
`169.254.169.254`. The trap must record zero connections, and each caller gets the documented
answer. A control case fetches from the allowlisted server, so that a trap left unvisited
because nothing was fetched at all would fail the test.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from cdsflow.listener.app import create_app as create_listener
from cdsflow.runtime.story import vital_sign_observation
from tests.conftest import EhrEndpoint, KafkaEndpoint, TritonEndpoint
from tests.integration.test_listener import (
    AUTHORIZED,
    REST_HOOK,
    listener_settings,
    outcome_issue,
    respiratory_rate,
)
from tests.integration.test_writeback_hooks import (
    DETERIORATION,
    HIGH_VITALS,
    hook_writeback,
    request_body,
)
from tests.support.asgi import serve_app
from tests.support.telemetry import recording_telemetry
from tests.support.trap_server import Trap, trap_server
from tests.unit.listener.notification_bundles import r4_backport

pytestmark = pytest.mark.integration

LINK_LOCAL = "169.254.169.254"
LENT_TOKEN = {"access_token": "lent-by-the-ehr", "token_type": "Bearer", "expires_in": 300}


@dataclass
class AllowlistedEhr:
    """The one server cdsflow may read: answers reads, or sends the caller on to the trap."""

    trap: Trap
    base_url: str = ""
    reads: list[str] = field(default_factory=list)

    async def observation(self, request: Request) -> Response:
        self.reads.append(request.url.path)
        resource_id = request.path_params["id"]
        if resource_id == "redirected":
            return RedirectResponse(f"{self.trap.url()}/Observation/obs-1", status_code=302)
        resource = respiratory_rate("pat-allowed", resource_id=resource_id)
        return JSONResponse(resource, media_type="application/fhir+json")

    async def patient(self, request: Request) -> Response:
        self.reads.append(request.url.path)
        patient_id = request.path_params["id"]
        if patient_id == "redirected":
            return RedirectResponse(f"{self.trap.url()}/Patient/{patient_id}", status_code=307)
        return JSONResponse({"resourceType": "Patient", "id": patient_id})

    async def search(self, request: Request) -> Response:
        self.reads.append(request.url.path)
        patient = request.query_params.get("patient", "")
        now = datetime.now(UTC)  # the sick patient of the hook tests, measured now
        entries = [
            {"resource": vital_sign_observation(f"Patient/{patient}", now, code, value=v, ucum=u)}
            for code, v, u in HIGH_VITALS
        ]
        bundle: dict[str, Any] = {"resourceType": "Bundle", "type": "searchset", "entry": entries}
        if patient == "paged-off":
            bundle["link"] = [{"relation": "next", "url": f"{self.trap.url()}/Observation?p=2"}]
        return JSONResponse(bundle, media_type="application/fhir+json")

    def app(self) -> Starlette:
        return Starlette(
            routes=[
                Route("/fhir/Observation/{id}", self.observation),
                Route("/fhir/Observation", self.search),
                Route("/fhir/Patient/{id}", self.patient),
            ]
        )


@pytest.fixture
async def trap() -> AsyncIterator[Trap]:
    async with trap_server() as running:
        yield running


@pytest.fixture
async def allowlisted(trap: Trap) -> AsyncIterator[AllowlistedEhr]:
    ehr = AllowlistedEhr(trap)
    async with serve_app(ehr.app()) as base_url:
        ehr.base_url = f"{base_url}/fhir"
        yield ehr


def listener_attacks(trap: Trap, allowed: str) -> dict[str, str]:
    """focus references of id-only notifications that must not be read (`foreign-focus`, or
    for the redirect `unreadable-focus`)."""
    allowed_port = allowed.split(":")[2].split("/")[0]
    return {
        "trap-directly": f"{trap.url()}/Observation/obs-1",
        "trap-over-https": f"{trap.url(scheme='https')}/Observation/obs-1",
        "trap-as-localhost": f"{trap.url('localhost')}/Observation/obs-1",
        "trap-as-127.1": f"{trap.url('127.1')}/Observation/obs-1",
        "trap-as-a-number": f"{trap.url('2130706433')}/Observation/obs-1",
        "allowlisted-port-as-localhost": f"http://localhost:{allowed_port}/fhir/Observation/o-1",
        "credentials-before-the-trap": (
            f"http://127.0.0.1:{allowed_port}@127.0.0.1:{trap.port}/fhir/Observation/obs-1"
        ),
        "dot-segments-to-the-trap": f"{allowed}/../../127.0.0.1:{trap.port}/Observation/o-1",
        "link-local": f"http://{LINK_LOCAL}/fhir/Observation/obs-1",
        "redirected-by-the-allowlisted-ehr": "Observation/redirected",
    }


async def test_id_only_notifications_never_make_the_listener_fetch_off_the_ehr(
    kafka: KafkaEndpoint,
    unique: str,
    pseudonym_key: str,
    trap: Trap,
    allowlisted: AllowlistedEhr,
) -> None:
    settings = listener_settings(kafka.bootstrap, unique, ehr_base_url=allowlisted.base_url)
    attacks = listener_attacks(trap, allowlisted.base_url)
    with recording_telemetry("listener", pseudonym_key) as (telemetry, _):
        async with (
            serve_app(create_listener(settings, telemetry=telemetry)) as base_url,
            httpx.AsyncClient(base_url=base_url, timeout=30) as client,
        ):

            async def notify(number: int, focus: str) -> httpx.Response:
                bundle = r4_backport("event-notification", [(number, focus, ())])
                return await client.post(REST_HOOK, json=bundle, headers=AUTHORIZED)

            # the control: a focus on the configured EHR is read there and published
            control = await notify(1, "Observation/obs-allowed")
            assert control.status_code == 200, control.text
            assert "published" in outcome_issue(control)["diagnostics"]
            assert allowlisted.reads == ["/fhir/Observation/obs-allowed"]

            answers = {}
            for number, (attack, focus) in enumerate(attacks.items(), start=2):
                answers[attack] = await notify(number, focus)
            # the same, as the one entry with only a fullUrl (no focus) and as context
            answers["full-url-only"] = await client.post(
                REST_HOOK,
                json=_with_full_url_only(attacks["trap-directly"], number=50),
                headers=AUTHORIZED,
            )
            context = r4_backport(
                "event-notification",
                [(51, "Observation/obs-context", (attacks["trap-directly"],))],
            )
            answers["trap-as-additional-context"] = await client.post(
                REST_HOOK, json=context, headers=AUTHORIZED
            )

    assert trap.visits == [], f"the listener connected to the trap: {trap.visits}"
    for attack, answer in answers.items():
        assert answer.status_code == 200, (attack, answer.text)
        issue = outcome_issue(answer)
        if attack == "trap-as-additional-context":
            # its focus is on the EHR and published; the context is not read
            assert "published" in issue["diagnostics"], (attack, issue)
        else:
            # acknowledged and recorded on the .dlq twin with its reason, never read
            reason = "unreadable-focus" if attack.startswith("redirected") else "foreign-focus"
            assert issue["severity"] == "warning", (attack, issue)
            assert f"not used ({reason})" in issue["diagnostics"], (attack, issue)
    # the EHR itself was read for the control, the redirect and the context's focus only
    assert sorted(allowlisted.reads) == [
        "/fhir/Observation/obs-allowed",
        "/fhir/Observation/obs-context",
        "/fhir/Observation/redirected",
    ]


def _with_full_url_only(full_url: str, number: int) -> dict[str, Any]:
    """An id-only event without a `focus`: the resource is named by an entry's `fullUrl`."""
    bundle = r4_backport("event-notification", [(number, None, ())])
    bundle["entry"].append({"fullUrl": full_url})
    return bundle


def writeback_attacks(trap: Trap, allowed: str) -> dict[str, tuple[str, str, int]]:
    """`fhirServer` values (and the patient asked about) that must not be fetched from:
    attack -> (fhirServer, patientId, the documented status)."""
    allowed_port = allowed.split(":")[2].split("/")[0]
    return {
        # not on the issuer's allowlist: 412, nothing fetched
        "trap-directly": (trap.url(), "p-1", 412),
        "trap-over-https": (trap.url(scheme="https"), "p-1", 412),
        "trap-as-localhost": (trap.url("localhost"), "p-1", 412),
        "allowlisted-port-as-localhost": (f"http://localhost:{allowed_port}/fhir", "p-1", 412),
        # not loopback addresses as written (though they resolve to it): http refused
        # outright (400); over https, not on the allowlist (412)
        "trap-as-127.1": (trap.url("127.1"), "p-1", 400),
        "trap-as-a-number": (trap.url("2130706433"), "p-1", 400),
        "trap-as-a-number-over-https": (trap.url("2130706433", scheme="https"), "p-1", 412),
        "credentials-before-the-trap": (
            f"http://127.0.0.1:{allowed_port}@127.0.0.1:{trap.port}/fhir",
            "p-1",
            400,
        ),
        "link-local": (f"http://{LINK_LOCAL}/fhir", "p-1", 400),
        "link-local-over-https": (f"https://{LINK_LOCAL}/latest/meta-data", "p-1", 412),
        # the allowlisted server itself sends the writeback on: not followed, 412
        "redirected-by-the-allowlisted-ehr": (allowed, "redirected", 412),
        "next-page-on-the-trap": (allowed, "paged-off", 412),
    }


async def test_fhir_server_never_makes_the_writeback_fetch_off_the_allowlist(
    kafka: KafkaEndpoint,
    triton: TritonEndpoint,
    unique: str,
    pseudonym_key: str,
    tmp_path: Path,
    trap: Trap,
    allowlisted: AllowlistedEhr,
) -> None:
    ehr = EhrEndpoint(base_url=allowlisted.base_url)  # the issuer's only allowed fhirServer
    attacks = writeback_attacks(trap, allowlisted.base_url)
    async with hook_writeback(
        kafka, ehr, triton.grpc_url, unique, pseudonym_key, tmp_path
    ) as writeback:

        async def call(fhir_server: str, patient_id: str) -> httpx.Response:
            body = request_body(
                "patient-view",
                patient_id,
                fhirServer=fhir_server,
                fhirAuthorization=LENT_TOKEN,
            )
            return await writeback.call(DETERIORATION, body)

        # the control: prefetch fetched from the allowlisted server and scored
        control = await call(allowlisted.base_url, f"p-{uuid.uuid4().hex[:8]}")
        assert control.status_code == 200, control.text
        assert control.json()["cards"], "the control call was not scored from the fetch"
        assert len(allowlisted.reads) == 2
        allowlisted.reads.clear()

        answers = {
            attack: await call(fhir_server, patient_id)
            for attack, (fhir_server, patient_id, _) in attacks.items()
        }

    assert trap.visits == [], f"the writeback connected to the trap: {trap.visits}"
    for attack, (_, _, status) in attacks.items():
        answer = answers[attack]
        assert answer.status_code == status, (attack, answer.status_code, answer.text)
        outcome = answer.json()
        assert outcome["resourceType"] == "OperationOutcome", (attack, outcome)
        if attack.startswith(("trap", "allowlisted-port", "link-local")) and status == 412:
            # refused before any connection: not "could not be reached" after trying
            assert "fhirServer not allowed" in outcome["issue"][0]["diagnostics"], attack
    # the allowlisted server was asked only by the two calls it sent on
    assert all(
        read.startswith(("/fhir/Patient/", "/fhir/Observation")) for read in allowlisted.reads
    )


async def test_the_trap_records_every_connection_http_or_not(trap: Trap) -> None:
    """So that its silence above means something: a plain request and a TLS handshake."""
    async with httpx.AsyncClient(timeout=10) as http:
        answer = await http.get(f"{trap.url()}/Observation?patient=p-1")
        assert answer.json()["resourceType"] == "Bundle"
        with pytest.raises(httpx.HTTPError):
            await http.get(f"{trap.url(scheme='https')}/Patient/p-1")

    assert len(trap.visits) == 2
    assert trap.visits[0] == "GET /fhir/Observation?patient=p-1 HTTP/1.1"
