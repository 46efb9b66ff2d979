"""The whole pipeline on loopback: broker, Triton, (EHR), the three services, a trace backend.

The broker, Triton and the EHR are started here unless existing ones are given; the three
services always are. Once started, `supervise()` keeps the services running (see
`cdsflow.runtime.supervisor`).
"""

from __future__ import annotations

import json
import os
import secrets
import sys
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from cdsflow.fhir import is_loopback_host
from cdsflow.models import load_adapter_set
from cdsflow.models.adapter_set import cds_services, triton_model
from cdsflow.runtime.adapter_channels import ListenerChannels, adapter_channels
from cdsflow.runtime.ehr_topics import VITAL_SIGNS_TOPIC_URL, define_topic, define_vital_signs_topic
from cdsflow.runtime.parts import start_broker, start_ehr, start_triton
from cdsflow.runtime.processes import (
    ManagedProcess,
    ProcessFailed,
    free_port,
    http_ok,
    port_accepts,
    spawn,
    split_host_port,
)
from cdsflow.runtime.sandbox_ehr_client import KEY_FILE_NAME, HookSigningKey, SandboxEhrClient
from cdsflow.runtime.subscriptions import wait_until_channels_active
from cdsflow.runtime.supervisor import RestartPolicy, Supervisor
from cdsflow.runtime.trace_collector import TraceCollector

SERVICES = ("listener", "reasoner", "writeback")
REST_HOOK_PATH = "/fhir/notifications/rest-hook"
CDS_SERVICE_ID = "cdsflow-deterioration"
VITAL_SIGNS_CRITERIA = "Observation?category=vital-signs"
# what the reasoner scores: every vital-sign Observation, full resource; from an EHR of yours
# through an R4 criteria Subscription
DEFAULT_CHANNELS: tuple[dict[str, Any], ...] = (
    {"name": "vital-signs", "criteria": VITAL_SIGNS_CRITERIA},
)
# from the embedded EHR through the topic it is given at start (R4 backport notifications)
EMBEDDED_EHR_CHANNELS: tuple[dict[str, Any], ...] = (
    {
        "name": "vital-signs",
        "topic": VITAL_SIGNS_TOPIC_URL,
        "payload": "full-resource",
        "recovery_search": VITAL_SIGNS_CRITERIA,
    },
)


@dataclass
class StackOptions:
    """What `cdsflow up` starts and how."""

    work_dir: Path
    # used only when Triton is started here
    model_repository: Path
    with_ehr: bool = False
    ehr_base_url: str | None = None
    # an existing Kafka (host:port[,host:port...]) instead of the embedded, memory-only Tansu
    kafka_bootstrap: str | None = None
    # an existing Triton's gRPC endpoint (host:port) instead of the wheel's tritonserver
    triton_grpc_url: str | None = None
    # the idempotent producer, with an existing Kafka (the embedded Tansu refuses it)
    kafka_idempotence: bool = True
    # Where spans go: an external OTLP endpoint, else the built-in collector.
    otlp_endpoint: str | None = None
    # how often each service sends its finished spans (OTEL_BSP_SCHEDULE_DELAY, ms): 200 so
    # that the demo shows a change's trace at once; deployments keep the SDK's 5,000, and so
    # does `make bench`, which measures the services as they run there
    span_export_delay_ms: int = 200
    # Triton traces one inference in this many: 1 for the demo (every trace shows the
    # model's spans); the chart's default is 100, and `make bench` runs with it: Triton 2.51
    # in OpenTelemetry mode can crash (SIGSEGV) tracing every request at hundreds a second
    # (triton-inference-server/server#7795), as two bench runs here did
    triton_trace_rate: int = 1
    pseudonym_key: str = field(default_factory=lambda: secrets.token_urlsafe(32))
    channel_secret: str = field(default_factory=lambda: secrets.token_urlsafe(32))
    service_timeout_s: float = 90
    # how long an existing Kafka or Triton may take to accept a connection at start
    existing_part_timeout_s: float = 30
    restart_policy: RestartPolicy = field(default_factory=RestartPolicy)
    # EHRs whose CDS Hooks calls the writeback trusts besides the sandbox EHR client:
    # (issuer, JWKS URL) pairs, and the writeback's URL as those EHRs call it (a token's `aud`)
    trusted_ehr_issuers: tuple[tuple[str, str], ...] = ()
    cds_public_url: str | None = None
    # the adapter files (or folders of them) of the models run: the reasoner runs them, the
    # writeback offers their CDS services (and scores them on demand), and the listener's
    # channels are derived from what they declare (`adapter_channels`); none: the shipped
    # adapters (`adapters_of`)
    adapters: tuple[Path, ...] = ()
    # the Subscriptions the listener keeps on the EHR (its CDSFLOW_CHANNELS); None: those the
    # adapters need (topics on the embedded EHR, criteria on yours); (): none, make them
    # yourself with `channel_secret`
    channels: tuple[dict[str, Any], ...] | None = None
    # the listener's rest-hook URL as the EHR reaches it (default: the loopback one)
    listener_public_url: str | None = None


# the shipped adapters, where `cdsflow up` runs (as the model repository's default `models`)
DEFAULT_ADAPTERS = Path("adapters")


def adapters_of(options: StackOptions) -> tuple[Path, ...]:
    """The adapter files (or folders) that the stack runs: `options.adapters`, else the
    shipped ones (every adapter in `adapters/`: each one's model is in `models/`). The
    reasoner, the writeback and the listener's channels all follow the same ones."""
    return options.adapters or (DEFAULT_ADAPTERS.resolve(),)


class Stack:
    """Start with `start()`, stop with `stop()` (also on a failed start)."""

    def __init__(self, options: StackOptions) -> None:
        if not options.with_ehr and not options.ehr_base_url:
            raise ValueError("give an EHR base URL, or start the embedded EHR")
        self.options = options
        # what the listener subscribes to, worked out before anything starts (an adapter
        # file that is wrong stops `up` here)
        self.listener_channels = listener_channels_of(options)
        self.parts: list[ManagedProcess] = []
        self.endpoints: dict[str, str] = {}
        # the listener's Subscriptions on the EHR, once they are active
        self.subscription_urls: list[str] = []
        self.collector: TraceCollector | None = None
        self.supervisor: Supervisor | None = None
        self.sandbox_ehr_client: SandboxEhrClient | None = None
        self._hook_signing_key: HookSigningKey | None = None

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
        self.sandbox_ehr_client = SandboxEhrClient()
        key_path = log_dir / KEY_FILE_NAME
        self._hook_signing_key = self.sandbox_ehr_client.start(key_path)
        self.endpoints["jwks"] = self.sandbox_ehr_client.jwks_url
        self.endpoints["ehr_client_issuer"] = self._hook_signing_key.issuer
        self.endpoints["ehr_client_key"] = str(key_path)
        # the broker, Triton and the EHR are started at once (each mostly waits on its own
        # start-up); those given are only checked to be reachable
        starts: dict[str, Callable[[], ManagedProcess]] = {}
        if options.kafka_bootstrap is None:
            starts["broker"] = partial(start_broker, log_dir)
        if options.triton_grpc_url is None:
            starts["triton"] = partial(
                start_triton,
                options.model_repository,
                log_dir,
                f"{otlp}/v1/traces",
                trace_rate=options.triton_trace_rate,
            )
        if options.with_ehr:
            starts["ehr"] = partial(start_ehr, log_dir)
        essential = self._start_parts(starts)
        if options.kafka_bootstrap is None:
            self.endpoints.update(essential["broker"].endpoints)
        else:
            _wait_until_reachable("Kafka", options.kafka_bootstrap, options.existing_part_timeout_s)
            self.endpoints["broker"] = options.kafka_bootstrap
        if options.triton_grpc_url is None:
            self.endpoints.update(essential["triton"].endpoints)
        else:
            _wait_until_reachable(
                "Triton", options.triton_grpc_url, options.existing_part_timeout_s
            )
            self.endpoints["triton_grpc"] = options.triton_grpc_url
        if options.with_ehr:
            ehr_base_url = essential["ehr"].endpoints["ehr"]
            define_vital_signs_topic(ehr_base_url)
            for topic in self.listener_channels.ehr_topics:
                define_topic(ehr_base_url, topic)
        else:
            assert options.ehr_base_url is not None
            ehr_base_url = options.ehr_base_url.rstrip("/")
        self.endpoints["ehr"] = ehr_base_url
        ports = {name: free_port() for name in SERVICES}
        # the writeback's URL is the audience of the hook calls, the listener's is where the
        # EHR notifies: both known before they start
        self.endpoints["writeback"] = f"http://127.0.0.1:{ports['writeback']}"
        self.endpoints["listener"] = f"http://127.0.0.1:{ports['listener']}{REST_HOOK_PATH}"
        environments = service_environments(options, self.endpoints)
        started = [self._spawn_service(name, environments[name], ports[name]) for name in SERVICES]
        for service in started:
            readyz = f"{service.endpoints['http']}/readyz"
            service.wait_ready(partial(http_ok, readyz), options.service_timeout_s)
        by_name = {service.name: service.endpoints["http"] for service in started}
        self.endpoints["listener"] = by_name["listener"] + REST_HOOK_PATH
        self.endpoints["reasoner"] = by_name["reasoner"]
        self.endpoints["writeback"] = by_name["writeback"]
        self.endpoints["cds_services"] = by_name["writeback"] + "/cds-services"
        self.supervisor = Supervisor(options.restart_policy)
        self.supervisor.restart_when_exited(started)
        self.supervisor.stop_all_when_exited(essential.values())
        if self.listener_channels.channels:
            states = wait_until_channels_active(by_name["listener"], options.service_timeout_s)
            # one Subscription per channel; `subscription` names the first (as before)
            self.subscription_urls = [
                f"{ehr_base_url}/Subscription/{state['id']}" for state in states
            ]
            self.endpoints["subscription"] = self.subscription_urls[0]
            self.endpoints["subscriptions"] = " ".join(self.subscription_urls)

    @property
    def hook_signing_key(self) -> HookSigningKey:
        """What the sandbox EHR signs its hook calls with (see `sandbox_ehr_client`)."""
        if self._hook_signing_key is None:
            raise RuntimeError("start the stack before calling its hooks")
        return self._hook_signing_key

    def _spawn_service(self, name: str, env: dict[str, str], port: int) -> ManagedProcess:
        full_env = {**os.environ, **env, "CDSFLOW_HTTP_PORT": str(port)}
        argv = [sys.executable, "-m", f"cdsflow.{name}"]
        service = self._add(spawn(name, argv, self.options.work_dir, env=full_env))
        service.endpoints["http"] = f"http://127.0.0.1:{port}"
        return service

    def _start_parts(
        self, starts: Mapping[str, Callable[[], ManagedProcess]]
    ) -> dict[str, ManagedProcess]:
        """Run each start at once; every part that started is the stack's (so `stop()` stops
        it) before the first failure, if any, goes up — also when the wait is interrupted
        (Ctrl-C): the starts still under way are waited for and their parts kept.

        Each part is handed to the stack by the thread that started it, as it is ready: a
        KeyboardInterrupt is raised in the main thread only, wherever it happens to be, so
        the main thread must not be the one that hands them over."""
        started: dict[str, ManagedProcess] = {}
        lock = threading.Lock()

        def start_and_keep(name: str, start: Callable[[], ManagedProcess]) -> ManagedProcess:
            part = start()
            with lock:
                started[name] = self._add(part)
            return part

        futures: dict[str, Future[ManagedProcess]] = {}
        pool = ThreadPoolExecutor(max_workers=max(1, len(starts)), thread_name_prefix="part")
        try:
            for name, start in starts.items():
                futures[name] = pool.submit(start_and_keep, name, start)
            wait(futures.values())
        finally:
            pool.shutdown(wait=True)
        failure = next((f.exception() for f in futures.values() if f.exception()), None)
        if failure is not None:
            raise failure
        # in the order asked for, not the order they were ready in (one assignment: an
        # interrupt leaves the parts all there, in either order)
        ours = [started[name] for name in starts if name in started]
        self.parts[:] = [part for part in self.parts if part not in ours] + ours
        return {name: started[name] for name in starts if name in started}

    def _add(self, part: ManagedProcess) -> ManagedProcess:
        self.parts.append(part)
        return part

    def supervise(self) -> list[str]:
        """Restart the services that exited (after their backoff); returns those restarted
        just now. Raises `EssentialPartExited` when a broker, Triton or EHR started here exited.
        """
        if self.supervisor is None:
            raise RuntimeError("start the stack before supervising it")
        return self.supervisor.check()

    def stop(self) -> None:
        """Stop the services first, then the parts they use; nothing is left running."""
        for part in reversed(self.parts):
            part.stop()
        self.parts.clear()
        self.supervisor = None
        if self.collector is not None:
            self.collector.stop()
        if self.sandbox_ehr_client is not None:
            self.sandbox_ehr_client.stop()


# the embedded Tansu broker does neither TLS nor SASL: whatever the shell says is overridden
EMBEDDED_BROKER_SECURITY = {
    "CDSFLOW_KAFKA_SECURITY_PROTOCOL": "PLAINTEXT",
    **{
        f"CDSFLOW_KAFKA_{name}": ""
        for name in (
            "SSL_CA_FILE",
            "SASL_MECHANISM",
            "SASL_USERNAME",
            "SASL_PASSWORD",
            "OAUTH_TOKEN_URL",
            "OAUTH_CLIENT_ID",
            "OAUTH_SCOPE",
        )
    },
}


def service_environments(
    options: StackOptions, endpoints: dict[str, str]
) -> dict[str, dict[str, str]]:
    """Each service's `CDSFLOW_*`/`OTEL_*` variables, given the parts' endpoints (`broker`,
    `triton_grpc`, `ehr`, `otlp`; for the listener its own rest-hook URL `listener`; for the
    writeback its own URL `writeback`, the sandbox
    EHR client's `jwks` and `ehr_client_issuer`); the HTTP port is added when the service is
    spawned. The writeback trusts the sandbox EHR client, and the EHRs given in
    `options.trusted_ehr_issuers` (called at `options.cds_public_url`)."""
    idempotence = options.kafka_bootstrap is not None and options.kafka_idempotence
    # an existing Kafka is reached as the CDSFLOW_KAFKA_SECURITY_* settings of this shell say
    # (the services inherit them); the embedded broker speaks plaintext only
    plaintext = {} if options.kafka_bootstrap is not None else EMBEDDED_BROKER_SECURITY
    common = {
        **plaintext,
        "CDSFLOW_KAFKA_BOOTSTRAP": endpoints["broker"],
        # Tansu refuses the idempotent producer (InitProducerId); Apache Kafka supports it
        "CDSFLOW_KAFKA_IDEMPOTENCE": str(idempotence).lower(),
        "CDSFLOW_EHR_BASE_URL": endpoints["ehr"],
        "CDSFLOW_PSEUDONYM_KEY": options.pseudonym_key,
        "CDSFLOW_HTTP_HOST": "127.0.0.1",
        "OTEL_EXPORTER_OTLP_ENDPOINT": endpoints["otlp"],
        "OTEL_BSP_SCHEDULE_DELAY": str(options.span_export_delay_ms),
    }
    own = {
        "listener": {
            "CDSFLOW_CHANNEL_SECRET": options.channel_secret,
            "CDSFLOW_CHANNELS": json.dumps(list(channels_of(options))),
            "CDSFLOW_NOTIFICATION_ENDPOINT": options.listener_public_url or endpoints["listener"],
        },
        "reasoner": {
            "CDSFLOW_TRITON_GRPC_URL": endpoints["triton_grpc"],
            "CDSFLOW_ADAPTERS": ",".join(str(path) for path in adapters_of(options)),
        },
        # hook calls from an EHR on this machine name it as http://127.0.0.1/...
        "writeback": {
            "CDSFLOW_ALLOW_LOOPBACK_HTTP_FHIR_SERVER": str(
                _on_loopback_http(endpoints["ehr"])
            ).lower(),
            "CDSFLOW_HOOKS_AUTH": "on",
            # the CDS services and on-demand scoring of the same adapters, on the same Triton
            "CDSFLOW_ADAPTERS": ",".join(str(path) for path in adapters_of(options)),
            "CDSFLOW_TRITON_GRPC_URL": endpoints["triton_grpc"],
            "CDSFLOW_TRUSTED_ISSUERS": json.dumps(
                [
                    _sandbox_issuer(options, endpoints),
                    *(
                        {"iss": issuer, "jwks_url": jwks_url}
                        for issuer, jwks_url in options.trusted_ehr_issuers
                    ),
                ]
            ),
            "CDSFLOW_CDS_PUBLIC_BASE_URL": " ".join(
                [endpoints["writeback"], *filter(None, [options.cds_public_url])]
            ),
        },
    }
    return {name: {**common, **own[name]} for name in SERVICES}


def _sandbox_issuer(options: StackOptions, endpoints: dict[str, str]) -> dict[str, Any]:
    """The sandbox EHR client as a trusted issuer; with the embedded EHR it may also lend its
    `fhirAuthorization` for the writeback to read what a call did not prefetch."""
    issuer: dict[str, Any] = {"iss": endpoints["ehr_client_issuer"], "jwks_url": endpoints["jwks"]}
    if options.with_ehr:
        issuer["fhir_servers"] = [endpoints["ehr"]]
    return issuer


def channels_of(options: StackOptions) -> tuple[dict[str, Any], ...]:
    """The listener's channels (see `listener_channels_of`)."""
    return listener_channels_of(options).channels


def listener_channels_of(options: StackOptions) -> ListenerChannels:
    """The listener's channels and the topics to define on the embedded EHR for them: as
    given, else those the adapters need, for the EHR in use."""
    if options.channels is not None:
        return ListenerChannels(options.channels)
    adapters = load_adapter_set(adapters_of(options), unique=(triton_model, cds_services))
    return adapter_channels(adapters, embedded_ehr=options.with_ehr)


def _on_loopback_http(url: str) -> bool:
    parts = urlsplit(url)
    return parts.scheme == "http" and is_loopback_host(parts.hostname)


def _wait_until_reachable(what: str, addresses: str, timeout_s: float) -> None:
    """Wait until one of `addresses` (host:port, comma-separated) accepts a TCP connection."""
    hosts = [split_host_port(address) for address in addresses.split(",")]
    deadline = time.monotonic() + timeout_s
    while not any(port_accepts(port, host) for host, port in hosts):
        if time.monotonic() > deadline:
            raise ProcessFailed(f"no {what} answers at {addresses} after {timeout_s:.0f}s")
        time.sleep(0.5)
