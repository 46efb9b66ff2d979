"""The whole pipeline on parts that a fault test owns, so that it may pause or kill any of them.

A broker (Tansu), Triton and an EHR (SEKMET) of its own, SEKMET reached through a
fault-injecting proxy, and the three services as `cdsflow up` runs them (`Stack`, given those
parts): supervised, so that a service SIGKILLed is started again. The listener keeps the
vital-signs channel on SEKMET as it does on the embedded EHR (a topic-based Subscription,
full-resource, with `Observation?category=vital-signs` as its recovery search); SEKMET
notifies it through a `DroppingProxy` (`notifications`), which may lose some of them. A
`TopicTally` follows the topics from their start. `settle` waits until everything driven has
gone through and returns the `Ledger`: what went in, what came out at each hop, and what was
lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Any

import httpx

from cdsflow.contracts import CLINICAL_EVENTS, RECOMMENDATIONS
from cdsflow.fhir import EhrClient
from cdsflow.runtime.ehr_topics import define_vital_signs_topic
from cdsflow.runtime.parts import start_broker, start_ehr, start_triton
from cdsflow.runtime.processes import Command, ManagedProcess, http_ok
from cdsflow.runtime.stack import EMBEDDED_EHR_CHANNELS, REST_HOOK_PATH, Stack, StackOptions
from tests.support.asgi import serve_app
from tests.support.fault_proxy import FaultInjectingProxy, fault_injecting_proxy
from tests.support.notification_proxy import DroppingProxy
from tests.support.own_parts import own_part
from tests.support.polling import eventually
from tests.support.topic_tally import TopicTally, create_topics, group_caught_up, tallying

# the services' consumer groups (their settings' defaults)
REASONER_GROUP = "cdsflow-reasoner"
WRITEBACK_GROUP = "cdsflow-writeback"
# what a vital-sign Observation is scored by: the shipped deterioration adapter, version 1
EXPECTED_MODELS = frozenset({("deterioration-risk", "1")})
RECOMMENDATION_TAG = "urn:cdsflow:recommendation"
PARTITIONS = 3
VITAL_SIGNS_CHANNEL = str(EMBEDDED_EHR_CHANNELS[0]["name"])


@dataclass
class FaultPipeline:
    broker: ManagedProcess
    triton: ManagedProcess
    ehr: ManagedProcess  # SEKMET itself (the services reach it through `proxy`)
    proxy: FaultInjectingProxy
    stack: Stack
    tally: TopicTally
    http: httpx.AsyncClient
    work_dir: Path
    # between SEKMET and the listener: the vital-signs Subscription's notifications
    notifications: DroppingProxy

    @property
    def bootstrap(self) -> str:
        return self.broker.endpoints["broker"]

    @property
    def listener_url(self) -> str:
        return self.stack.endpoints["listener"]

    @property
    def channel_secret(self) -> str:
        return self.stack.options.channel_secret

    @property
    def ehr_direct(self) -> EhrClient:
        """SEKMET without the proxy (the test's own reads and setup never meet a fault)."""
        return EhrClient(self.ehr.endpoints["ehr"], self.http)

    async def channel_state(self) -> dict[str, Any]:
        """The vital-signs channel as the listener shows it at `GET /subscriptions`."""
        answer = await self.http.get(f"{self.service('listener').endpoints['http']}/subscriptions")
        answer.raise_for_status()
        [state] = [s for s in answer.json() if s["channel"] == VITAL_SIGNS_CHANNEL]
        return dict(state)

    async def listener_metrics(self) -> str:
        answer = await self.http.get(f"{self.service('listener').endpoints['http']}/metrics")
        answer.raise_for_status()
        return answer.text

    def service(self, name: str) -> ManagedProcess:
        return next(part for part in self.stack.parts if part.name == name)

    async def kill_service(self, name: str, killed: asyncio.Event | None = None) -> None:
        """SIGKILL the service (then set `killed`); return once supervision started it again
        and it is ready."""
        part = self.service(name)
        old_pid = part.process.pid
        os.kill(old_pid, signal.SIGKILL)
        if killed is not None:
            killed.set()
        readyz = f"{part.endpoints['http']}/readyz"

        async def back() -> bool:
            return part.process.pid != old_pid and await _answers_200(self.http, readyz)

        await eventually(back, timeout_s=120, interval_s=0.2, what=f"the {name} to come back")

    async def kill_triton(
        self, in_effect: asyncio.Event | None = None, model_repository: Path | None = None
    ) -> None:
        """SIGKILL Triton (then set `in_effect`) and start it again on the same ports (with
        `model_repository` instead, when given); return once it is ready."""
        os.kill(self.triton.process.pid, signal.SIGKILL)
        await asyncio.to_thread(self.triton.process.wait)
        if in_effect is not None:
            in_effect.set()
        if model_repository is not None:
            self.triton.command = _with_model_repository(self.triton.command, model_repository)
        await asyncio.to_thread(self.triton.restart)
        ready = f"{self.triton.endpoints['triton_http']}/v2/health/ready"
        await eventually(
            partial(asyncio.to_thread, http_ok, ready),
            timeout_s=180,
            interval_s=0.5,
            what="Triton ready again",
        )

    async def settle(self, changes: Sequence[str], timeout_s: float) -> Ledger:
        """Wait (bounded) until every change has its event, every event its recommendations,
        and both consumer groups have committed all they were given (a message is committed
        once handled: the writeback's write is done or dead-lettered); then the ledger of what
        went through, with the EHR's writes counted."""

        async def settled() -> bool:
            ledger = ledger_of(self.tally, changes)
            if ledger.missing_events or ledger.events_without_recommendation:
                return False
            return await group_caught_up(
                self.bootstrap, REASONER_GROUP, CLINICAL_EVENTS, PARTITIONS
            ) and await group_caught_up(
                self.bootstrap, WRITEBACK_GROUP, RECOMMENDATIONS, PARTITIONS
            )

        await eventually(
            settled, timeout_s=timeout_s, interval_s=1.0, what="the pipeline to settle"
        )
        active = active_recommendation_ids(self.tally, changes)
        writes = await recommendation_writes(self.ehr_direct, active)
        return ledger_of(self.tally, changes, writes)


def _with_model_repository(command: Command, model_repository: Path) -> Command:
    argv = tuple(
        f"--model-repository={model_repository}" if arg.startswith("--model-repository=") else arg
        for arg in command.argv
    )
    return replace(command, argv=argv)


async def _answers_200(http: httpx.AsyncClient, url: str) -> bool:
    try:
        return (await http.get(url)).status_code == 200
    except httpx.HTTPError:
        return False


@dataclass
class Ledger:
    """What went through, counted by idempotency key at each hop."""

    changes: int  # distinct resource changes driven (each notified at least once)
    events: int = 0  # distinct event ids on the clinical-events topic for those changes
    missing_events: int = 0  # changes with no event
    changes_with_several_events: int = 0
    event_copies: int = 0  # messages beyond the first per event id (redeliveries)
    recommendations: int = 0  # distinct recommendation ids for those events
    events_without_recommendation: int = 0  # events missing an expected model version's
    extra_recommendations: int = 0  # beyond one per event per model version
    recommendation_copies: int = 0
    active_recommendations: int = 0
    ehr_writes: int = 0  # RiskAssessments in SEKMET for those active recommendations
    active_without_write: int = 0
    active_with_several_writes: int = 0
    dead_letters: dict[str, int] = field(default_factory=dict)

    @property
    def lost(self) -> int:
        return self.missing_events + self.events_without_recommendation + self.active_without_write

    @property
    def duplicated(self) -> int:
        """Effects beyond exactly one: events per change, recommendations per event and model
        version, EHR writes per active recommendation (message copies are not effects)."""
        return (
            self.changes_with_several_events
            + self.extra_recommendations
            + self.active_with_several_writes
        )


def active_recommendation_ids(tally: TopicTally, changes: Sequence[str]) -> list[str]:
    return [
        seen.recommendation_id
        for change in set(changes)
        for event_id in tally.event_ids_of_change.get(change, set())
        for seen in tally.recommendations_of_event.get(event_id, set())
        if seen.active
    ]


def ledger_of(
    tally: TopicTally, changes: Sequence[str], writes: dict[str, int] | None = None
) -> Ledger:
    """The ledger of `changes` (change keys) from the tally, and from the EHR's `writes`
    (recommendation id -> RiskAssessments holding it) when given."""
    ledger = Ledger(changes=len(set(changes)))
    active: list[str] = []
    for change in set(changes):
        event_ids = tally.event_ids_of_change.get(change, set())
        if not event_ids:
            ledger.missing_events += 1
        ledger.changes_with_several_events += len(event_ids) > 1
        for event_id in event_ids:
            ledger.events += 1
            ledger.event_copies += tally.event_copies[event_id] - 1
            made = tally.recommendations_of_event.get(event_id, set())
            ledger.recommendations += len(made)
            models = [(seen.adapter_id, seen.model_version) for seen in made]
            ledger.events_without_recommendation += not set(models) >= EXPECTED_MODELS
            ledger.extra_recommendations += len(models) - len(set(models))
            for seen in made:
                ledger.recommendation_copies += (
                    tally.recommendation_copies[seen.recommendation_id] - 1
                )
                if seen.active:
                    active.append(seen.recommendation_id)
    ledger.active_recommendations = len(active)
    if writes is not None:
        for recommendation_id in active:
            written = writes.get(recommendation_id, 0)
            ledger.ehr_writes += written
            ledger.active_without_write += written == 0
            ledger.active_with_several_writes += written > 1
    else:
        ledger.active_without_write = len(active)
    ledger.dead_letters = tally.dead_letter_count()
    return ledger


async def recommendation_writes(
    ehr: EhrClient, recommendation_ids: Sequence[str], concurrency: int = 8
) -> dict[str, int]:
    """Recommendation id -> how many RiskAssessments in the EHR carry its tag (SEKMET
    searches RiskAssessment by `_tag`, not by subject)."""
    gate = asyncio.Semaphore(concurrency)

    async def count(recommendation_id: str) -> tuple[str, int]:
        async with gate:
            criteria = [("_tag", f"{RECOMMENDATION_TAG}|{recommendation_id}")]
            return recommendation_id, await ehr.search_count("RiskAssessment", criteria)

    return dict(await asyncio.gather(*(count(rid) for rid in recommendation_ids)))


async def _supervise(stack: Stack) -> None:
    """What `cdsflow up` does between its checks: restart the services that exited."""
    while True:
        await asyncio.to_thread(stack.supervise)
        await asyncio.sleep(0.2)


@contextlib.asynccontextmanager
async def fault_pipeline(
    work_dir: Path, model_repository: Path, service_env: dict[str, str] | None = None
) -> AsyncIterator[FaultPipeline]:
    """The parts, the proxy, the supervised services and the tally, for the block.

    `service_env`: settings given to the three services (the stack passes this process's
    environment on to them)."""
    async with (
        own_part(start_broker, work_dir / "broker") as broker,
        own_part(partial(start_triton, model_repository), work_dir / "triton") as triton,
        own_part(start_ehr, work_dir / "ehr") as ehr,
    ):
        await create_topics(broker.endpoints["broker"], PARTITIONS)
        await asyncio.to_thread(define_vital_signs_topic, ehr.endpoints["ehr"])
        notifications = DroppingProxy("")  # its listener is known once the stack starts it
        async with (
            fault_injecting_proxy(ehr.endpoints["ehr"]) as proxy,
            httpx.AsyncClient(timeout=30) as http,
            serve_app(notifications.app(http)) as notification_url,
            tallying(broker.endpoints["broker"], PARTITIONS) as tally,
        ):
            options = StackOptions(
                work_dir=work_dir / "stack",
                model_repository=model_repository,
                ehr_base_url=proxy.base_url,
                kafka_bootstrap=broker.endpoints["broker"],
                triton_grpc_url=triton.endpoints["triton_grpc"],
                kafka_idempotence=False,  # Tansu refuses the idempotent producer
                # the vital-signs topic's Subscription, which SEKMET notifies through the
                # dropping proxy (most cases notify the listener themselves, as the EHR would)
                channels=EMBEDDED_EHR_CHANNELS,
                listener_public_url=f"{notification_url}{REST_HOOK_PATH}",
            )
            stack = Stack(options)
            with _environment(service_env or {}):
                await _start_behind(stack, notifications)
            supervision = asyncio.create_task(_supervise(stack))
            try:
                yield FaultPipeline(
                    broker, triton, ehr, proxy, stack, tally, http, work_dir, notifications
                )
            finally:
                supervision.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await supervision
                await asyncio.to_thread(stack.stop)


async def _start_behind(stack: Stack, notifications: DroppingProxy) -> None:
    """Start the stack; once its listener's address is chosen (before the listener starts and
    asks SEKMET for its Subscription, whose handshake comes through the proxy), the proxy
    forwards to it."""
    starting = asyncio.create_task(asyncio.to_thread(stack.start))

    async def listener_known() -> bool:
        return "listener" in stack.endpoints or starting.done()

    await eventually(listener_known, timeout_s=120, interval_s=0.02, what="the listener's port")
    notifications.listener_url = stack.endpoints.get("listener", "").removesuffix(REST_HOOK_PATH)
    await starting


@contextlib.contextmanager
def _environment(values: dict[str, str]) -> Any:
    """`values` in os.environ while the services are spawned (they inherit it)."""
    before = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in before.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def shedding_repository(folder: Path, model_repository: Path, config: str) -> Path:
    """A copy of `model_repository` whose deterioration_risk CPU configuration is `config`."""
    copy = folder / "models"
    shutil.copytree(model_repository, copy)
    (copy / "deterioration_risk" / "configs" / "cpu.pbtxt").write_text(config, encoding="utf-8")
    return copy
