"""`cdsflow hook patient-view --patient ID`: call a CDS service of a running `cdsflow up` as
its sandbox EHR would, and print the service's JSON answer on stdout.

The request is what an EHR sends when a chart opens: a fresh `hookInstance`, `fhirServer`
(the EHR), `context.userId` and `context.patientId`, and the service's declared `prefetch`
read from the EHR (with the services' EHR auth, `CDSFLOW_EHR_AUTH`: see `ehr_setup`). It is
signed with the sandbox EHR's key (its path is in the endpoints file that
`up --endpoints-file` wrote). Exit codes: 0 answered (2xx), 1 the call failed or
was refused (a message on stderr), 2 bad usage.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import sys
from pathlib import Path
from typing import Any

import httpx

from cdsflow.fhir import FHIR_JSON, is_fhir_id
from cdsflow.runtime.ehr_setup import EhrAuthMisconfigured, ehr_http_client
from cdsflow.runtime.sandbox_ehr_client import HookSigningKey, call_service
from cdsflow.runtime.scenario import patient_view_request

HOOKS = ("patient-view",)
NEEDED = ("cds_services", "ehr", "ehr_client_issuer", "ehr_client_key")
_TOKEN = re.compile(r"\{\{\s*([A-Za-z.]+)\s*\}\}")


def add_hook_command(commands: Any, default_service: str) -> None:
    """The `hook` subcommand's arguments (`commands`: the parser's subparsers)."""
    hook = commands.add_parser(
        "hook", help="call a CDS service as the sandbox EHR of `up`; prints the JSON answer"
    )
    hook.add_argument("hook", choices=HOOKS, help="the hook to call")
    hook.add_argument("--patient", required=True, help="the patient's FHIR id in the EHR")
    hook.add_argument(
        "--endpoints-file",
        type=Path,
        default=os.environ.get("CDSFLOW_ENDPOINTS_FILE"),
        help="the file that `cdsflow up --endpoints-file` wrote (or CDSFLOW_ENDPOINTS_FILE)",
    )
    hook.add_argument("--service", default=default_service, help="the CDS service id")


def run_hook(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    if args.endpoints_file is None:
        parser.error("give --endpoints-file: the file that `cdsflow up --endpoints-file` wrote")
    if not is_fhir_id(args.patient):
        parser.error("--patient must be a FHIR resource id")
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
    try:
        answer = asyncio.run(_call(endpoints, args.service, args.patient, key))
    except (httpx.HTTPError, HookCallFailed, EhrAuthMisconfigured) as exc:
        print(f"cdsflow hook: {_describe(exc)}", file=sys.stderr)
        return 1
    print(json.dumps(answer, indent=2))
    return 0


class HookCallFailed(Exception):
    pass


def _describe(exc: Exception) -> str:
    if isinstance(exc, (HookCallFailed, EhrAuthMisconfigured)):
        return str(exc)
    return f"the call failed ({type(exc).__name__}: {exc})"


async def _call(
    endpoints: dict[str, Any], service_id: str, patient_id: str, key: HookSigningKey
) -> Any:
    cds_services, ehr = endpoints["cds_services"], endpoints["ehr"]
    async with httpx.AsyncClient(timeout=30) as http, ehr_http_client(ehr, 30) as ehr_http:
        discovery = await http.get(cds_services)
        services = discovery.json().get("services", []) if discovery.is_success else []
        service = next((s for s in services if s.get("id") == service_id), None)
        if service is None:
            raise HookCallFailed(f"no CDS service {service_id!r} at {cds_services}")
        request = patient_view_request(patient_id, ehr)
        templates = service.get("prefetch") or {}
        if templates:
            request["prefetch"] = await prefetched(ehr_http, ehr, templates, request["context"])
        response = await call_service(http, f"{cds_services}/{service_id}", request, key)
    if not response.is_success:
        raise HookCallFailed(f"the service answered {response.status_code}: {response.text}")
    try:
        return response.json()
    except ValueError:
        raise HookCallFailed("the service's answer is not JSON") from None


async def prefetched(
    http: httpx.AsyncClient, ehr: str, templates: dict[str, str], context: dict[str, str]
) -> dict[str, Any]:
    """Each template's query run against the EHR, as an EHR fills `prefetch`; null where the
    EHR has no answer (the service then fetches it itself)."""
    values = {f"context.{name}": value for name, value in context.items()}
    user = context.get("userId", "")
    if user.startswith("Practitioner/"):
        values["userPractitionerId"] = user.removeprefix("Practitioner/")
    found: dict[str, Any] = {}
    for name, template in templates.items():
        query = _TOKEN.sub(lambda token: values.get(token.group(1), ""), template)
        response = await http.get(f"{ehr}/{query}", headers={"Accept": FHIR_JSON})
        found[name] = response.json() if response.is_success else None
    return found
