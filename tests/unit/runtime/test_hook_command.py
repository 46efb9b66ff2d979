"""`cdsflow hook`: bad usage exits 2 before anything is called; `prefetch` is filled from the
EHR as an EHR fills it. The call itself against a running `up`: tests/e2e/test_cli.py."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from cdsflow.runtime.cli import main
from cdsflow.runtime.hook_command import prefetched

EHR = "http://127.0.0.1:8080/fhir"


def endpoints_file(tmp_path: Path, **endpoints: str) -> str:
    path = tmp_path / "endpoints.json"
    path.write_text(json.dumps(endpoints))
    return str(path)


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["patient-view"], "--patient"),
        (["order-sign", "--patient", "p-1"], "invalid choice"),
        (["patient-view", "--patient", "p-1"], "--endpoints-file"),
        (["patient-view", "--patient", "../etc", "--endpoints-file", "x"], "FHIR resource id"),
        (["patient-view", "--patient", "p-1", "--endpoints-file", "/nonexistent"], "cannot read"),
    ],
)
def test_bad_usage_exits_2(
    arguments: list[str],
    message: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("CDSFLOW_ENDPOINTS_FILE", raising=False)
    with pytest.raises(SystemExit) as exited:
        main(["hook", *arguments])
    assert exited.value.code == 2
    assert message in capsys.readouterr().err


def test_an_endpoints_file_not_written_by_up_is_bad_usage(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = endpoints_file(tmp_path, cds_services="http://127.0.0.1:1/cds-services", ehr=EHR)
    with pytest.raises(SystemExit) as exited:
        main(["hook", "patient-view", "--patient", "p-1", "--endpoints-file", path])
    assert exited.value.code == 2
    assert "ehr_client_issuer, ehr_client_key" in capsys.readouterr().err


def test_a_missing_key_is_a_failed_call(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = endpoints_file(
        tmp_path,
        cds_services="http://127.0.0.1:1/cds-services",
        ehr=EHR,
        ehr_client_issuer="http://127.0.0.1:2",
        ehr_client_key=str(tmp_path / "gone.pem"),
    )
    assert main(["hook", "patient-view", "--patient", "p-1", "--endpoints-file", path]) == 1
    assert "cannot read the sandbox EHR's key" in capsys.readouterr().err


async def test_prefetch_templates_are_filled_from_the_ehr() -> None:
    asked: list[str] = []

    def ehr(request: httpx.Request) -> httpx.Response:
        asked.append(str(request.url))
        if request.url.path.endswith("/Patient/p-1"):
            return httpx.Response(200, json={"resourceType": "Patient", "id": "p-1"})
        return httpx.Response(404)

    templates = {
        "patient": "Patient/{{context.patientId}}",
        "user": "Practitioner/{{userPractitionerId}}",
    }
    context = {"patientId": "p-1", "userId": "Practitioner/dr-1"}
    async with httpx.AsyncClient(transport=httpx.MockTransport(ehr)) as http:
        found = await prefetched(http, EHR, templates, context)

    assert found == {"patient": {"resourceType": "Patient", "id": "p-1"}, "user": None}
    assert asked == [f"{EHR}/Patient/p-1", f"{EHR}/Practitioner/dr-1"]
