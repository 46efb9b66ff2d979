"""The operator command as a person runs it: `cdsflow demo` and `cdsflow up` + SIGTERM."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from cdsflow.fhir import EhrClient
from cdsflow.runtime.processes import port_accepts
from cdsflow.runtime.sandbox_ehr_client import HookSigningKey, new_private_key
from cdsflow.runtime.scenario import wait_for_risk_assessment, write_story
from cdsflow.runtime.story import DETERIORATING
from tests.conftest import MODEL_REPOSITORY, REPO_ROOT, EhrEndpoint

pytestmark = pytest.mark.e2e
CLI = [sys.executable, "-m", "cdsflow.runtime.cli"]


def _ports(endpoints: dict[str, str]) -> list[int]:
    ports = []
    for value in endpoints.values():
        url = value if "://" in value else f"tcp://{value}"
        port = urlsplit(url).port
        if port:
            ports.append(port)
    return ports


@pytest.mark.timeout(300)
def test_demo_prints_cards_write_back_and_trace_then_exits_0(tmp_path: Path) -> None:
    endpoints_file = tmp_path / "endpoints.json"
    result = subprocess.run(
        [*CLI, "demo", "--endpoints-file", str(endpoints_file), "--work-dir", str(tmp_path)],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=280,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    out = result.stdout
    assert "patient-view for the deteriorating patient" in out
    assert "patient-view for the stable patient" in out
    assert '"resourceType": "RiskAssessment"' in out
    assert "trace " in out
    endpoints = json.loads(endpoints_file.read_text())
    assert not [port for port in _ports(endpoints) if port_accepts(port)], "a part is still up"


async def _assessed_deteriorating_patient(ehr_base_url: str) -> str:
    """A deteriorating patient's vital signs written to the EHR, once written back."""
    async with httpx.AsyncClient(timeout=15) as http:
        ehr = EhrClient(ehr_base_url, http)
        played = await write_story(ehr, (DETERIORATING,))
        patient = played[DETERIORATING.label]
        await wait_for_risk_assessment(ehr, patient, timeout_s=120)
        return patient.patient_id


def _hook(endpoints_file: Path, patient_id: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CLI, "hook", "patient-view", "--patient", patient_id, "--endpoints-file", endpoints_file],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        # a bound, not a latency check: the command starts Python, asks discovery, fills the
        # prefetch from the EHR and calls the service, on a CI machine busy with other tests
        timeout=120,
        check=False,
    )


@pytest.mark.timeout(400)
def test_up_against_an_existing_ehr_a_signed_hook_call_and_sigterm_stops_everything(
    tmp_path: Path, ehr: EhrEndpoint
) -> None:
    """`up --ehr-base-url`: the Subscription is made on that EHR and removed on the way out;
    `cdsflow hook` calls the CDS service as the sandbox EHR, signed with its key."""
    endpoints_file = tmp_path / "endpoints.json"
    output = (tmp_path / "up.log").open("w")
    process = subprocess.Popen(
        [
            *CLI,
            "up",
            "--ehr-base-url",
            ehr.base_url,
            "--endpoints-file",
            str(endpoints_file),
            "--model-repository",
            str(MODEL_REPOSITORY),
            "--work-dir",
            str(tmp_path / "work"),
        ],
        cwd=REPO_ROOT,
        stdout=output,
        stderr=subprocess.STDOUT,
        env=os.environ.copy(),
    )
    try:
        deadline = time.monotonic() + 240
        while not endpoints_file.exists():
            assert process.poll() is None, (tmp_path / "up.log").read_text()
            assert time.monotonic() < deadline, "cdsflow up did not write its endpoints"
            time.sleep(0.2)
        endpoints = json.loads(endpoints_file.read_text())
        for key in ("listener", "cds_services", "broker", "triton_grpc", "ehr"):
            assert endpoints.get(key), key
        assert endpoints["ehr"] == ehr.base_url
        assert httpx.get(f"{endpoints['ehr']}/metadata").is_success
        discovery = httpx.get(endpoints["cds_services"]).json()
        assert discovery["services"][0]["hook"] == "patient-view"
        subscription = httpx.get(endpoints["subscription"]).json()
        assert subscription["status"] == "active"
        assert subscription["channel"]["endpoint"] == endpoints["listener"]
        key_file = Path(endpoints["ehr_client_key"])
        assert key_file.stat().st_mode & 0o077 == 0, "the private key is its owner's only"

        patient_id = asyncio.run(_assessed_deteriorating_patient(endpoints["ehr"]))
        called = _hook(endpoints_file, patient_id)
        assert called.returncode == 0, called.stderr
        cards = json.loads(called.stdout)["cards"]
        # the deterioration adapter's assessment card, and at a high risk its suggestion card
        assert cards
        assert {card["indicator"] for card in cards} <= {"warning", "critical"}
        assert "AI-generated by cdsflow" in cards[0]["detail"]

        # signed by a key that the writeback does not trust: refused, exit 1
        stranger = HookSigningKey(new_private_key(), endpoints["ehr_client_issuer"])
        stranger.save(tmp_path / "stranger.pem")
        stranger_file = tmp_path / "stranger-endpoints.json"
        stranger_endpoints = {**endpoints, "ehr_client_key": str(tmp_path / "stranger.pem")}
        stranger_file.write_text(json.dumps(stranger_endpoints))
        refused = _hook(stranger_file, patient_id)
        assert refused.returncode == 1
        assert "401" in refused.stderr
        assert refused.stdout == ""
    finally:
        process.send_signal(signal.SIGTERM)
        code = process.wait(timeout=60)
        output.close()
    assert code == 0
    started_here = {
        k: v for k, v in endpoints.items() if k not in ("ehr", "subscription", "subscriptions")
    }
    assert not [port for port in _ports(started_here) if port_accepts(port)], "a part is still up"
    # every channel's Subscription (one per distinct need of the adapters) is gone
    subscriptions = endpoints["subscriptions"].split()
    assert endpoints["subscription"] in subscriptions
    assert len(subscriptions) == 3
    for url in subscriptions:
        assert httpx.get(url).status_code in (404, 410), url
