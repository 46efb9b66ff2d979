"""One event through the handler, with the adapters' engine and the patient contexts real
and Kafka, the EHR and Triton replaced by recorders: every listed version runs and is
published (shadow beside active); an adapter missing a required input is skipped and
counted, never dead-lettered; an impossible value is dead-lettered and never fed."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from datetime import date
from pathlib import Path
from typing import Any, cast

import numpy as np
import numpy.typing as npt
from aiokafka import ConsumerRecord
from opentelemetry import trace

from cdsflow.contracts import ClinicalEvent, Mode, Recommendation
from cdsflow.models import ModelInputs, ResourceReader, parse_adapter
from cdsflow.reasoner.dependency_health import DependencyHealth
from cdsflow.reasoner.ehr_history import PatientHistory
from cdsflow.reasoner.handlers import ClinicalEventHandler
from cdsflow.reasoner.metrics import ReasonerMetrics
from cdsflow.reasoner.patient_contexts import PatientContexts, feed_windows
from cdsflow.reasoner.settings import Settings
from cdsflow.service import Record, RecordOutcome
from cdsflow.telemetry import MetricsRegistry, PatientKeyer

from .reasoner_fhir import (
    ADAPTERS_DIR,
    EHR_BASE_URL,
    PATIENT,
    clinical_event,
    metformin_order,
    observation,
)

KEYER = PatientKeyer("unit-test-pseudonym-key-0123456789")
KEY = KEYER.patient_key(PATIENT)


def adapter_file(name: str, old: str, new: str) -> ResourceReader:
    path = ADAPTERS_DIR / name
    text = path.read_text(encoding="utf-8")
    assert old in text
    return ResourceReader(parse_adapter(text.replace(old, new, 1), Path(path)))


DETERIORATION = adapter_file(
    "deterioration-risk.yaml",
    "    - version: 1\n      mode: active\n",
    "    - version: 1\n      mode: active\n    - version: 2\n      mode: shadow\n",
)
# the eGFR made required: without one, the medication model is not called at all
MEDICATION = adapter_file(
    "medication-safety.yaml",
    "{name: egfr, data: egfr, aggregation: latest}",
    "{name: egfr, data: egfr, aggregation: latest, required: true}",
)


class Model:
    """A model version that answers every row with `score`, and records what it was sent."""

    def __init__(self, reader: ResourceReader, version: str, mode: str, score: float) -> None:
        self.adapter = reader.adapter
        self.version = version
        self.mode = mode
        self.score = score
        self.sent: list[Mapping[str, npt.NDArray[Any]]] = []

    async def infer(self, inputs: ModelInputs) -> dict[str, Any]:
        tensors = inputs.tensors
        self.sent.append(tensors)
        width = tensors["features"].shape[1]
        return {
            self.adapter.outputs.score.tensor: np.array([[self.score]], np.float32),  # type: ignore[union-attr]
            "log_odds": np.zeros((1, 1), np.float32),
            "contributions": np.zeros((1, width), np.float32),
        }


class Deliveries:
    def __init__(self) -> None:
        self.sent: list[Recommendation] = []

    async def send(self, topic: str, value: bytes, **_: Any) -> asyncio.Future[Any]:
        self.sent.append(Recommendation.FromString(value))
        done: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        done.set_result(None)
        return done


class DeadLetters:
    def __init__(self) -> None:
        self.sent: list[tuple[str, str]] = []

    async def send(
        self, body: bytes, key: bytes | None, error_type: str, error: str, **_: Any
    ) -> None:
        self.sent.append((error_type, error))


class EhrHistory:
    """A patient the EHR knows, born in 1950, with nothing charted."""

    async def history(self, patient_reference: str, as_of: Any) -> PatientHistory:
        return PatientHistory(date(1950, 2, 1), [])

    async def confirm_patient(self, patient_reference: str) -> None:
        return None


class Setup:
    def __init__(self) -> None:
        readers = (DETERIORATION, MEDICATION)
        self.models = {
            DETERIORATION.adapter.id: (
                Model(DETERIORATION, "1", "active", 0.05),
                Model(DETERIORATION, "2", "shadow", 0.35),
            ),
            MEDICATION.adapter.id: (Model(MEDICATION, "1", "shadow", 1.0),),
        }
        self.deliveries = Deliveries()
        self.dead_letters = DeadLetters()
        self.registry = MetricsRegistry("reasoner")
        self.handler = ClinicalEventHandler(
            settings=Settings(ehr_base_url=EHR_BASE_URL),
            deliveries=cast(Any, self.deliveries),
            dead_letters=cast(Any, self.dead_letters),
            ehr_history=cast(Any, EhrHistory()),
            contexts=PatientContexts(100, feed_windows(readers)),
            readers=readers,
            models=cast(Any, self.models),
            patient_keyer=KEYER,
            metrics=ReasonerMetrics.register(self.registry),
            tracer=trace.get_tracer("test"),
            health=DependencyHealth(),
        )

    async def handle(
        self, event: ClinicalEvent, offset: int = 0
    ) -> RecordOutcome | asyncio.Future[Any]:
        record: Record = ConsumerRecord(
            topic="events",
            partition=0,
            offset=offset,
            timestamp=0,
            timestamp_type=0,
            key=KEY.encode(),
            value=event.SerializeToString(),
            checksum=None,
            serialized_key_size=0,
            serialized_value_size=0,
            headers=(),
        )
        return await self.handler.handle(record)

    def sample(self, name: str, **labels: str) -> float:
        return self.registry.registry.get_sample_value(name, labels) or 0.0


async def test_every_listed_version_runs_and_each_is_published_with_its_mode() -> None:
    setup = Setup()
    event = clinical_event(observation("hr-1", "8867-4", 96), patient_key=KEY)
    delivered = await setup.handle(event)
    assert not isinstance(delivered, RecordOutcome)
    await delivered
    by_version = {r.model.version: r for r in setup.deliveries.sent}
    assert sorted(by_version) == ["1", "2"]  # the medication adapter is not fed a heart rate
    active, shadow = by_version["1"], by_version["2"]
    assert (active.mode, shadow.mode) == (Mode.MODE_ACTIVE, Mode.MODE_SHADOW)
    assert active.event_id == shadow.event_id == event.event_id
    assert (active.scores[0].band, shadow.scores[0].band) == ("low", "high")
    assert list(active.cards) == []
    assert shadow.cards  # a shadow result keeps the cards it would have shown
    assert {i.name for i in active.basis.inputs} == {"heart_rate", "age"}
    for model in setup.models[DETERIORATION.adapter.id]:
        [sent] = model.sent
        assert sent["present"][0].tolist() == [False] * 4 + [True] + [False] * 9 + [True]
    counted = setup.sample(
        "cdsflow_reasoner_recommendations_total",
        adapter="deterioration-risk",
        version="2",
        mode="shadow",
        band="high",
    )
    assert counted == 1

    # redelivered: the same recommendation ids
    again = await setup.handle(event, offset=1)
    assert not isinstance(again, RecordOutcome)
    await again
    assert [r.recommendation_id for r in setup.deliveries.sent[2:]] == [
        r.recommendation_id for r in setup.deliveries.sent[:2]
    ]


async def test_an_adapter_missing_a_required_input_is_skipped_and_counted() -> None:
    setup = Setup()
    order = clinical_event(metformin_order("m-1"), patient_key=KEY)
    assert await setup.handle(order) is RecordOutcome.FINISHED
    assert setup.deliveries.sent == []
    assert setup.dead_letters.sent == []
    assert setup.models[MEDICATION.adapter.id][0].sent == []
    skipped = setup.sample(
        "cdsflow_reasoner_skipped_inferences_total",
        adapter="medication-safety",
        reason="missing-required-inputs",
    )
    assert skipped == 1
    # once an eGFR arrives, the order kept from the stream counts and the model answers
    egfr = clinical_event(observation("e-1", "98979-8", 25, "mL/min/{1.73_m2}"), patient_key=KEY)
    delivered = await setup.handle(egfr, offset=1)
    assert not isinstance(delivered, RecordOutcome)
    [recommendation] = setup.deliveries.sent
    assert recommendation.adapter_id == "medication-safety"
    assert recommendation.mode == Mode.MODE_SHADOW
    [sent] = setup.models[MEDICATION.adapter.id][0].sent
    assert sent["features"][0].tolist() == [25.0, 1.0]


async def test_an_impossible_value_is_dead_lettered_counted_and_never_fed() -> None:
    setup = Setup()
    saturation = clinical_event(observation("s-1", "59408-5", 140, "%"), patient_key=KEY)
    assert await setup.handle(saturation) is RecordOutcome.FINISHED
    assert setup.dead_letters.sent == [
        ("ImplausibleValue", "oxygen_saturation is above its plausible range (0-100 %)")
    ]
    assert all(model.sent == [] for models in setup.models.values() for model in models)
    refused = setup.sample(
        "cdsflow_reasoner_refused_values_total",
        adapter="deterioration-risk",
        data="oxygen_saturation",
        reason="above-range",
    )
    assert refused == 1


async def test_a_stopped_order_the_context_held_is_answered_again_without_it() -> None:
    setup = Setup()
    egfr = clinical_event(observation("e-1", "98979-8", 25, "mL/min/{1.73_m2}"), patient_key=KEY)
    order = clinical_event(metformin_order("m-1"), event_id="order", patient_key=KEY)
    stopped = clinical_event(metformin_order("m-1", "stopped"), event_id="stop", patient_key=KEY)
    for offset, event in enumerate((egfr, order, stopped)):
        outcome = await setup.handle(event, offset=offset)
        assert outcome is not RecordOutcome.FINISHED
    sent = setup.models[MEDICATION.adapter.id][0].sent
    assert [tensors["features"][0].tolist() for tensors in sent] == [
        [25.0, 0.0],
        [25.0, 1.0],
        [25.0, 0.0],  # the stopped order no longer counts
    ]
    assert [r.event_id for r in setup.deliveries.sent] == ["event-1", "order", "stop"]
    # a retraction of something the context never held is only ignored
    other = clinical_event(metformin_order("m-2", "stopped"), event_id="other", patient_key=KEY)
    assert await setup.handle(other, offset=3) is RecordOutcome.FINISHED
    assert len(setup.deliveries.sent) == 3
