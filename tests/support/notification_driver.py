"""Drive clinical changes into the pipeline, retrying until each is acknowledged.

Each change is one vital-sign Observation (its own id, `meta.versionId`) of a patient that
exists in the EHR. `Driver` PUTs it, full resource, to the listener's rest-hook endpoint with
the channel's secret, as an EHR's rest-hook would; `EhrWriter` creates it in the EHR itself
(SEKMET), whose Subscription then notifies the listener, each change with its event number.
Like an EHR that retries, each sends again after any answer other than 2xx (or no answer)
until acknowledged, so that "acknowledged" is what the pipeline owes: every acknowledged
change must come out once at every hop.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
import uuid
from abc import ABC, abstractmethod
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx

from cdsflow.fhir import EhrClient, EhrError
from cdsflow.runtime.story import DETERIORATING, STABLE, patient_resource, round_observations
from tests.support.topic_tally import change_key


@dataclass(frozen=True)
class Notification:
    patient_reference: str
    observation: dict[str, Any]

    @property
    def change(self) -> str:
        observation = self.observation
        return change_key("Observation", observation["id"], observation["meta"]["versionId"])


async def create_patients(ehr: EhrClient, count: int) -> list[str]:
    """`count` patients in the EHR (half deteriorating, half stable): their references."""
    references = []
    for index in range(count):
        story = DETERIORATING if index % 2 == 0 else STABLE
        created = await ehr.create(patient_resource(story))
        references.append(f"Patient/{created['id']}")
    return references


def notifications(patients: Sequence[str], count: int, label: str) -> list[Notification]:
    """`count` changes spread over `patients`: one vital sign each, from the story rounds."""
    driven = []
    for index in range(count):
        patient = patients[index % len(patients)]
        story = DETERIORATING if patients.index(patient) % 2 == 0 else STABLE
        vitals = story.rounds[index % len(story.rounds)]
        observation = round_observations(patient, vitals, datetime.now(UTC))[index % 5]
        observation["id"] = f"fault-{label}-{index}-{uuid.uuid4().hex[:8]}"
        observation["meta"] = {"versionId": "1"}
        driven.append(Notification(patient, observation))
    return driven


def next_version(notification: Notification) -> Notification:
    """The same Observation changed again (its value and `meta.versionId` moved on)."""
    observation = json.loads(json.dumps(notification.observation))
    observation["meta"]["versionId"] = str(int(observation["meta"]["versionId"]) + 1)
    if "valueQuantity" in observation:
        observation["valueQuantity"]["value"] = observation["valueQuantity"]["value"] + 1
    return Notification(notification.patient_reference, observation)


def duplicated_and_reordered(driven: Sequence[Notification], seed: int) -> list[Notification]:
    """Each notification twice, the whole in a shuffled order (a later version may come
    before an earlier one, a copy long after the first)."""
    doubled = [*driven, *driven]
    random.Random(seed).shuffle(doubled)  # noqa: S311 (an order, not a secret)
    return doubled


@dataclass(kw_only=True)
class Sender(ABC):
    """Sends changes with bounded concurrency, each until acknowledged; counts the answers.
    A subclass says how one change is sent (`_send_once`)."""

    concurrency: int = 16
    acknowledged: int = 0
    not_acknowledged: int = 0  # answers other than 2xx, and no answer: each retried
    answers: dict[str, int] = field(default_factory=dict)
    # time.monotonic() when the last change was acknowledged
    last_acknowledged_at: float = 0.0

    async def send_all(
        self,
        driven: Sequence[Notification],
        at_fraction: float = 0.0,
        fault: Callable[[asyncio.Event], Coroutine[Any, Any, None]] | None = None,
    ) -> None:
        """Every change, acknowledged. With `fault`: the first `at_fraction` of them, then
        the fault starts, and once it says it is in effect (sets the event it is given) the
        rest are sent while it lasts; it is awaited before this returns."""
        split = int(len(driven) * at_fraction) if fault is not None else len(driven)
        await self._send(driven[:split])
        if fault is None:
            return
        in_effect = asyncio.Event()
        faulting = asyncio.create_task(fault(in_effect))
        effect = asyncio.create_task(in_effect.wait())
        await asyncio.wait({faulting, effect}, return_when=asyncio.FIRST_COMPLETED)
        effect.cancel()
        if faulting.done():
            faulting.result()  # a fault that failed before it took effect fails here
        await self._send(driven[split:])
        await faulting

    async def _send(self, driven: Sequence[Notification]) -> None:
        gate = asyncio.Semaphore(self.concurrency)

        async def one(notification: Notification) -> None:
            async with gate:
                await self._until_acknowledged(notification)

        await asyncio.gather(*(one(n) for n in driven))

    async def _until_acknowledged(self, notification: Notification) -> None:
        delay = 0.1
        while True:
            try:
                outcome = await self._send_once(notification)
                if outcome is None:
                    return
            except httpx.HTTPError as error:
                outcome = type(error).__name__
            self._count(outcome)
            self.not_acknowledged += 1
            await asyncio.sleep(delay)  # the EHR's retry backoff, not a wait for a condition
            delay = min(2.0, delay * 2)

    @abstractmethod
    async def _send_once(self, notification: Notification) -> str | None:
        """Send the change once: None when acknowledged (counted), else what was answered."""

    def _acknowledged(self, outcome: str) -> None:
        self.acknowledged += 1
        self.last_acknowledged_at = time.monotonic()
        self._count(outcome)

    def _count(self, outcome: str) -> None:
        self.answers[outcome] = self.answers.get(outcome, 0) + 1


@dataclass
class Driver(Sender):
    """Notifies the listener of each change as an EHR's rest-hook would."""

    http: httpx.AsyncClient
    listener_url: str
    channel_secret: str

    async def _send_once(self, notification: Notification) -> str | None:
        observation = notification.observation
        response = await self.http.put(
            f"{self.listener_url}/Observation/{observation['id']}",
            content=json.dumps(observation),
            headers={
                "Authorization": f"Bearer {self.channel_secret}",
                "Content-Type": "application/fhir+json",
            },
        )
        outcome = str(response.status_code)
        if not response.is_success:
            return outcome
        self._acknowledged(outcome)
        return None


@dataclass
class EhrWriter(Sender):
    """Creates each change in the EHR itself (a POST of the Observation without its id: the
    EHR gives it one); `changes` holds what the EHR created, as change keys, in the order
    acknowledged. The EHR's Subscription notifies the listener."""

    ehr: EhrClient
    changes: list[str] = field(default_factory=list)

    async def _send_once(self, notification: Notification) -> str | None:
        observation = {k: v for k, v in notification.observation.items() if k not in ("id", "meta")}
        try:
            created = await self.ehr.create(observation)
        except EhrError as error:
            return str(error.status_code)
        self.changes.append(change_key("Observation", created["id"], created["meta"]["versionId"]))
        self._acknowledged("201")
        return None
