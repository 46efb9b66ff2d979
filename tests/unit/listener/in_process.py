"""The listener's notification router in-process (no broker, no lifespan, no network): a
recording publisher stands in for Kafka and a recording EHR (an httpx transport that serves
resources from a dict) for the EHR, so that every refusal path can be driven."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import httpx
from fastapi import FastAPI
from pydantic import SecretStr

from cdsflow.contracts import ClinicalEvent
from cdsflow.fhir import EhrClient
from cdsflow.listener.domain import UnusableResource
from cdsflow.listener.domain.channels import Channel
from cdsflow.listener.ehr_reads import ehr_http_client
from cdsflow.listener.handlers import (
    ListenerMetrics,
    NotificationIntake,
    PublishUnavailable,
    router,
)
from cdsflow.listener.published_events import PublishedEvents
from cdsflow.listener.settings import Settings
from cdsflow.listener.subscriptions import ChannelSubscriptions, SubscriptionMetrics
from cdsflow.telemetry import MetricsRegistry, PatientKeyer

from .vital_signs import CHANNEL_SECRET, EHR_BASE_URL, as_body

ENDPOINT = "/fhir/notifications/rest-hook"
AUTHORIZED = {
    "Authorization": f"Bearer {CHANNEL_SECRET}",
    "Content-Type": "application/fhir+json; charset=utf-8",
}
LIMIT_BYTES = 4096


class RecordingPublisher:
    def __init__(self, unavailable: bool = False) -> None:
        self.events: list[ClinicalEvent] = []
        self.unusable: list[tuple[ClinicalEvent, UnusableResource]] = []
        self.unavailable = unavailable
        # how long the broker takes to acknowledge
        self.ack_delay_s = 0.0

    async def publish(self, event: ClinicalEvent) -> None:
        if self.unavailable:
            raise PublishUnavailable("broker down")
        if self.ack_delay_s:
            await asyncio.sleep(self.ack_delay_s)
        self.events.append(event)

    async def record_unusable(self, event: ClinicalEvent, unusable: UnusableResource) -> None:
        if self.unavailable:
            raise PublishUnavailable("broker down")
        self.unusable.append((event, unusable))


class RecordingEhr:
    """Serves `resources` (by `Type/id`) under EHR_BASE_URL and records every URL read.

    `answer` overrides the answer to every read (an outage, a redirect, a huge body);
    `unreachable` makes every read fail to connect.
    """

    def __init__(self) -> None:
        self.resources: dict[str, dict[str, Any]] = {}
        self.reads: list[str] = []
        self.answer: httpx.Response | None = None
        self.unreachable = False
        # other answers by path under EHR_BASE_URL (`metadata`, `Subscription/s/$status`)
        self.routes: dict[str, Callable[[httpx.Request], httpx.Response]] = {}

    def add(self, resource: dict[str, Any]) -> None:
        self.resources[f"{resource['resourceType']}/{resource['id']}"] = resource

    def handle(self, request: httpx.Request) -> httpx.Response:
        self.reads.append(str(request.url))
        if self.unreachable:
            raise httpx.ConnectError("EHR down", request=request)
        if self.answer is not None:
            return self.answer
        route = self.routes.get(request.url.path.removeprefix(httpx.URL(EHR_BASE_URL).path + "/"))
        if route is not None:
            return route(request)
        if request.method == "GET" and request.url.params:  # a search: every one of the type
            resource_type = request.url.path.rsplit("/", 1)[-1]
            entries = [
                {"resource": found, "search": {"mode": "match"}}
                for key, found in self.resources.items()
                if key.startswith(f"{resource_type}/")
            ]
            return httpx.Response(
                200, json={"resourceType": "Bundle", "type": "searchset", "entry": entries}
            )
        path = str(request.url).removeprefix(EHR_BASE_URL + "/")
        resource = self.resources.get(path)
        if request.method != "GET" or resource is None:
            return httpx.Response(404, json={"resourceType": "OperationOutcome"})
        return httpx.Response(200, json=resource)

    def client(self, limit_bytes: int) -> EhrClient:
        http = ehr_http_client(1.0, limit_bytes, transport=httpx.MockTransport(self.handle))
        return EhrClient(EHR_BASE_URL, http, attempts=2)


class Listener:
    def __init__(
        self,
        publisher: RecordingPublisher,
        pseudonym_key: str,
        limit_bytes: int = LIMIT_BYTES,
        ehr: RecordingEhr | None = None,
        channels: tuple[Channel, ...] = (),
    ) -> None:
        self.publisher = publisher
        self.ehr = ehr or RecordingEhr()
        self.metrics_registry = MetricsRegistry("listener")
        self.keyer = PatientKeyer(pseudonym_key)
        # read back at once: there is no topic here, nothing was published before
        self.published = PublishedEvents(window_s=3600, max_events=1000, caught_up=True)
        settings = Settings(
            channel_secret=SecretStr(CHANNEL_SECRET),
            ehr_base_url=EHR_BASE_URL,
            max_notification_bytes=limit_bytes,
            retry_after_s=7,
            publish_timeout_s=0.5,
        )
        self.app = FastAPI()
        self.app.include_router(router)
        self.app.state.intake = NotificationIntake(
            settings=settings,
            publisher=publisher,
            patient_keyer=self.keyer,
            metrics=ListenerMetrics.register(self.metrics_registry),
            ehr=self.ehr.client(limit_bytes),
            published=self.published,
            subscriptions=ChannelSubscriptions(
                list(channels),
                CHANNEL_SECRET,
                self.ehr.client(limit_bytes),
                "https://listener.test/fhir/notifications/rest-hook",
                30.0,
                SubscriptionMetrics.register(self.metrics_registry),
            ),
        )

    def client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(
            transport=httpx.ASGITransport(app=self.app), base_url="http://listener.test"
        )

    def count(self, kind: str, outcome: str) -> float:
        value = self.metrics_registry.registry.get_sample_value(
            "cdsflow_listener_notifications_total", {"kind": kind, "outcome": outcome}
        )
        return value or 0.0

    def duplicate_count(self, resource_type: str = "Observation") -> float:
        value = self.metrics_registry.registry.get_sample_value(
            "cdsflow_listener_duplicate_events_total", {"resource_type": resource_type}
        )
        return value or 0.0

    def unusable_count(self, reason: str, resource_type: str = "Observation") -> float:
        value = self.metrics_registry.registry.get_sample_value(
            "cdsflow_listener_unusable_resources_total",
            {"resource_type": resource_type, "reason": reason},
        )
        return value or 0.0


def only_issue(response: httpx.Response) -> dict[str, Any]:
    assert response.headers["content-type"].startswith("application/fhir+json")
    outcome = response.json()
    assert outcome["resourceType"] == "OperationOutcome"
    assert len(outcome["issue"]) == 1
    issue: dict[str, Any] = outcome["issue"][0]
    return issue


async def post_bundle(
    listener: Listener, bundle: dict[str, Any], headers: dict[str, str] = AUTHORIZED
) -> httpx.Response:
    async with listener.client() as client:
        return await client.post(ENDPOINT, content=as_body(bundle), headers=headers)


async def put_resource(
    listener: Listener, resource: dict[str, Any], headers: dict[str, str] = AUTHORIZED
) -> httpx.Response:
    async with listener.client() as client:
        return await client.put(
            f"{ENDPOINT}/{resource['resourceType']}/{resource['id']}",
            content=as_body(resource),
            headers=headers,
        )
