"""The CDS Hooks 2.0.1 spec's request and discovery examples (pack: cds-hooks/examples/spec-2.0.1)
against the writeback's request rules and discovery document."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from cdsflow.writeback.domain.discovery import DETERIORATION_SERVICE, discovery_document
from cdsflow.writeback.domain.hook_requests import InvalidHookRequest, parse_hook_request

pytestmark = pytest.mark.conformance

SPEC_EXAMPLES = Path("cds-hooks/examples/spec-2.0.1")


def spec_example(conformance_dir: Path, name: str) -> Any:
    return json.loads((conformance_dir / SPEC_EXAMPLES / name).read_text())


def test_the_spec_patient_view_request_is_accepted_over_https(conformance_dir: Path) -> None:
    example = spec_example(conformance_dir, "hook-request-patient-view.json")
    # as published, its fhirServer is plain http; CDS Hooks 2.0 requires https for real data
    with pytest.raises(InvalidHookRequest, match="'fhirServer' must be an https URL"):
        parse_hook_request(json.dumps(example).encode())

    example["fhirServer"] = example["fhirServer"].replace("http://", "https://")
    request = parse_hook_request(json.dumps(example).encode())

    assert request.patient_id == "1288992"
    assert request.patient_reference == "Patient/1288992"
    assert request.hook_instance == "d1577c69-dfbe-44ad-ba6d-3e05e953b2ea"
    assert request.user_id == "Practitioner/example"
    assert request.encounter_id == "89284"
    assert request.fhir_server == "https://hooks.smarthealthit.org:9080"


def test_discovery_has_the_shape_of_the_spec_example(conformance_dir: Path) -> None:
    example = spec_example(conformance_dir, "discovery-response.json")
    ours = discovery_document((DETERIORATION_SERVICE,))

    assert ours.keys() == example.keys() == {"services"}
    example_members = set().union(*(service.keys() for service in example["services"]))
    (service,) = ours["services"]
    assert {"hook", "id", "description"} <= service.keys() <= example_members
    assert all(isinstance(value, str) and value for value in service.values())
    assert service["id"] == "cdsflow-deterioration"
    assert service["hook"] == "patient-view"
    assert service["title"]
