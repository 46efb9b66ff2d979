"""The operator command as a person runs it: `cdsflow demo` and `cdsflow up` + SIGTERM."""

from __future__ import annotations

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

from cdsflow.runtime.processes import port_accepts
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


@pytest.mark.timeout(300)
def test_up_against_an_existing_ehr_and_sigterm_stops_everything(
    tmp_path: Path, ehr: EhrEndpoint
) -> None:
    """`up --ehr-base-url`: the Subscription is made on that EHR and removed on the way out."""
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
    finally:
        process.send_signal(signal.SIGTERM)
        code = process.wait(timeout=60)
        output.close()
    assert code == 0
    started_here = {k: v for k, v in endpoints.items() if k not in ("ehr", "subscription")}
    assert not [port for port in _ports(started_here) if port_accepts(port)], "a part is still up"
    assert httpx.get(endpoints["subscription"]).status_code in (404, 410)
