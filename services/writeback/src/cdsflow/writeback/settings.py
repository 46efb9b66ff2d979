"""The writeback's configuration, read once from `CDSFLOW_*` environment variables.

The shared fields (EHR base URL, Kafka, HTTP, readiness) come from
`cdsflow.service.ServiceSettings`.
"""

from __future__ import annotations

from pydantic import Field

from cdsflow.contracts import RECOMMENDATIONS
from cdsflow.service import HttpPort, ServiceSettings


class Settings(ServiceSettings):
    """Everything the writeback needs to serve cards and write recommendations back.

    `ehr_base_url` is where write-backs and the readiness probe go.
    """

    http_port: HttpPort = 8083
    recommendations_topic: str = RECOMMENDATIONS
    consumer_group: str = "cdsflow-writeback"
    writeback_enabled: bool = True
    # after the EHR client's own retries fail with an outage, wait this long, then redeliver
    writeback_retry_pause_s: float = Field(default=5.0, ge=0)
    ehr_timeout_s: float = Field(default=10.0, gt=0)
    store_max_patients: int = Field(default=100_000, ge=1)
    # The largest CDS Hooks request body accepted (413 above it).
    max_hook_request_bytes: int = Field(default=1024 * 1024, gt=0)
    # Accept `fhirServer: http://127.0.0.1/...` in hook requests; only for the embedded stack
    # on one machine (`cdsflow up`). Otherwise `fhirServer` must be https.
    allow_loopback_http_fhir_server: bool = False
