"""Gap recovery through the EHR's own operations, on real SEKMET: `$status` tells what the
listener missed and `$events` returns it. SEKMET has `$status` but no `$events`, so a small
double stands in front of it for `$events` alone: it forwards every other request to SEKMET
(with SEKMET's base URL in the answers rewritten to its own) and answers `$events` from the
notifications that SEKMET sent (the dropping proxy keeps each one it saw)."""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from cdsflow.contracts import ClinicalEvent, NotificationKind
from cdsflow.listener.app import create_app
from cdsflow.runtime.processes import free_port
from tests.conftest import EhrEndpoint, KafkaEndpoint
from tests.integration.test_listener import (
    SEKMET_ENCOUNTER_START,
    consume_clinical_events,
    listener_settings,
    records_on,
)
from tests.integration.test_listener_subscriptions import (
    FHIR,
    REST_HOOK,
    active_subscription_id,
    shown,
    switch_off,
    tagged_encounter,
    wait_until_the_ehr_gives_up,
)
from tests.support.asgi import serve_app
from tests.support.notification_proxy import DroppingProxy
from tests.support.polling import eventually
from tests.support.telemetry import recording_telemetry

pytestmark = pytest.mark.integration

EVENTS_DEFINITION = (
    "http://hl7.org/fhir/uv/subscriptions-backport/OperationDefinition/backport-subscription-events"
)


@dataclass
class RecordingProxy(DroppingProxy):
    """The dropping proxy that also keeps every notification Bundle SEKMET sent through it."""

    bundles: list[dict[str, Any]] = field(default_factory=list)

    def app(self, http: httpx.AsyncClient) -> Starlette:
        forwarding = super().app(http)

        async def recording(scope: Any, receive: Any, send: Any) -> None:
            if scope["type"] != "http":
                await forwarding(scope, receive, send)
                return
            body = b""
            more = True
            while more:
                message = await receive()
                body += message.get("body", b"")
                more = message.get("more_body", False)
            if body:
                self.bundles.append(json.loads(body))

            async def replay() -> dict[str, Any]:
                return {"type": "http.request", "body": body, "more_body": False}

            await forwarding(scope, replay, send)

        return recording  # type: ignore[return-value]


@dataclass
class EventsDouble:
    """SEKMET with `$events`: every other request is forwarded."""

    sekmet_base: str
    own_base: str
    notifications: RecordingProxy
    asked: list[dict[str, str]] = field(default_factory=list)

    def app(self, http: httpx.AsyncClient) -> Starlette:
        async def events(request: Request) -> Response:
            params = dict(request.query_params)
            self.asked.append(params)
            since, until = int(params["eventsSinceNumber"]), int(params["eventsUntilNumber"])
            return JSONResponse(self._events_bundle(since, until))

        async def metadata(request: Request) -> Response:
            capability = (await http.get(f"{self.sekmet_base}/metadata")).json()
            for rest in capability["rest"]:
                for resource in rest["resource"]:
                    if resource["type"] == "Subscription":
                        resource.setdefault("operation", []).append(
                            {"name": "events", "definition": EVENTS_DEFINITION}
                        )
            return JSONResponse(capability)

        async def forward(request: Request) -> Response:
            answer = await http.request(
                request.method,
                f"{self.sekmet_base}/{request.path_params['path']}",
                params=str(request.query_params),
                content=await request.body(),
                headers={k: v for k, v in request.headers.items() if k.lower() in _HEADERS},
            )
            body = answer.content.replace(self.sekmet_base.encode(), self.own_base.encode())
            return Response(body, answer.status_code, {"content-type": "application/fhir+json"})

        every = ["GET", "POST", "PUT", "DELETE"]
        return Starlette(
            routes=[
                Route("/fhir/metadata", metadata),
                Route("/fhir/Subscription/{id}/$events", events),
                Route("/fhir/{path:path}", forward, methods=every),
            ]
        )

    def _events_bundle(self, since: int, until: int) -> dict[str, Any]:
        """A `query-event` Bundle of the events SEKMET notified, `since`..`until`."""
        status: dict[str, Any] | None = None
        events, entries = [], []
        for bundle in self.notifications.bundles:
            parameters = bundle["entry"][0]["resource"]["parameter"]
            for parameter in parameters:
                if parameter["name"] != "notification-event":
                    continue
                number = int(
                    next(p for p in parameter["part"] if p["name"] == "event-number")["valueString"]
                )
                if since <= number <= until:
                    status = status or copy.deepcopy(bundle["entry"][0]["resource"])
                    events.append(parameter)
                    entries += bundle["entry"][1:]
        assert status is not None, "asked for events SEKMET never sent"
        status["parameter"] = [
            {"name": "type", "valueCode": "query-event"} if p["name"] == "type" else p
            for p in status["parameter"]
            if p["name"] != "notification-event"
        ] + events
        bundle = {
            "resourceType": "Bundle",
            "type": "history",
            "entry": [
                {"fullUrl": "urn:uuid:5b8c6c0e-0000-4000-8000-000000000001", "resource": status},
                *entries,
            ],
        }
        text = json.dumps(bundle).replace(self.sekmet_base, self.own_base)
        loaded: dict[str, Any] = json.loads(text)
        return loaded


_HEADERS = {"accept", "content-type", "prefer", "if-none-exist", "authorization"}


async def test_what_the_ehr_failed_to_deliver_is_recovered_with_its_events_operation(
    kafka: KafkaEndpoint, ehr: EhrEndpoint, unique: str, pseudonym_key: str
) -> None:
    """A channel with no recovery search: only `$status` and `$events` can recover the
    Encounter whose notification SEKMET gave up on; it reaches Kafka once, as event 2."""
    name = f"encounters-{unique}"
    proxy_port, double_port = free_port(), free_port()
    double_base = f"http://127.0.0.1:{double_port}/fhir"
    settings = listener_settings(
        kafka.bootstrap,
        unique,
        ehr_base_url=double_base,
        channels=[{"name": name, "topic": SEKMET_ENCOUNTER_START}],
        notification_endpoint=f"http://127.0.0.1:{proxy_port}{REST_HOOK}",
        subscription_check_interval_s=0.5,
    )
    with recording_telemetry("listener", pseudonym_key) as (telemetry, _):
        async with (
            httpx.AsyncClient(timeout=30) as http,
            httpx.AsyncClient(base_url=ehr.base_url, headers=FHIR, timeout=30) as fhir,
        ):
            proxy = RecordingProxy("")
            double = EventsDouble(ehr.base_url, double_base, proxy)
            async with (
                serve_app(double.app(http), port=double_port),
                serve_app(create_app(settings, telemetry=telemetry)) as url,
            ):
                proxy.listener_url = url
                async with serve_app(proxy.app(http), port=proxy_port):
                    subscription_id = await active_subscription_id(url, name, settled=True)
                    try:
                        patient = (
                            await fhir.post("/Patient", json={"resourceType": "Patient"})
                        ).json()
                        encounter = tagged_encounter(patient["id"], unique)
                        first = (await fhir.post("/Encounter", json=encounter)).json()
                        await consume_clinical_events(
                            kafka.bootstrap, settings.clinical_events_topic, f"first-{unique}"
                        )

                        proxy.dropping = True
                        missed = (await fhir.post("/Encounter", json=encounter)).json()

                        await wait_until_the_ehr_gives_up(fhir, subscription_id, url, name)
                        proxy.dropping = False

                        async def recovered() -> dict[str, Any] | None:
                            state = (await shown(url))[name]
                            done = state["gaps_recovered"] >= 1 and state["status"] == "active"
                            return state if done else None

                        state = await eventually(recovered, what="the missed event recovered")
                        records = await consume_clinical_events(
                            kafka.bootstrap,
                            settings.clinical_events_topic,
                            f"all-{unique}",
                            count=2,
                        )
                    finally:
                        await switch_off(fhir, subscription_id)
                    metrics = (await http.get(f"{url}/metrics")).text

    assert proxy.dropped >= 1
    assert double.asked == [
        {"eventsSinceNumber": "2", "eventsUntilNumber": "2", "content": "full-resource"}
    ]
    assert state["events_counted_by_ehr"] == 2
    events = {ClinicalEvent.FromString(r.value).resource_id: r for r in records}
    assert set(events) == {first["id"], missed["id"]}
    recovered_event = ClinicalEvent.FromString(events[missed["id"]].value)
    assert recovered_event.source.kind == NotificationKind.NOTIFICATION_KIND_GAP_RECOVERY
    assert (recovered_event.source.subscription_id, recovered_event.source.event_number) == (
        subscription_id,
        2,
    )
    assert recovered_event.patient_reference == f"Patient/{patient['id']}"
    assert await records_on(kafka.bootstrap, settings.clinical_events_topic) == 2
    assert f'cdsflow_listener_recovered_events_total{{channel="{name}"}} 1.0' in metrics


async def test_a_heartbeat_period_of_silence_asks_the_ehrs_status(
    kafka: KafkaEndpoint, ehr: EhrEndpoint, unique: str, pseudonym_key: str
) -> None:
    """SEKMET sends a heartbeat every second; the proxy drops them. After the period and the
    grace the listener notes the silence and asks SEKMET's real `$status`, which counts no
    event: nothing was missed, and nothing is published."""
    name = f"heartbeats-{unique}"
    proxy_port = free_port()
    settings = listener_settings(
        kafka.bootstrap,
        unique,
        ehr_base_url=ehr.base_url,
        channels=[{"name": name, "topic": SEKMET_ENCOUNTER_START, "heartbeat_period_s": 1}],
        notification_endpoint=f"http://127.0.0.1:{proxy_port}{REST_HOOK}",
        subscription_check_interval_s=0.5,
        gap_grace_s=1,
    )
    with recording_telemetry("listener", pseudonym_key) as (telemetry, _):
        async with (
            httpx.AsyncClient(timeout=30) as http,
            httpx.AsyncClient(base_url=ehr.base_url, headers=FHIR, timeout=30) as fhir,
            serve_app(create_app(settings, telemetry=telemetry)) as url,
        ):
            proxy = DroppingProxy(url)
            async with serve_app(proxy.app(http), port=proxy_port):
                subscription_id = await active_subscription_id(url, name, settled=True)
                try:
                    proxy.dropping = True

                    async def silence_checked() -> dict[str, Any] | None:
                        state = (await shown(url))[name]
                        done = state["heartbeat_silences"] >= 1 and state["gaps_recovered"] >= 1
                        return state if done else None

                    state = await eventually(silence_checked, what="the silence noted")
                    proxy.dropping = False
                finally:
                    await switch_off(fhir, subscription_id)
                metrics = (await http.get(f"{url}/metrics")).text

    assert proxy.dropped >= 1
    assert state["events_counted_by_ehr"] == 0
    assert f'cdsflow_listener_heartbeat_silences_total{{channel="{name}"}}' in metrics
    assert f'cdsflow_listener_gaps_total{{channel="{name}",outcome="unrecoverable"}}' not in metrics
    assert await records_on(kafka.bootstrap, settings.clinical_events_topic) == 0


async def test_what_was_sent_while_no_listener_ran_is_recovered_after_the_restart(
    kafka: KafkaEndpoint, ehr: EhrEndpoint, unique: str, pseudonym_key: str
) -> None:
    """Event 1 is published; the listener stops; SEKMET's event 2 finds nobody and it gives
    up. The restarted listener adopts the Subscription, resumes its count at 1 from the topic,
    and `$status` (2) and `$events` bring event 2, once."""
    name = f"encounters-{unique}"
    proxy_port, double_port = free_port(), free_port()
    double_base = f"http://127.0.0.1:{double_port}/fhir"
    settings = listener_settings(
        kafka.bootstrap,
        unique,
        ehr_base_url=double_base,
        channels=[{"name": name, "topic": SEKMET_ENCOUNTER_START}],
        notification_endpoint=f"http://127.0.0.1:{proxy_port}{REST_HOOK}",
        subscription_check_interval_s=0.5,
    )
    async with (
        httpx.AsyncClient(timeout=30) as http,
        httpx.AsyncClient(base_url=ehr.base_url, headers=FHIR, timeout=30) as fhir,
    ):
        proxy = RecordingProxy("")
        double = EventsDouble(ehr.base_url, double_base, proxy)
        async with (
            serve_app(double.app(http), port=double_port),
            serve_app(proxy.app(http), port=proxy_port),
        ):
            with recording_telemetry("listener", pseudonym_key) as (telemetry, _):
                async with serve_app(create_app(settings, telemetry=telemetry)) as url:
                    proxy.listener_url = url
                    subscription_id = await active_subscription_id(url, name, settled=True)
                    patient = (await fhir.post("/Patient", json={"resourceType": "Patient"})).json()
                    encounter = tagged_encounter(patient["id"], unique)
                    first = (await fhir.post("/Encounter", json=encounter)).json()
                    await consume_clinical_events(
                        kafka.bootstrap, settings.clinical_events_topic, f"first-{unique}"
                    )
            try:
                proxy.dropping = True  # no listener
                missed = (await fhir.post("/Encounter", json=encounter)).json()

                async def ehr_gave_up() -> bool:
                    current = (await fhir.get(f"/Subscription/{subscription_id}")).json()
                    return bool(current["status"] == "error")

                await eventually(ehr_gave_up, timeout_s=60, what="the EHR to give up")
                proxy.dropping = False
                with recording_telemetry("listener", pseudonym_key) as (telemetry, _):
                    async with serve_app(create_app(settings, telemetry=telemetry)) as url:
                        proxy.listener_url = url
                        assert await active_subscription_id(url, name, settled=True) == (
                            subscription_id
                        )
                        records = await consume_clinical_events(
                            kafka.bootstrap,
                            settings.clinical_events_topic,
                            f"all-{unique}",
                            count=2,
                        )
            finally:
                await switch_off(fhir, subscription_id)

    assert double.asked == [
        {"eventsSinceNumber": "2", "eventsUntilNumber": "2", "content": "full-resource"}
    ]
    events = [ClinicalEvent.FromString(r.value) for r in records]
    assert [(e.resource_id, e.source.event_number) for e in events] == [
        (first["id"], 1),
        (missed["id"], 2),
    ]
    assert events[1].source.kind == NotificationKind.NOTIFICATION_KIND_GAP_RECOVERY
    assert await records_on(kafka.bootstrap, settings.clinical_events_topic) == 2
