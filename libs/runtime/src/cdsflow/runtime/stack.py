"""The whole pipeline on loopback: broker, Triton, (EHR), the three services, a trace backend."""

from __future__ import annotations

import os
import secrets
import sys
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

from cdsflow.runtime.parts import start_broker, start_ehr, start_triton
from cdsflow.runtime.processes import ManagedProcess, free_port, http_ok, spawn
from cdsflow.runtime.trace_collector import TraceCollector

SERVICES = ("listener", "reasoner", "writeback")
REST_HOOK_PATH = "/fhir/notifications/rest-hook"
CDS_SERVICE_ID = "cdsflow-deterioration"


@dataclass
class StackOptions:
    """What `cdsflow up` starts and how."""

    work_dir: Path
    model_repository: Path
    with_ehr: bool = False
    ehr_base_url: str | None = None
    # Where spans go: an external OTLP endpoint, else the built-in collector.
    otlp_endpoint: str | None = None
    pseudonym_key: str = field(default_factory=lambda: secrets.token_urlsafe(32))
    channel_secret: str = field(default_factory=lambda: secrets.token_urlsafe(32))
    service_timeout_s: float = 90


class Stack:
    """Start with `start()`, stop with `stop()` (also on a failed start)."""

    def __init__(self, options: StackOptions) -> None:
        if not options.with_ehr and not options.ehr_base_url:
            raise ValueError("give an EHR base URL, or start the embedded EHR")
        self.options = options
        self.parts: list[ManagedProcess] = []
        self.endpoints: dict[str, str] = {}
        self.collector: TraceCollector | None = None

    def start(self) -> dict[str, str]:
        try:
            self._start()
        except BaseException:
            self.stop()
            raise
        return self.endpoints

    def _start(self) -> None:
        options = self.options
        log_dir = options.work_dir
        log_dir.mkdir(parents=True, exist_ok=True)
        otlp = options.otlp_endpoint
        if otlp is None:
            self.collector = TraceCollector()
            otlp = self.collector.start()
        self.endpoints["otlp"] = otlp
        broker = self._add(start_broker(log_dir))
        triton = self._add(start_triton(options.model_repository, log_dir, f"{otlp}/v1/traces"))
        if options.with_ehr:
            ehr_base_url = self._add(start_ehr(log_dir)).endpoints["ehr"]
        else:
            assert options.ehr_base_url is not None
            ehr_base_url = options.ehr_base_url.rstrip("/")
        self.endpoints.update(broker.endpoints)
        self.endpoints.update(triton.endpoints)
        self.endpoints["ehr"] = ehr_base_url
        common = {
            "CDSFLOW_KAFKA_BOOTSTRAP": broker.endpoints["broker"],
            "CDSFLOW_KAFKA_IDEMPOTENCE": "false",
            "CDSFLOW_EHR_BASE_URL": ehr_base_url,
            "CDSFLOW_PSEUDONYM_KEY": options.pseudonym_key,
            "CDSFLOW_HTTP_HOST": "127.0.0.1",
            "OTEL_EXPORTER_OTLP_ENDPOINT": otlp,
            "OTEL_BSP_SCHEDULE_DELAY": "200",
        }
        extra = {
            "listener": {"CDSFLOW_CHANNEL_SECRET": options.channel_secret},
            "reasoner": {"CDSFLOW_TRITON_GRPC_URL": triton.endpoints["triton_grpc"]},
            "writeback": {},
        }
        started = [self._spawn_service(name, {**common, **extra[name]}) for name in SERVICES]
        for service in started:
            readyz = f"{service.endpoints['http']}/readyz"
            service.wait_ready(partial(http_ok, readyz), options.service_timeout_s)
        by_name = {service.name: service.endpoints["http"] for service in started}
        self.endpoints["listener"] = by_name["listener"] + REST_HOOK_PATH
        self.endpoints["reasoner"] = by_name["reasoner"]
        self.endpoints["writeback"] = by_name["writeback"]
        self.endpoints["cds_services"] = by_name["writeback"] + "/cds-services"

    def _spawn_service(self, name: str, env: dict[str, str]) -> ManagedProcess:
        port = free_port()
        full_env = {**os.environ, **env, "CDSFLOW_HTTP_PORT": str(port)}
        argv = [sys.executable, "-m", f"cdsflow.{name}"]
        service = self._add(spawn(name, argv, self.options.work_dir, env=full_env))
        service.endpoints["http"] = f"http://127.0.0.1:{port}"
        return service

    def _add(self, part: ManagedProcess) -> ManagedProcess:
        self.parts.append(part)
        return part

    def dead_parts(self) -> list[ManagedProcess]:
        return [part for part in self.parts if not part.alive()]

    def stop(self) -> None:
        """Stop the services first, then the parts they use; nothing is left running."""
        for part in reversed(self.parts):
            part.stop()
        self.parts.clear()
        if self.collector is not None:
            self.collector.stop()
