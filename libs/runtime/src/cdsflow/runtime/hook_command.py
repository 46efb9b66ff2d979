"""`cdsflow hook HOOK --patient ID`: call a CDS service of a running `cdsflow up` as its
sandbox EHR would, and print the service's JSON answer on stdout.

Hooks: `patient-view`, `order-select`, `order-sign`, `encounter-start` (the Hook Library
1.0.1 contexts the writeback answers). The service is `--service`, else the first service of
that hook in the discovery document (`GET /cds-services`). The request is what an EHR sends:
a fresh `hookInstance`, `fhirServer` (the EHR), and the hook's context: `userId`,
`patientId`, `encounterId` (`--encounter`: required for `encounter-start`, optional
elsewhere), and for the order hooks `draftOrders`, a collection Bundle of the
`--draft-order` files (each a FHIR resource; one without an `id` is given one), with `selections`
naming every one of them for `order-select`. The service's declared `prefetch` is read from
the EHR (with the services' EHR auth, `CDSFLOW_EHR_AUTH`: see `ehr_setup`), each template's
tokens resolved from the context by the writeback's own rules
(`cdsflow.fhir.prefetch_tokens`): CDS Hooks 2.0 tokens (`{{context.patientId}}`,
`{{userPractitionerId}}`, ...) and 3.0 FHIRPath ones (`{{today() - 90 days}}`,
`{{context.draftOrders...resolve().id}}`, and `{{%key...}}` reading what an earlier template
of the service was filled with). A template that cannot be resolved is left out, as an EHR
leaves out what it cannot fill; one whose FHIRPath yields nothing (it would match nothing)
is sent as null. The request is signed with the sandbox EHR's key (its path is in the
endpoints file that `up --endpoints-file` wrote).

Exit codes: 0 answered (2xx), 1 the call failed or was refused (a message on stderr), 2 bad
usage: an unknown hook, a service that is not in discovery or answers another hook, no
service for the hook, a missing `--encounter` or `--draft-order`, an unreadable draft order
file, or an endpoints file not written by `up`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import httpx

from cdsflow.fhir import FHIR_JSON, is_fhir_id
from cdsflow.runtime.ehr_setup import EhrAuthMisconfigured, ehr_http_client
from cdsflow.runtime.sandbox_ehr_client import HookSigningKey, call_service

PATIENT_VIEW = "patient-view"
ORDER_SELECT = "order-select"
ORDER_SIGN = "order-sign"
ENCOUNTER_START = "encounter-start"
HOOKS = (PATIENT_VIEW, ORDER_SELECT, ORDER_SIGN, ENCOUNTER_START)
ORDER_HOOKS = frozenset({ORDER_SELECT, ORDER_SIGN})
USER_ID = "Practitioner/demo-clinician"
NEEDED = ("cds_services", "ehr", "ehr_client_issuer", "ehr_client_key")


def add_hook_command(commands: Any) -> None:
    """The `hook` subcommand's arguments (`commands`: the parser's subparsers)."""
    hook = commands.add_parser(
        "hook",
        help="call a CDS service as the sandbox EHR of `up`; prints the JSON answer",
        epilog="exit codes: 0 answered; 1 the call failed or was refused; 2 bad usage (an "
        "unknown hook or service, a missing --encounter or --draft-order, an unreadable "
        "draft order file)",
    )
    hook.add_argument("hook", choices=HOOKS, help="the hook to call")
    hook.add_argument("--patient", required=True, help="the patient's FHIR id in the EHR")
    hook.add_argument(
        "--endpoints-file",
        type=Path,
        default=os.environ.get("CDSFLOW_ENDPOINTS_FILE"),
        help="the file that `cdsflow up --endpoints-file` wrote (or CDSFLOW_ENDPOINTS_FILE)",
    )
    hook.add_argument(
        "--service",
        help="the CDS service id (default: the first discovered service for the hook)",
    )
    hook.add_argument(
        "--encounter",
        help="the encounter's FHIR id (context.encounterId; required for encounter-start)",
    )
    hook.add_argument(
        "--draft-order",
        action="append",
        type=Path,
        default=[],
        metavar="FILE",
        help="a FHIR resource (JSON) being ordered, for order-select and order-sign "
        "(repeatable; context.draftOrders, and order-select's selections)",
    )


class BadUsage(Exception):
    """What the user asked cannot be called (exit 2)."""


class HookCallFailed(Exception):
    pass


def run_hook(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    if args.endpoints_file is None:
        parser.error("give --endpoints-file: the file that `cdsflow up --endpoints-file` wrote")
    if not is_fhir_id(args.patient):
        parser.error("--patient must be a FHIR resource id")
    if args.encounter is not None and not is_fhir_id(args.encounter):
        parser.error("--encounter must be a FHIR resource id")
    if args.hook == ENCOUNTER_START and args.encounter is None:
        parser.error("encounter-start needs --encounter")
    if args.hook in ORDER_HOOKS and not args.draft_order:
        parser.error(f"{args.hook} needs at least one --draft-order FILE")
    if args.hook not in ORDER_HOOKS and args.draft_order:
        parser.error("--draft-order is for order-select and order-sign only")
    try:
        drafts = [read_draft_order(path) for path in args.draft_order]
    except BadUsage as exc:
        parser.error(str(exc))
    try:
        endpoints = json.loads(Path(args.endpoints_file).read_text())
    except (OSError, ValueError) as exc:
        parser.error(f"cannot read the endpoints file {args.endpoints_file}: {exc}")
    missing = [name for name in NEEDED if not isinstance(endpoints.get(name), str)]
    if missing:
        parser.error(f"the endpoints file lacks {', '.join(missing)}: was it written by `up`?")
    try:
        key = HookSigningKey.load(Path(endpoints["ehr_client_key"]), endpoints["ehr_client_issuer"])
    except (OSError, ValueError) as exc:
        print(f"cdsflow hook: cannot read the sandbox EHR's key: {exc}", file=sys.stderr)
        return 1
    request = hook_request(
        args.hook, args.patient, endpoints["ehr"], encounter_id=args.encounter, drafts=drafts
    )
    try:
        answer = asyncio.run(_call(endpoints, args.service, request, key))
    except BadUsage as exc:
        print(f"cdsflow hook: {exc}", file=sys.stderr)
        return 2
    except (httpx.HTTPError, HookCallFailed, EhrAuthMisconfigured) as exc:
        print(f"cdsflow hook: {_describe(exc)}", file=sys.stderr)
        return 1
    print(json.dumps(answer, indent=2))
    return 0


def read_draft_order(path: Path) -> dict[str, Any]:
    """A `--draft-order` file: one FHIR resource (JSON object with a `resourceType`), given a
    fresh `id` when it has none; `BadUsage` when it cannot be read or is not one."""
    try:
        resource = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise BadUsage(f"cannot read the draft order file {path}: {exc}") from None
    if not isinstance(resource, dict) or not isinstance(resource.get("resourceType"), str):
        raise BadUsage(f"the draft order file {path} is not a FHIR resource (no resourceType)")
    if resource["resourceType"] == "Bundle":
        raise BadUsage(f"the draft order file {path} is a Bundle: give each order as a file")
    if "id" not in resource:
        resource["id"] = str(uuid.uuid4())
    elif not isinstance(resource["id"], str) or not is_fhir_id(resource["id"]):
        raise BadUsage(f"the draft order in {path} has an id that is not a FHIR resource id")
    return resource


def hook_request(
    hook: str,
    patient_id: str,
    ehr_base_url: str,
    *,
    encounter_id: str | None = None,
    drafts: Sequence[dict[str, Any]] = (),
) -> dict[str, Any]:
    """A CDS Hooks 2.0 request for `hook`, as an EHR sends it (prefetch not filled yet)."""
    context: dict[str, Any] = {"userId": USER_ID, "patientId": patient_id}
    if encounter_id is not None:
        context["encounterId"] = encounter_id
    if hook == ORDER_SELECT:
        context["selections"] = [f"{d['resourceType']}/{d['id']}" for d in drafts]
    if hook in ORDER_HOOKS:
        context["draftOrders"] = {
            "resourceType": "Bundle",
            "type": "collection",
            "entry": [{"resource": draft} for draft in drafts],
        }
    return {
        "hookInstance": str(uuid.uuid4()),
        "hook": hook,
        "fhirServer": ehr_base_url,
        "context": context,
    }


def chosen_service(services: Any, hook: str, service_id: str | None) -> dict[str, Any]:
    """The discovery entry to call: `service_id`'s (it must answer `hook`), else the first
    entry for `hook`; `BadUsage` naming what discovery holds otherwise."""
    entries = [s for s in services if isinstance(s, dict)] if isinstance(services, list) else []
    if service_id is None:
        found = next((s for s in entries if s.get("hook") == hook), None)
        if found is None:
            offered = sorted({str(s.get("hook")) for s in entries})
            raise BadUsage(f"no CDS service answers {hook} (discovered: {', '.join(offered)})")
        return found
    found = next((s for s in entries if s.get("id") == service_id), None)
    if found is None:
        ids = ", ".join(str(s.get("id")) for s in entries if s.get("hook") == hook)
        raise BadUsage(f"no CDS service {service_id!r} (for {hook}: {ids or 'none'})")
    if found.get("hook") != hook:
        raise BadUsage(f"the CDS service {service_id!r} answers {found.get('hook')}, not {hook}")
    return found


def _describe(exc: Exception) -> str:
    if isinstance(exc, (HookCallFailed, EhrAuthMisconfigured)):
        return str(exc)
    return f"the call failed ({type(exc).__name__}: {exc})"


async def _call(
    endpoints: dict[str, Any],
    service_id: str | None,
    request: dict[str, Any],
    key: HookSigningKey,
) -> Any:
    cds_services, ehr = endpoints["cds_services"], endpoints["ehr"]
    async with httpx.AsyncClient(timeout=30) as http, ehr_http_client(ehr, 30) as ehr_http:
        discovery = await http.get(cds_services)
        if not discovery.is_success:
            raise HookCallFailed(f"discovery at {cds_services} answered {discovery.status_code}")
        try:
            services = discovery.json().get("services")
        except (ValueError, AttributeError):
            raise HookCallFailed(f"discovery at {cds_services} is not a JSON object") from None
        service = chosen_service(services, request["hook"], service_id)
        templates = service.get("prefetch") or {}
        if isinstance(templates, dict) and templates:
            request["prefetch"] = await prefetched(ehr_http, ehr, templates, request["context"])
        response = await call_service(http, f"{cds_services}/{service['id']}", request, key)
    if not response.is_success:
        raise HookCallFailed(f"the service answered {response.status_code}: {response.text}")
    try:
        return response.json()
    except ValueError:
        raise HookCallFailed("the service's answer is not JSON") from None


async def prefetched(
    http: httpx.AsyncClient, ehr: str, templates: Mapping[str, str], context: Mapping[str, Any]
) -> dict[str, Any]:
    """Each template's query run against the EHR, in the templates' order, as an EHR fills
    `prefetch`: null where the EHR has no answer or a FHIRPath token yields nothing, left out
    where a token cannot be resolved from the context or from the keys filled before it (the
    service then fetches it itself, or answers 412)."""
    # here, not at the top: FHIRPath (fhirpathpy) is loaded by `hook` only, not by every
    # command of the CLI
    from cdsflow.fhir.prefetch_tokens import UnresolvableToken, resolved_template

    found: dict[str, Any] = {}
    for name, template in templates.items():
        at_hand = {key: value for key, value in found.items() if value is not None}
        try:
            query = resolved_template(template, context, at_hand)
        except UnresolvableToken:
            continue
        if query is None:
            found[name] = None
            continue
        response = await http.get(f"{ehr}/{query}", headers={"Accept": FHIR_JSON})
        found[name] = response.json() if response.is_success else None
    return found
