"""`cdsflow hook`: bad usage exits 2 before anything is called; each hook's request is one the
writeback's own parser accepts; the service is chosen from discovery; `prefetch` is filled
from the EHR as an EHR fills it. The call itself against a running `up`: tests/e2e/test_cli.py;
an order-sign against a writeback scoring on Triton: tests/integration/test_hook_command.py."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from cdsflow.runtime.cli import main
from cdsflow.runtime.hook_command import (
    HOOKS,
    BadUsage,
    chosen_service,
    hook_request,
    prefetched,
    read_draft_order,
)
from cdsflow.writeback.domain.hook_requests import hook_request as parsed_hook_request

EHR = "http://127.0.0.1:8080/fhir"


def endpoints_file(tmp_path: Path, **endpoints: str) -> str:
    path = tmp_path / "endpoints.json"
    path.write_text(json.dumps(endpoints))
    return str(path)


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["patient-view"], "--patient"),
        (["order-dispatch", "--patient", "p-1"], "invalid choice"),
        (["encounter-start", "--patient", "p-1", "--endpoints-file", "x"], "--encounter"),
        (
            ["patient-view", "--patient", "p-1", "--encounter", "../e", "--endpoints-file", "x"],
            "FHIR resource id",
        ),
        (["order-sign", "--patient", "p-1", "--endpoints-file", "x"], "--draft-order"),
        (["order-select", "--patient", "p-1", "--endpoints-file", "x"], "--draft-order"),
        (
            [
                "patient-view",
                "--patient",
                "p-1",
                "--draft-order",
                "d.json",
                "--endpoints-file",
                "x",
            ],
            "order-select and order-sign only",
        ),
        (
            [
                *("order-sign", "--patient", "p-1", "--draft-order", "/nonexistent.json"),
                *("--endpoints-file", "x"),
            ],
            "cannot read the draft order file",
        ),
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


METFORMIN = {
    "resourceType": "MedicationRequest",
    "id": "draft-metformin-1",
    "status": "draft",
    "intent": "order",
    "subject": {"reference": "Patient/p-1"},
}


@pytest.mark.parametrize("hook", HOOKS)
def test_each_hooks_request_is_one_the_writeback_accepts(hook: str) -> None:
    drafts = [METFORMIN] if hook in {"order-select", "order-sign"} else []
    encounter = "e-1" if hook == "encounter-start" else None

    body = hook_request(hook, "p-1", EHR, encounter_id=encounter, drafts=drafts)

    parsed = parsed_hook_request(body, hook=hook, allow_loopback_http=True)
    assert parsed.hook == hook
    assert parsed.patient_id == "p-1"
    assert parsed.fhir_server == EHR
    assert parsed.user_id == "Practitioner/demo-clinician"
    assert parsed.encounter_id == encounter
    assert parsed.draft_orders == tuple(drafts)
    expected = ("MedicationRequest/draft-metformin-1",) if hook == "order-select" else ()
    assert parsed.selections == expected


def test_order_select_selects_every_draft_order_and_an_encounter_is_optional() -> None:
    second = {"resourceType": "ServiceRequest", "id": "draft-lab-1", "status": "draft"}

    body = hook_request("order-select", "p-1", EHR, encounter_id="e-2", drafts=[METFORMIN, second])

    context = body["context"]
    assert context["selections"] == [
        "MedicationRequest/draft-metformin-1",
        "ServiceRequest/draft-lab-1",
    ]
    assert context["draftOrders"]["resourceType"] == "Bundle"
    assert [e["resource"] for e in context["draftOrders"]["entry"]] == [METFORMIN, second]
    assert context["encounterId"] == "e-2"
    assert hook_request("patient-view", "p-1", EHR)["context"].keys() == {"userId", "patientId"}
    assert body["hookInstance"] != hook_request("order-select", "p-1", EHR)["hookInstance"]


def test_a_draft_order_file_is_read_and_given_an_id_when_it_has_none(tmp_path: Path) -> None:
    with_id, without_id = tmp_path / "a.json", tmp_path / "b.json"
    with_id.write_text(json.dumps(METFORMIN))
    without_id.write_text(json.dumps({"resourceType": "MedicationRequest", "status": "draft"}))

    assert read_draft_order(with_id) == METFORMIN
    given = read_draft_order(without_id)["id"]
    assert isinstance(given, str)
    assert given
    assert read_draft_order(without_id)["id"] != given


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"{not json", "cannot read the draft order file"),
        (b"\xff\xfe", "cannot read the draft order file"),
        (b"[1, 2]", "not a FHIR resource"),
        (b'{"status": "draft"}', "not a FHIR resource"),
        (b'{"resourceType": "Bundle", "type": "collection"}', "is a Bundle"),
        (b'{"resourceType": "MedicationRequest", "id": "a/b"}', "not a FHIR resource id"),
    ],
)
def test_an_unusable_draft_order_file_is_bad_usage(
    tmp_path: Path, content: bytes, message: str
) -> None:
    path = tmp_path / "draft.json"
    path.write_bytes(content)
    with pytest.raises(BadUsage, match=message):
        read_draft_order(path)


def test_a_bad_draft_order_file_exits_2_from_the_command(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    draft = tmp_path / "draft.json"
    draft.write_text("[]")
    arguments = ["order-sign", "--patient", "p-1", "--draft-order", str(draft)]
    with pytest.raises(SystemExit) as exited:
        main(["hook", *arguments, "--endpoints-file", "x"])
    assert exited.value.code == 2
    assert "not a FHIR resource" in capsys.readouterr().err


DISCOVERED = [
    {"hook": "patient-view", "id": "deterioration"},
    {"hook": "order-select", "id": "meds-select"},
    {"hook": "order-sign", "id": "meds-sign"},
    {"hook": "patient-view", "id": "meds"},
]


def test_the_service_is_the_first_discovered_for_the_hook_or_the_one_named() -> None:
    assert chosen_service(DISCOVERED, "patient-view", None)["id"] == "deterioration"
    assert chosen_service(DISCOVERED, "order-sign", None)["id"] == "meds-sign"
    assert chosen_service(DISCOVERED, "patient-view", "meds")["id"] == "meds"


@pytest.mark.parametrize(
    ("hook", "service", "message"),
    [
        ("encounter-start", None, "no CDS service answers encounter-start"),
        ("order-sign", "nope", "no CDS service 'nope' (for order-sign: meds-sign)"),
        ("order-sign", "meds", "answers patient-view, not order-sign"),
    ],
)
def test_a_service_discovery_does_not_offer_for_the_hook_is_bad_usage(
    hook: str, service: str | None, message: str
) -> None:
    with pytest.raises(BadUsage) as refused:
        chosen_service(DISCOVERED, hook, service)
    assert message in str(refused.value)


async def test_the_order_hooks_prefetch_resolves_each_context_token_and_leaves_out_the_rest() -> (
    None
):
    asked: list[str] = []

    def ehr(request: httpx.Request) -> httpx.Response:
        asked.append(str(request.url))
        return httpx.Response(200, json={"resourceType": "Bundle", "type": "searchset"})

    templates = {
        "egfr": "Observation?patient={{context.patientId}}&code=http://loinc.org|33914-3",
        "encounter": "Encounter/{{ context.encounterId }}",
        "role": "PractitionerRole/{{userPractitionerRoleId}}",
        "meds": "MedicationRequest?patient={{context.patientId}}&status=active",
    }
    context = hook_request("order-sign", "p-1", EHR, drafts=[METFORMIN])["context"]
    async with httpx.AsyncClient(transport=httpx.MockTransport(ehr)) as http:
        found = await prefetched(http, EHR, templates, context)

    assert set(found) == {"egfr", "meds"}
    assert asked == [
        f"{EHR}/Observation?patient=p-1&code=http://loinc.org|33914-3",
        f"{EHR}/MedicationRequest?patient=p-1&status=active",
    ]
    context["encounterId"] = "e-1"
    async with httpx.AsyncClient(transport=httpx.MockTransport(ehr)) as http:
        assert "encounter" in await prefetched(http, EHR, templates, context)
    assert f"{EHR}/Encounter/e-1" in asked


async def test_three_point_zero_fhirpath_tokens_are_filled_in_order_from_what_came_before() -> None:
    asked: list[str] = []
    patient = {
        "resourceType": "Patient",
        "id": "p-1",
        "generalPractitioner": [{"reference": "Practitioner/gp-1"}],
    }

    def ehr(request: httpx.Request) -> httpx.Response:
        asked.append(str(request.url))
        if request.url.path.endswith("/Patient/p-1"):
            return httpx.Response(200, json=patient)
        return httpx.Response(200, json={"resourceType": "Bundle", "type": "searchset"})

    templates = {
        "labs": "Observation?patient={{context.patientId}}&date=gt{{today() - 90 days}}",
        "drafts": "MedicationRequest?_id={{context.draftOrders.entry.resource"
        ".ofType(MedicationRequest).id | context.patientId}}",
        "patient": "Patient/{{context.patientId}}",
        "gp": "Practitioner?_id={{%patient.generalPractitioner.resolve().ofType(Practitioner).id}}",
    }
    context = hook_request("order-sign", "p-1", EHR, drafts=[METFORMIN])["context"]
    before = datetime.now(UTC).date()
    async with httpx.AsyncClient(transport=httpx.MockTransport(ehr)) as http:
        found = await prefetched(http, EHR, templates, context)
    after = datetime.now(UTC).date()

    assert list(found) == ["labs", "drafts", "patient", "gp"]
    assert asked[0] in {
        f"{EHR}/Observation?patient=p-1&date=gt{day - timedelta(days=90)}"
        for day in (before, after)
    }
    assert asked[1:] == [
        f"{EHR}/MedicationRequest?_id=draft-metformin-1,p-1",
        f"{EHR}/Patient/p-1",
        f"{EHR}/Practitioner?_id=gp-1",
    ]
    assert found["patient"] == patient


async def test_a_fhirpath_token_yielding_nothing_is_null_and_an_unresolvable_one_left_out() -> None:
    asked: list[str] = []

    def ehr(request: httpx.Request) -> httpx.Response:
        asked.append(str(request.url))
        return httpx.Response(200, json={"resourceType": "Bundle", "type": "searchset"})

    templates = {
        # the draft is a MedicationRequest: no ServiceRequest, so it would match nothing
        "services": "ServiceRequest?_id={{context.draftOrders.entry.resource"
        ".ofType(ServiceRequest).id}}",
        # reads a key that is not before it
        "roles": "PractitionerRole?_id={{%later.entry.resource.id}}",
        "later": "Condition?patient={{context.patientId}}",
        "broken": "Condition?_id={{context.draftOrders.entry.resource.id.foo(}}",
    }
    context = hook_request("order-sign", "p-1", EHR, drafts=[METFORMIN])["context"]
    async with httpx.AsyncClient(transport=httpx.MockTransport(ehr)) as http:
        found = await prefetched(http, EHR, templates, context)

    assert found == {"services": None, "later": {"resourceType": "Bundle", "type": "searchset"}}
    assert asked == [f"{EHR}/Condition?patient=p-1"]
