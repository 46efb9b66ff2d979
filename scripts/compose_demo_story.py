"""Play the demo story against the docker-compose stack and show what cdsflow made of it.

Run by scripts/compose-demo.sh once `docker compose up --wait` has returned: writes the two
story patients and their vital signs into HAPI, waits for the RiskAssessment written back for
the last round, calls `patient-view` for each (the compose writeback runs with
CDSFLOW_HOOKS_AUTH=off, so no EHR JWT) and prints the cards and where the trace is.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time

import httpx

from cdsflow.fhir import EhrClient
from cdsflow.runtime.scenario import patient_view_request, wait_for_risk_assessment, write_story


async def wait_until_up(http: httpx.AsyncClient, url: str, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            if (await http.get(url)).status_code == 200:
                return
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"{url} did not answer 200 within {timeout_s:.0f} s")
        await asyncio.sleep(1.0)


async def play(ehr_url: str, cds_url: str, jaeger_url: str, timeout_s: float) -> int:
    async with httpx.AsyncClient(timeout=30.0) as http:
        await wait_until_up(http, f"{ehr_url}/metadata", timeout_s)
        await wait_until_up(http, f"{cds_url}/cds-services", timeout_s)
        discovery = (await http.get(f"{cds_url}/cds-services")).json()
        service_id = next(s["id"] for s in discovery["services"] if s["hook"] == "patient-view")
        ehr = EhrClient(ehr_url, http)
        played = await write_story(ehr)
        for patient in played.values():
            assessment = await wait_for_risk_assessment(ehr, patient, timeout_s)
            print(f"{patient.label}: RiskAssessment/{assessment['id']} written back")
            request = patient_view_request(patient.patient_id, ehr_url)
            # no fhirServer: the writeback would refuse a plain-http one, and needs none here
            request.pop("fhirServer")
            answer = await http.post(f"{cds_url}/cds-services/{service_id}", json=request)
            answer.raise_for_status()
            print(f"{patient.label}: patient-view ({service_id}) answers")
            print(json.dumps(answer.json(), indent=2))
        print(f"traces: {jaeger_url} (service cdsflow-listener)")
    return 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ehr", default="http://localhost:8080/fhir")
    parser.add_argument("--cds", default="http://localhost:8083")
    parser.add_argument("--jaeger", default="http://localhost:16686")
    parser.add_argument("--timeout-s", type=float, default=180.0)
    args = parser.parse_args()
    sys.exit(asyncio.run(play(args.ehr, args.cds, args.jaeger, args.timeout_s)))


if __name__ == "__main__":
    main()
