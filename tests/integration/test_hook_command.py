"""`cdsflow hook order-sign` against the real parts: a writeback (in-process) trusting the
sandbox EHR's key (its JWK Set served over HTTP), the medication-safety adapter made active
and scored on the real Triton binary, the patient and eGFR in a real SEKMET read by the
command's own prefetch (it lends no `fhirAuthorization`, so the writeback cannot fetch what
is missing: without the command's prefetch the call would be answered 412). The command runs
as a process of its own, as a user runs it. The same call with the adapter's prefetch written
in CDS Hooks 3.0 FHIRPath tokens (a `%patient` chain and a relative date) shows the command
filling those from SEKMET too.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from cdsflow.fhir import EhrClient
from cdsflow.models import load_adapter
from cdsflow.runtime.processes import free_port
from cdsflow.runtime.sandbox_ehr_client import SandboxEhrClient
from cdsflow.runtime.story import vital_sign_observation
from cdsflow.writeback.app import create_app
from cdsflow.writeback.settings import Settings
from tests.conftest import EhrEndpoint, KafkaEndpoint, TritonEndpoint
from tests.integration.test_writeback_hooks import active_medication_adapter
from tests.support.asgi import serve_app
from tests.support.polling import eventually
from tests.support.telemetry import recording_telemetry

pytestmark = pytest.mark.integration

DRAFT = {
    "resourceType": "MedicationRequest",
    "id": "draft-metformin-cli",
    "status": "draft",
    "intent": "order",
    "medicationCodeableConcept": {
        "coding": [
            {
                "system": "http://www.nlm.nih.gov/research/umls/rxnorm",
                "code": "6809",
                "display": "metformin",
            }
        ]
    },
}


EGFR_CODES = "code=http://loinc.org|33914-3,"


def fhirpath_medication_adapter(folder: Path) -> Path:
    """The active medication-safety adapter with its order-sign eGFR template in CDS Hooks
    3.0 FHIRPath tokens: the patient's id read from the `patient` key the command filled
    before it, and eGFRs of the last 90 days only."""
    path = active_medication_adapter(folder)
    text = path.read_text()
    sign = text.index("  - hook: order-sign")
    template = "      egfr: Observation?patient={{context.patientId}}&" + EGFR_CODES
    at = text.index(template, sign)
    fhirpath = (
        "      egfr: Observation?patient={{%patient.id}}&date=gt{{today() - 90 days}}&" + EGFR_CODES
    )
    path.write_text(text[:at] + fhirpath + text[at + len(template) :])
    load_adapter(path)
    return path


@pytest.fixture
def sandbox_ehr() -> Iterator[SandboxEhrClient]:
    client = SandboxEhrClient()
    yield client
    client.stop()


@pytest.mark.parametrize(
    "adapter",
    [active_medication_adapter, fhirpath_medication_adapter],
    ids=["cds-hooks-2.0-tokens", "cds-hooks-3.0-fhirpath-tokens"],
)
async def test_order_sign_with_a_draft_metformin_order_gets_the_card_to_stop_it(
    adapter: Callable[[Path], Path],
    kafka: KafkaEndpoint,
    ehr: EhrEndpoint,
    triton: TritonEndpoint,
    unique: str,
    pseudonym_key: str,
    tmp_path: Path,
    sandbox_ehr: SandboxEhrClient,
) -> None:
    key_path = tmp_path / "sandbox-ehr-client-key.pem"
    key = sandbox_ehr.start(key_path)
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    settings = Settings(
        kafka_bootstrap=kafka.bootstrap,
        kafka_idempotence=False,
        ehr_base_url=ehr.base_url,
        recommendations_topic=f"test.recommendations.{unique}",
        feedback_topic=f"test.feedback.{unique}",
        consumer_group=f"test-hook-command-{unique}",
        writeback_enabled=False,
        adapters=str(adapter(tmp_path)),
        triton_grpc_url=triton.grpc_url,
        on_demand_deadline_ms=5_000,
        trusted_issuers=[{"iss": key.issuer, "jwks_url": sandbox_ehr.jwks_url}],
        cds_public_base_url=base_url,
        allow_loopback_http_fhir_server=True,
        hook_token_claim_deadline_ms=5_000,
    )
    async with httpx.AsyncClient(timeout=30) as http:
        client = EhrClient(ehr.base_url, http)
        patient = await client.create({"resourceType": "Patient", "birthDate": "1950-01-01"})
        taken = datetime.now(UTC) - timedelta(days=10)
        await client.create(
            vital_sign_observation(
                f"Patient/{patient['id']}", taken, "33914-3", value=24, ucum="mL/min/{1.73_m2}"
            )
        )
    draft = tmp_path / "metformin.json"
    draft.write_text(json.dumps({**DRAFT, "subject": {"reference": f"Patient/{patient['id']}"}}))
    endpoints = tmp_path / "endpoints.json"
    endpoints.write_text(
        json.dumps(
            {
                "cds_services": f"{base_url}/cds-services",
                "ehr": ehr.base_url,
                "ehr_client_issuer": key.issuer,
                "ehr_client_key": str(key_path),
            }
        )
    )
    arguments = [
        "-m",
        "cdsflow.runtime.cli",
        "hook",
        "order-sign",
        "--patient",
        patient["id"],
        "--draft-order",
        str(draft),
    ]

    with recording_telemetry("writeback", pseudonym_key) as (telemetry, _):
        async with serve_app(
            create_app(settings, telemetry=telemetry), settings=settings, port=port
        ):

            async def rebuilt() -> bool:
                registry = telemetry.metrics.registry
                # the card state read back, and hook tokens can be claimed across replicas
                return (
                    registry.get_sample_value("cdsflow_writeback_card_state_rebuilt") == 1
                    and registry.get_sample_value("cdsflow_writeback_hook_token_claims_ready") == 1
                )

            await eventually(rebuilt, timeout_s=60, what="the card state read back")
            async with httpx.AsyncClient(timeout=30) as http:
                discovered = (await http.get(f"{base_url}/cds-services")).json()["services"]
            [egfr] = [s["prefetch"]["egfr"] for s in discovered if s["hook"] == "order-sign"]
            assert ("{{%patient.id}}" in egfr) is (adapter is fhirpath_medication_adapter)
            command = await asyncio.create_subprocess_exec(
                sys.executable,
                *arguments,
                "--endpoints-file",
                str(endpoints),
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                env={k: v for k, v in os.environ.items() if not k.startswith("CDSFLOW_EHR_")},
            )
            out, err = await asyncio.wait_for(command.communicate(), timeout=120)

    assert command.returncode == 0, err.decode()
    [card] = json.loads(out)["cards"]
    assert card["indicator"] == "critical"
    assert card["summary"].startswith("Metformin with eGFR 24")
    [suggestion] = card["suggestions"]
    [action] = suggestion["actions"]
    assert action["type"] == "delete"
    assert action["resourceId"] == ["MedicationRequest/draft-metformin-cli"]
