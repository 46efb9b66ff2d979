"""The pack's 3.0 prefetch examples: FHIRPath tokens (relative dates, `ofType`, `resolve()`,
`%key` chains, unions) resolved from the ballot's order-sign context and Da Vinci CRD's
templates, and the ballot's paginated prefetch seen as incomplete."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from cdsflow.writeback.domain.hook_requests import HookRequest, hook_request
from cdsflow.writeback.domain.prefetch import prefetch_plan
from cdsflow.writeback.domain.prefetch_tokens import resolved_template
from tests.conformance.test_cds_hooks_hook_examples import example, over_https

pytestmark = pytest.mark.conformance

BALLOT = "spec-3.0.0-ballot"


def templates(conformance_dir: Path, name: str) -> dict[str, str]:
    loaded: dict[str, str] = example(conformance_dir, f"{BALLOT}/{name}")["prefetch"]
    return loaded


def ballot_order_sign(conformance_dir: Path) -> HookRequest:
    context = example(conformance_dir, f"{BALLOT}/prefetch-fhirpath-context-order-sign.json")
    body = {"hook": "order-sign", "hookInstance": "h-1", **context}
    return hook_request(body, hook="order-sign")


def days_from_today(days: int) -> set[str]:
    """Today's date (UTC) plus `days`; taken before and after the call, so that a run over
    midnight accepts either."""
    return {(datetime.now(UTC).date() + timedelta(days=days)).isoformat()}


def test_relative_dates(conformance_dir: Path) -> None:
    [template] = templates(
        conformance_dir, "prefetch-template-fhirpath-relative-dates.json"
    ).values()
    call = ballot_order_sign(conformance_dir)
    before = days_from_today(-90)

    query = resolved_template(template, call)

    after = days_from_today(-90)
    assert query in {
        f"Observation?patient=eXoGxqgBaJuNkuahMYmiDhg3&category=laboratory&date=gt{day}"
        for day in before | after
    }


def test_medications_prescriber_and_appointments(conformance_dir: Path) -> None:
    prefetch = templates(conformance_dir, "prefetch-template-fhirpath-meds-appointments.json")
    call = ballot_order_sign(conformance_dir)

    meds = resolved_template(prefetch["meds"], call)
    prescriber = resolved_template(prefetch["prescriber"], call)
    appointments = resolved_template(prefetch["appointments-upcoming"], call)

    assert meds == "Medication?_id=eVBXvKwrWZIkPmaGwY.s1hQ3,emvpHliA4OaUxXJ4wp6N.Ig3"
    assert prescriber is None  # the example's draft orders name no requester: nothing to fetch
    assert appointments is not None
    today = datetime.now(UTC).date()
    assert appointments.startswith(f"Appointment?patient=eXoGxqgBaJuNkuahMYmiDhg3&date=gt{today}")
    assert appointments.endswith(f"&date=lt{today + timedelta(days=365)}")


def test_a_chain_waits_for_the_keys_it_reads(conformance_dir: Path) -> None:
    prefetch = templates(conformance_dir, "prefetch-template-fhirpath-chained.json")
    call = ballot_order_sign(conformance_dir)
    conditions: dict[str, Any] = {
        "resourceType": "Bundle",
        "type": "searchset",
        "entry": [
            {
                "resource": {
                    "resourceType": "Condition",
                    "id": "c-1",
                    "asserter": {"reference": "PractitionerRole/role-1"},
                }
            }
        ],
    }
    roles: dict[str, Any] = {
        "resourceType": "Bundle",
        "type": "searchset",
        "entry": [
            {
                "resource": {
                    "resourceType": "PractitionerRole",
                    "id": "role-1",
                    "practitioner": {"reference": "Practitioner/pr-1"},
                }
            }
        ],
    }

    plan = prefetch_plan(prefetch, call)

    # the example's draft orders hold no ServiceRequest: its conditions match nothing
    assert plan.to_fetch == {"serviceConditions": None}
    assert plan.dependent == ("practitionerRoles", "practitioners")
    assert resolved_template(
        prefetch["practitionerRoles"], call, {"serviceConditions": conditions}
    ) == ("PractitionerRole?_id=role-1")
    assert resolved_template(prefetch["practitioners"], call, {"practitionerRoles": roles}) == (
        "Practitioner?_id=pr-1"
    )


def test_crd_encounter_start_templates_read_the_encounter_prefetched(
    conformance_dir: Path,
) -> None:
    services = example(conformance_dir, "davinci-crd-2.2.1/CRDServices.json")["services"]
    [prefetch] = [s["prefetch"] for s in services if s["hook"] == "encounter-start"]
    encounter: dict[str, Any] = {
        "resourceType": "Encounter",
        "id": "enc-1",
        "participant": [
            {"individual": {"reference": "PractitionerRole/role-1"}},
            {"individual": {"reference": "Practitioner/pr-2"}},
        ],
        "serviceProvider": {"reference": "Organization/org-1"},
    }
    call = HookRequest(
        hook_instance="h-1",
        patient_id="pat-1",
        hook="encounter-start",
        encounter_id="enc-1",
        context={"patientId": "pat-1", "encounterId": "enc-1"},
        prefetch={"encounter": encounter},
    )

    plan = prefetch_plan(prefetch, call)

    assert list(plan.provided) == ["encounter"]
    assert plan.to_fetch == {
        "patient": "Patient/pat-1",
        "coverage": "Coverage?patient=pat-1&status=active",
    }
    assert plan.dependent == ("practitionerRoles", "practitioners", "organizations", "locations")
    at_hand: dict[str, Any] = {"encounter": encounter}
    assert resolved_template(prefetch["practitionerRoles"], call, at_hand) == (
        "PractitionerRole?_id=role-1"
    )
    empty_roles = {"resourceType": "Bundle", "type": "searchset", "entry": []}
    at_hand["practitionerRoles"] = empty_roles
    assert resolved_template(prefetch["practitioners"], call, at_hand) == "Practitioner?_id=pr-2"
    assert resolved_template(prefetch["organizations"], call, at_hand) == ("Organization?_id=org-1")
    assert resolved_template(prefetch["locations"], call, at_hand) is None


def test_the_ballots_paginated_prefetch_is_incomplete(conformance_dir: Path) -> None:
    body = over_https(
        example(conformance_dir, f"{BALLOT}/prefetch-pagination-order-sign-request.json")
    )
    call = hook_request(body, hook="order-sign")

    plan = prefetch_plan({"orders": "MedicationRequest?patient={{context.patientId}}"}, call)

    assert list(plan.provided) == ["orders"]
    assert plan.incomplete == ("orders",)
