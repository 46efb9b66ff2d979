"""The fault matrix (issue 10, item 2): one fault mid-stream per case, on the real parts.

Each case drives `CDSFLOW_FAULT_EVENTS` vital-sign changes (default 200; `make faults`:
10,000) of fresh patients into the listener as the EHR's rest-hook would (retrying until
acknowledged), applies its fault once a third of them are acknowledged, and waits until the
pipeline settles. The dropped-notification case makes its changes in the EHR itself instead
(each a vital-sign Observation created in SEKMET, whose topic-based Subscription notifies the
listener, each event with its number), and loses some of those notifications on the way: the
listener must see the gaps in the event numbers and recover what they hid. Then, counted by
idempotency key at every hop:

- every change acknowledged is exactly one event on the clinical-events topic;
- every event has exactly one Recommendation per model version;
- every active recommendation is exactly one RiskAssessment in the EHR (SEKMET);
- the `.dlq` twins hold exactly the messages the case poisoned (none for the others).

Message copies (a consumer killed before its commit hands its input on again) are counted
and reported, not failed: the effects above are what must be exactly once.
"""

from __future__ import annotations

import asyncio
import collections
import re
import time
import uuid
from collections.abc import Callable, Coroutine
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from functools import partial
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer

from cdsflow.contracts import CLINICAL_EVENTS, RECOMMENDATIONS, dead_letter_topic
from cdsflow.listener.domain.subscription_queries import STATUS, status_from_query
from tests.conftest import MODEL_REPOSITORY
from tests.faults.conftest import ResultRecorder, fault_events
from tests.integration.test_reasoner_shedding import shedding_cpu_config
from tests.support.fault_pipeline import (
    PARTITIONS,
    VITAL_SIGNS_CHANNEL,
    FaultPipeline,
    shedding_repository,
)
from tests.support.fault_proxy import Fault
from tests.support.notification_driver import (
    Driver,
    EhrWriter,
    Notification,
    create_patients,
    duplicated_and_reordered,
    next_version,
    notifications,
)
from tests.support.own_parts import paused

pytestmark = pytest.mark.faults

Poisoned = dict[str, list[bytes]]


@dataclass(frozen=True)
class FaultCase:
    name: str
    what: str  # one line for docs/reliability.md
    # applies the fault; sets the event once it is in effect (the rest of the stream is sent
    # from then on, while it lasts)
    apply: Callable[[FaultPipeline, Poisoned, asyncio.Event], Coroutine[Any, Any, None]]
    # the notifications sent for the changes driven (default: each once, in order)
    sent: Callable[[list[Notification]], list[Notification]] = list
    # the changes made in the EHR (SEKMET), which notifies the listener through its
    # Subscription; else the test notifies the listener itself, as the EHR's rest-hook would
    in_the_ehr: bool = False


async def no_fault(pipeline: FaultPipeline, poisoned: Poisoned, in_effect: asyncio.Event) -> None:
    in_effect.set()


async def broker_paused(
    pipeline: FaultPipeline, poisoned: Poisoned, in_effect: asyncio.Event
) -> None:
    with paused(pipeline.broker):
        in_effect.set()
        await asyncio.sleep(10)  # the fault's length, not a wait for a condition


def service_killed(
    name: str,
) -> Callable[[FaultPipeline, Poisoned, asyncio.Event], Coroutine[Any, Any, None]]:
    async def kill(pipeline: FaultPipeline, poisoned: Poisoned, in_effect: asyncio.Event) -> None:
        await pipeline.kill_service(name, in_effect)

    return kill


async def triton_killed(
    pipeline: FaultPipeline, poisoned: Poisoned, in_effect: asyncio.Event
) -> None:
    await pipeline.kill_triton(in_effect=in_effect)


async def triton_shedding(
    pipeline: FaultPipeline, poisoned: Poisoned, in_effect: asyncio.Event
) -> None:
    """Triton restarted with a queue of one request (concurrent requests beyond it are
    refused) for 15 s, then restarted as shipped."""
    shipped = (MODEL_REPOSITORY / "deterioration_risk" / "configs" / "cpu.pbtxt").read_text()
    folder = pipeline.work_dir / f"shedding-{uuid.uuid4().hex[:6]}"
    folder.mkdir()
    await pipeline.kill_triton(
        model_repository=shedding_repository(folder, MODEL_REPOSITORY, shedding_cpu_config(shipped))
    )
    in_effect.set()
    await asyncio.sleep(15)  # the fault's length
    await pipeline.kill_triton(model_repository=MODEL_REPOSITORY)


async def ehr_unavailable(
    pipeline: FaultPipeline, poisoned: Poisoned, in_effect: asyncio.Event
) -> None:
    """Every EHR request answered 503 or 429 (in turn), each with `Retry-After: 5`, for 30 s."""
    proxy = pipeline.proxy
    proxy.outage_answers = (Fault(503, retry_after="5"), Fault(429, retry_after="5"))
    proxy.outage = True
    in_effect.set()
    try:
        await asyncio.sleep(30)  # the fault's length
    finally:
        proxy.outage = False


async def poison_each_topic(
    pipeline: FaultPipeline, poisoned: Poisoned, in_effect: asyncio.Event
) -> None:
    """A message that is no protobuf of its topic, on every partition of each consumed topic."""
    producer = AIOKafkaProducer(bootstrap_servers=pipeline.bootstrap, acks="all")
    await producer.start()
    try:
        for topic in (CLINICAL_EVENTS, RECOMMENDATIONS):
            for partition in range(PARTITIONS):
                value = f"not a protobuf: poison {uuid.uuid4().hex}".encode()
                await producer.send_and_wait(topic, value, partition=partition)
                poisoned.setdefault(dead_letter_topic(topic), []).append(value)
    finally:
        await producer.stop()
    in_effect.set()


async def notifications_lost(
    pipeline: FaultPipeline, poisoned: Poisoned, in_effect: asyncio.Event
) -> None:
    """From the next event number the EHR will give, the notifications of a burst of
    consecutive events and of three single ones further on are lost between SEKMET and the
    listener (SEKMET takes them as delivered); the stream's later events show the gaps."""
    counted = await events_counted_by_ehr(pipeline)
    pipeline.notifications.lose(lost_event_numbers(counted, fault_events() - fault_events() // 3))
    in_effect.set()


def lost_event_numbers(counted: int, remaining: int) -> list[int]:
    """Of the `remaining` events after number `counted`: the first ones, a burst (at least 3,
    about 1.5% of them), then three single ones, evenly spaced, the last well before the end
    (so that later events show each gap)."""
    burst = max(3, remaining * 3 // 200)
    step = (remaining - burst) // 4
    singles = [counted + burst + step * k for k in (1, 2, 3)]
    return [*range(counted + 1, counted + burst + 1), *singles]


async def events_counted_by_ehr(pipeline: FaultPipeline) -> int:
    """What SEKMET's `$status` counts for the vital-signs Subscription."""
    subscription_id = (await pipeline.channel_state())["id"]
    answer = await pipeline.ehr_direct.operation("Subscription", subscription_id, STATUS)
    counted = status_from_query(answer).events_since_subscription_start
    assert counted is not None, answer
    return counted


def with_later_versions_duplicated_and_reordered(driven: list[Notification]) -> list[Notification]:
    """Every other change followed by a later version of the same Observation; all of them
    sent twice, shuffled."""
    changes = [*driven, *(next_version(n) for n in driven[::2])]
    return duplicated_and_reordered(changes, seed=len(driven))


CASES = (
    FaultCase("no-fault", "none (the load the pipeline holds)", no_fault),
    FaultCase("broker-paused", "broker paused (SIGSTOP) for 10 s, then resumed", broker_paused),
    FaultCase(
        "listener-killed",
        "listener SIGKILLed, restarted by supervision",
        service_killed("listener"),
    ),
    FaultCase(
        "reasoner-killed",
        "reasoner SIGKILLed, restarted by supervision",
        service_killed("reasoner"),
    ),
    FaultCase(
        "writeback-killed",
        "writeback SIGKILLed, restarted by supervision",
        service_killed("writeback"),
    ),
    FaultCase("triton-killed", "Triton SIGKILLed, started again on its ports", triton_killed),
    FaultCase(
        "triton-shedding",
        "Triton shedding (queue of one: RESOURCE_EXHAUSTED) for 15 s",
        triton_shedding,
    ),
    FaultCase(
        "ehr-503-429",
        "EHR answering 503/429 with Retry-After: 5 to every request for 30 s",
        ehr_unavailable,
    ),
    FaultCase(
        "duplicated-reordered",
        "every notification sent twice, shuffled; later versions before earlier ones",
        no_fault,
        sent=with_later_versions_duplicated_and_reordered,
    ),
    FaultCase(
        "poison-per-topic",
        "a non-protobuf message on every partition of clinical-events and recommendations",
        poison_each_topic,
    ),
    FaultCase(
        "dropped-notification",
        "changes made in the EHR; its notifications of a burst of events and of three single "
        "ones lost on the way to the listener (gap recovery)",
        notifications_lost,
        in_the_ehr=True,
    ),
)


def patient_count(events: int) -> int:
    return max(4, min(40, events // 25))


def settle_timeout_s(events: int) -> float:
    return 180 + events * 0.25


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
@pytest.mark.timeout(600 + fault_events() * 0.6)
async def test_every_change_comes_out_once_at_every_hop(
    case: FaultCase,
    pipeline: FaultPipeline,
    events_per_case: int,
    fault_results: ResultRecorder,
) -> None:
    patients = await create_patients(pipeline.ehr_direct, patient_count(events_per_case))
    sent = case.sent(notifications(patients, events_per_case, case.name))
    dead_before = pipeline.tally.dead_letter_count()
    poisoned: Poisoned = {}
    sender: Driver | EhrWriter
    if case.in_the_ehr:
        sender = EhrWriter(ehr=pipeline.ehr_direct)
        channel_before = await gap_figures(pipeline)
    else:
        sender = Driver(pipeline.http, pipeline.listener_url, pipeline.channel_secret)

    began = time.monotonic()
    try:
        await sender.send_all(
            sent, at_fraction=1 / 3, fault=partial(case.apply, pipeline, poisoned)
        )
        acknowledged_at = sender.last_acknowledged_at
        changes = (
            sender.changes
            if isinstance(sender, EhrWriter)
            else [notification.change for notification in sent]
        )
        ledger = await pipeline.settle(changes, settle_timeout_s(events_per_case))
    finally:
        planned = sorted(pipeline.notifications.lost_event_numbers)
        pipeline.notifications.lost_event_numbers.clear()
    settled_at = time.monotonic()
    if pipeline.stack.collector is not None:
        pipeline.stack.collector.clear()  # the case's spans are not looked at: memory back

    dead_letters = {
        topic: count - dead_before.get(topic, 0)
        for topic, count in ledger.dead_letters.items()
        if count - dead_before.get(topic, 0)
    }
    figures: dict[str, object] = {
        "case": case.name,
        "fault": case.what,
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "events_per_case": events_per_case,
        "changes": ledger.changes,
        "patients": len(patients),
        "notifications_sent": len(sent),
        "not_acknowledged": sender.not_acknowledged,
        "answers": sender.answers,
        "acknowledged_s": round(acknowledged_at - began, 1),
        "settled_s": round(settled_at - began, 1),
        "changes_per_s": round(ledger.changes / (settled_at - began), 1),
        "ledger": {**asdict(ledger), "lost": ledger.lost, "duplicated": ledger.duplicated},
        "dead_letters": dead_letters,
        "poisoned": {topic: len(values) for topic, values in poisoned.items()},
    }
    if case.in_the_ehr:
        after = await gap_figures(pipeline)
        gaps = {name: after[name] - channel_before[name] for name in after}
        figures["notifications_sent"] = gaps["notifications_sent"]
        figures["notifications_lost"] = gaps["notifications_lost"]
        figures["gap_recovery"] = {
            name: gaps[name] for name in ("gaps_detected", "gaps_recovered", "recovered_events")
        }
    fault_results.write(case.name, figures)

    assert ledger.lost == 0, ledger
    assert ledger.duplicated == 0, ledger
    assert ledger.events == ledger.changes
    assert ledger.ehr_writes == ledger.active_recommendations > 0
    new_dead_letters = {
        topic: collections.Counter(values[dead_before.get(topic, 0) :])
        for topic, values in pipeline.tally.dead_letters.items()
        if values[dead_before.get(topic, 0) :]
    }
    assert new_dead_letters == {
        topic: collections.Counter(values) for topic, values in poisoned.items()
    }
    if case.in_the_ehr:  # the notifications were lost, and the listener recovered each
        lost = pipeline.notifications.lost[
            len(pipeline.notifications.lost) - gaps["notifications_lost"] :
        ]
        assert sorted(lost) == planned
        assert len(planned) == len(lost_event_numbers(0, events_per_case - events_per_case // 3))
        assert gaps["gaps_recovered"] >= 1
        assert gaps["recovered_events"] >= len(planned)


async def gap_figures(pipeline: FaultPipeline) -> dict[str, int]:
    """The notifications SEKMET sent the listener through the proxy and those lost there, and
    the listener's own count of its gaps (`GET /subscriptions`) and of the events it
    recovered (`cdsflow_listener_recovered_events_total`), so far."""
    state = await pipeline.channel_state()
    metrics = await pipeline.listener_metrics()
    recovered = re.search(
        rf'^cdsflow_listener_recovered_events_total{{channel="{VITAL_SIGNS_CHANNEL}"}} (\S+)$',
        metrics,
        re.MULTILINE,
    )
    proxy = pipeline.notifications
    return {
        "notifications_sent": proxy.forwarded + len(proxy.lost),
        "notifications_lost": len(proxy.lost),
        "gaps_detected": int(state["gaps_detected"]),
        "gaps_recovered": int(state["gaps_recovered"]),
        "recovered_events": int(float(recovered.group(1))) if recovered else 0,
    }
