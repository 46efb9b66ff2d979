"""The reasoner's configuration, read once from `CDSFLOW_*` environment variables.

The shared fields (EHR base URL, Kafka, HTTP, readiness) come from
`cdsflow.service.ServiceSettings`; the pseudonym key and log level are read by
`cdsflow.telemetry.TelemetrySettings`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from pydantic import Field, field_validator
from pydantic_settings import NoDecode

from cdsflow.contracts import CLINICAL_EVENTS, RECOMMENDATIONS
from cdsflow.service import HttpPort, ServiceSettings


class Settings(ServiceSettings):
    """Everything the reasoner needs to turn clinical events into recommendations.

    `ehr_base_url` is where a patient first seen is checked and its recent data searched.
    """

    clinical_events_topic: str = CLINICAL_EVENTS
    recommendations_topic: str = RECOMMENDATIONS
    consumer_group: str = "cdsflow-reasoner"

    http_port: HttpPort = 8082

    # Triton's gRPC endpoint, host:port
    triton_grpc_url: str = "127.0.0.1:8001"
    # The model adapters to run (libs/models/README.md): adapter files, or folders whose
    # *.yaml/*.yml files are all run; comma-separated. Each names its Triton model, its
    # versions and their modes (shadow or active), its data, bands and cards. Loaded and
    # checked at start: a wrong file stops the reasoner with the file and line at fault.
    adapters: Annotated[tuple[Path, ...], NoDecode] = ()

    # Per-call timeouts of Triton inference and EHR requests.
    inference_timeout_s: float = Field(default=10.0, gt=0)
    ehr_timeout_s: float = Field(default=10.0, gt=0)
    # While Triton, the EHR or Kafka is unavailable, the events that needed it are handed
    # back (not committed) and consumption pauses before they are consumed again: 0.2 s,
    # doubling per batch that still fails, at most `dependency_retry_s`.
    dependency_retry_s: float = Field(default=5.0, ge=0)
    # How many times an event that fails unexpectedly (or that Triton refuses while it is up)
    # is tried before it is dead-lettered; a dependency outage never counts.
    max_attempts: int = Field(default=3, ge=1)

    # Records per batch from Kafka (`max_records`), and how long a fetch waits to fill one.
    batch_max_records: int = Field(default=512, ge=1)
    batch_timeout_ms: int = Field(default=5, ge=0)
    # The producer's batch per partition: a recommendation takes 1-2 KB.
    kafka_max_batch_bytes: int = Field(default=1024 * 1024, ge=16 * 1024)
    # How many patients of a batch are handled at the same time (each patient's events in
    # order): also the most Triton requests in flight, which Triton's dynamic batcher merges.
    max_concurrent_patients: int = Field(default=256, ge=1)
    # The most rows (patients' events) in one Triton request: the rows that the patients ask
    # for in the same turn of the event loop go together. At most the model's
    # `max_batch_size`; 1 sends every row alone (a model served without batching).
    inference_max_rows: int = Field(default=64, ge=1)
    # `readiness_timeout_s` (shared, default 2 s) bounds `/readyz`'s wait for Kafka and Triton.

    # `gc_young_threshold` (shared, default 20 000): fewer garbage collections walking the
    # held patients' contexts (README "Benchmark").

    # Patients the EHR confirmed to exist are not asked about again for `known_patients_ttl_s`
    # (so a deleted or merged patient stops getting recommendations within it); at most
    # `known_patients_max` are remembered (about 200 bytes each: 100 000 take about 20 MB).
    # 0 (either) asks the EHR every time.
    known_patients_max: int = Field(default=100_000, ge=0)
    known_patients_ttl_s: float = Field(default=3600.0, ge=0)

    # Each patient's recent data (what the adapters read) is kept from the events (not searched
    # on the EHR per event): at most `context_max_patients` patients (the least recently seen
    # forgotten first), and per data feed the readings within its window, at most
    # `context_max_readings_per_feed` of them (beyond, the second oldest is let go: the
    # oldest, which a trend reads, and the newest stay). They are written to the compacted
    # changelog topic `patient_context_topic` (default `<consumer group>.patient-context.v1`),
    # created if missing with `patient_context_replication` replicas, and read back on
    # assignment.
    context_max_patients: int = Field(default=100_000, ge=1)
    context_max_readings_per_feed: int = Field(default=8, ge=2)
    patient_context_topic: str = ""
    patient_context_replication: int = Field(default=1, ge=1)

    @property
    def context_changelog_topic(self) -> str:
        """The changelog belongs to the consumer group whose partitions it follows."""
        return self.patient_context_topic or f"{self.consumer_group}.patient-context.v1"

    @field_validator("adapters", mode="before")
    @classmethod
    def _comma_separated(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(Path(item.strip()) for item in value.split(",") if item.strip())
        return value
