"""Every hook's request examples in the pack (Hook Library 1.0.1 and 2.0.0 contexts, the 3.0
ballot's requests, the CDS Hooks docs' and Da Vinci CRD's) against the writeback's per-hook
request rules; our cards, discovery and 412 answers against the logical models' required
members, the checklist's invariants and the ballot's OperationOutcome example."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from cdsflow.models import build_model_inputs, load_adapter
from cdsflow.models.recommendation_messages import RecommendationSubject
from cdsflow.runtime.story import vital_sign_observation
from cdsflow.writeback.adapter_files import configured_adapters
from cdsflow.writeback.domain.cards import cards_for
from cdsflow.writeback.domain.discovery import adapter_services, discovery_document
from cdsflow.writeback.domain.hook_requests import HOOKS, InvalidHookRequest, hook_request
from cdsflow.writeback.handlers import problem_response
from tests.conftest import REPO_ROOT
from tests.support.risk_model import scored_recommendation

pytestmark = pytest.mark.conformance

EXAMPLES = Path("cds-hooks/examples")
LOGICAL_MODELS = Path("cds-hooks/logical-models/fhir-tools-ig")
# (file, hook) for each context example of a hook the writeback serves
CONTEXT_EXAMPLES = [
    ("hooks-library-1.0.1/patient-view-context-1.json", "patient-view"),
    ("hooks-library-1.0.1/patient-view-context-2.json", "patient-view"),
    ("hooks-library-1.0.1/encounter-start-context.json", "encounter-start"),
    ("hooks-library-1.0.1/order-select-context-r4.json", "order-select"),
    ("hooks-library-1.0.1/order-select-context-stu3.json", "order-select"),
    ("hooks-library-1.0.1/order-select-context-dstu2.json", "order-select"),
    ("hooks-library-1.0.1/order-sign-context-r4.json", "order-sign"),
    ("hooks-library-1.0.1/order-sign-context-stu3.json", "order-sign"),
    ("hooks-library-1.0.1/order-sign-context-dstu2.json", "order-sign"),
    ("hooks-library-2.0.0-cibuild/order-select-context-r4.json", "order-select"),
    ("hooks-library-2.0.0-cibuild/order-sign-context-r4.json", "order-sign"),
    ("spec-3.0.0-ballot/prefetch-fhirpath-context-order-sign.json", "order-sign"),
]
FULL_REQUESTS = [
    "spec-3.0.0-ballot/prefetch-pagination-order-sign-request.json",
    "cds-hooks-docs/radiology-order-select-request.json",
    "davinci-crd-2.2.1/CRDServiceRequest.json",
]


def example(conformance_dir: Path, name: str) -> Any:
    return json.loads((conformance_dir / EXAMPLES / name).read_text())


def over_https(request: dict[str, Any]) -> dict[str, Any]:
    """As published, some examples name an http fhirServer; real data needs https."""
    if isinstance(request.get("fhirServer"), str):
        request["fhirServer"] = request["fhirServer"].replace("http://", "https://")
    return request


@pytest.mark.parametrize(("name", "hook"), CONTEXT_EXAMPLES)
def test_each_hook_context_example_is_accepted_by_its_service(
    conformance_dir: Path, name: str, hook: str
) -> None:
    context = example(conformance_dir, name)["context"]
    request = {"hook": hook, "hookInstance": "d1577c69-dfbe-44ad-ba6d-3e05e953b2ea"}

    parsed = hook_request({**request, "context": context}, hook=hook)

    assert parsed.patient_id == context["patientId"]
    if hook in ("order-select", "order-sign"):
        assert len(parsed.draft_orders) == len(context["draftOrders"]["entry"])
    if hook == "order-select":
        assert parsed.selections == tuple(context["selections"])


@pytest.mark.parametrize("name", FULL_REQUESTS)
def test_full_request_examples_with_3_0_members_are_accepted(
    conformance_dir: Path, name: str
) -> None:
    request = over_https(example(conformance_dir, name))

    parsed = hook_request(request, hook=request["hook"])

    assert parsed.hook == request["hook"] in HOOKS
    assert parsed.prefetch == request.get("prefetch", {})


def test_the_pre_1_0_order_sign_request_without_draft_orders_is_refused(
    conformance_dir: Path,
) -> None:
    request = over_https(
        example(conformance_dir, "cds-hooks-docs/opioid-order-sign-request-legacy-dstu2.json")
    )

    with pytest.raises(InvalidHookRequest, match="draftOrders"):
        hook_request(request, hook="order-sign")


def test_a_context_example_sent_to_another_hooks_service_is_refused(
    conformance_dir: Path,
) -> None:
    context = example(conformance_dir, "hooks-library-1.0.1/patient-view-context-1.json")
    request = {"hook": "patient-view", "hookInstance": "h", "context": context["context"]}

    with pytest.raises(InvalidHookRequest, match="answers the 'order-sign' hook only"):
        hook_request(request, hook="order-sign")


def missing_required(logical_model: dict[str, Any], document: Any) -> list[str]:
    """The paths of the logical model's required members (min >= 1) missing in `document`,
    for every instance of their parent."""
    elements = (logical_model.get("snapshot") or logical_model["differential"])["element"]
    missing = []
    for element in elements:
        path = element["path"]
        if element.get("min", 0) < 1 or "." not in path:
            continue
        *parents, member = path.split(".")[1:]
        for parent in _instances(document, parents):
            if isinstance(parent, dict) and member not in parent:
                missing.append(path)
    return missing


def required_paths(logical_model: dict[str, Any]) -> set[str]:
    elements = (logical_model.get("snapshot") or logical_model["differential"])["element"]
    return {element["path"] for element in elements if element.get("min", 0) >= 1}


def _instances(document: Any, steps: list[str]) -> list[Any]:
    found = [document]
    for step in steps:
        found = [
            item
            for node in found
            if isinstance(node, dict) and step in node
            for item in (node[step] if isinstance(node[step], list) else [node[step]])
        ]
    return found


def logical_model(conformance_dir: Path, name: str) -> dict[str, Any]:
    path = conformance_dir / LOGICAL_MODELS / f"structuredefinition-{name}.json"
    loaded: dict[str, Any] = json.loads(path.read_text())
    return loaded


def high_risk_cards() -> list[dict[str, Any]]:
    """The deterioration adapter's cards for a high score, as the writeback serves them."""
    adapter = load_adapter(REPO_ROOT / "adapters" / "deterioration-risk.yaml")
    as_of = datetime.now(UTC)
    resources = [vital_sign_observation("Patient/p-1", as_of, "9279-1", value=30, ucum="/min")]
    inputs = build_model_inputs(adapter, resources, as_of)
    recommendation = scored_recommendation(
        adapter,
        inputs,
        0.6,
        0.4,
        RecommendationSubject(
            event_id="hook-instance-1",
            patient_key="k",
            patient_reference="Patient/p-1",
            ehr_base_url="https://ehr.example.org/fhir",
            produced_at=as_of,
            trace_id="0af7651916cd43dd8448eb211c80319c",
        ),
    )
    return cards_for(recommendation)


def test_our_cards_have_every_member_the_response_model_requires(conformance_dir: Path) -> None:
    response = {"cards": high_risk_cards()}

    model = logical_model(conformance_dir, "CDSHooksResponse")
    assert len(response["cards"]) == 2
    assert "CDSHooksResponse.cards.suggestions.actions.type" in required_paths(model)
    assert missing_required(model, response) == []


def test_our_cards_keep_the_checklists_invariants() -> None:
    for card in high_risk_cards():
        assert len(card["summary"]) < 140
        assert card["indicator"] in {"info", "warning", "critical"}
        assert card["uuid"]
        assert isinstance(card["extension"], dict)  # req. 4: an object, reverse-domain keys
        assert all("." in key for key in card["extension"])
        for reason in card.get("overrideReasons", []):
            assert reason["display"]  # cds-resp-4
        for link in card.get("links", []):
            assert link["type"] in {"absolute", "smart"}
            assert "appContext" not in link or link["type"] == "smart"  # cds-resp-3
            assert link["url"].startswith("https://")
        if "suggestions" in card:
            assert card["selectionBehavior"] in {"at-most-one", "any"}  # cds-resp-6
            if card["selectionBehavior"] == "at-most-one":  # cds-resp-1
                assert sum(s["isRecommended"] for s in card["suggestions"]) <= 1
            for suggestion in card["suggestions"]:
                assert suggestion["uuid"]  # req. 25: echoed in feedback
                for action in suggestion["actions"]:
                    assert action["description"]  # cds-resp-5
                    assert action["type"] in {"create", "update", "delete"}


def test_discovery_of_the_shipped_adapters_has_what_the_services_model_requires(
    conformance_dir: Path,
) -> None:
    adapters = configured_adapters(str(REPO_ROOT / "adapters"))
    document = discovery_document(adapter_services(adapters))
    # the logical model writes the JSON object `prefetch` as key/value pairs
    as_modelled = json.loads(json.dumps(document))
    for service in as_modelled["services"]:
        if "prefetch" in service:
            service["prefetch"] = [{"key": k, "value": v} for k, v in service["prefetch"].items()]

    assert missing_required(logical_model(conformance_dir, "CDSHooksServices"), as_modelled) == []
    assert {service["hook"] for service in document["services"]} <= set(HOOKS)


def test_our_412_has_the_shape_of_the_ballots_missing_prefetch_example(
    conformance_dir: Path,
) -> None:
    example_outcome = example(
        conformance_dir, "spec-3.0.0-ballot/operationoutcome-412-missing-prefetch.json"
    )
    ours = json.loads(
        bytes(problem_response(412, "processing", "prefetch 'egfr' not provided").body)
    )

    assert ours["resourceType"] == example_outcome["resourceType"] == "OperationOutcome"
    [issue] = ours["issue"]
    [example_issue] = example_outcome["issue"]
    assert (issue["severity"], issue["code"]) == (
        example_issue["severity"],
        example_issue["code"],
    )
    assert issue["diagnostics"]
