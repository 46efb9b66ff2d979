"""Recovering a channel's gap, in-process: the EHR's `$status` says what was missed, `$events`
(where the EHR offers it) returns it, else the recovery search finds what changed."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from cdsflow.contracts import ClinicalEvent, EventSource, NotificationKind
from cdsflow.listener.domain.channels import Channel
from cdsflow.listener.gap_recovery import recover_gap
from cdsflow.listener.intake import NotificationIntake
from cdsflow.listener.subscriptions import ChannelState, ChannelSubscriptions

from .in_process import LIMIT_BYTES, Listener, RecordingPublisher
from .notification_bundles import TOPIC, r4_backport
from .vital_signs import EHR_BASE_URL, respiratory_rate

GAP_RECOVERY = NotificationKind.NOTIFICATION_KIND_GAP_RECOVERY
BACKPORT_OPERATIONS = "http://hl7.org/fhir/uv/subscriptions-backport/OperationDefinition"


def capability(*operations: str) -> dict[str, Any]:
    return {
        "resourceType": "CapabilityStatement",
        "rest": [
            {
                "mode": "server",
                "resource": [
                    {"type": "Observation", "operation": [{"name": "events"}]},
                    {
                        "type": "Subscription",
                        "operation": [
                            {
                                "name": name,
                                "definition": f"{BACKPORT_OPERATIONS}/backport-subscription-{name}",
                            }
                            for name in operations
                        ],
                    },
                ],
            }
        ],
    }


def status_answer(events_counted: int) -> httpx.Response:
    """SEKMET's `$status` answer: a searchset of R4 backport statuses."""
    status = r4_backport("query-status", since=events_counted)["entry"][0]["resource"]
    bundle = {"resourceType": "Bundle", "type": "searchset", "entry": [{"resource": status}]}
    return httpx.Response(200, json=bundle)


class EventsOperation:
    """An EHR's `$events`: the observations it notified, by event number."""

    def __init__(self) -> None:
        self.asked: list[dict[str, str]] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        params = dict(request.url.params)
        self.asked.append(params)
        since, until = int(params["eventsSinceNumber"]), int(params["eventsUntilNumber"])
        numbers = range(since, until + 1)
        events = [(n, f"{EHR_BASE_URL}/Observation/obs-{n}", ()) for n in numbers]
        resources = [respiratory_rate(f"obs-{n}", patient_id=f"pat-{n}") for n in numbers]
        return httpx.Response(200, json=r4_backport("query-event", events, resources, since=until))


def managed_listener(
    publisher: RecordingPublisher,
    pseudonym_key: str,
    operations: tuple[str, ...],
    events_counted: int,
    recovery_search: str | None = None,
    limit_bytes: int = LIMIT_BYTES,
) -> tuple[Listener, EventsOperation]:
    channel = Channel(name="enc", topic=TOPIC, recovery_search=recovery_search)
    listener = Listener(publisher, pseudonym_key, limit_bytes, channels=(channel,))
    events = EventsOperation()
    listener.ehr.routes = {
        "metadata": lambda _: httpx.Response(200, json=capability(*operations)),
        "Subscription/sub-1/$status": lambda _: status_answer(events_counted),
        "Subscription/sub-1/$events": events,
    }
    state = channel_state(listener)
    state.subscription_id, state.status, state.recovery_pending = "sub-1", "active", True
    return listener, events


def intake_of(listener: Listener) -> NotificationIntake:
    intake = listener.app.state.intake
    assert isinstance(intake, NotificationIntake)
    return intake


def subscriptions_of(listener: Listener) -> ChannelSubscriptions:
    subscriptions = intake_of(listener).subscriptions
    assert subscriptions is not None
    return subscriptions


def channel_state(listener: Listener) -> ChannelState:
    return subscriptions_of(listener).states["enc"]


async def recover(listener: Listener) -> None:
    await recover_gap(
        intake_of(listener), subscriptions_of(listener).metrics, channel_state(listener)
    )


def gaps(listener: Listener, outcome: str) -> float:
    value = listener.metrics_registry.registry.get_sample_value(
        "cdsflow_listener_gaps_total", {"channel": "enc", "outcome": outcome}
    )
    return value or 0.0


async def test_the_missed_events_are_asked_of_events_and_published_in_order(
    publisher: RecordingPublisher, pseudonym_key: str
) -> None:
    listener, events = managed_listener(publisher, pseudonym_key, ("status", "events"), 5)
    state = channel_state(listener)
    state.last_event_number = 2

    await recover(listener)

    assert events.asked == [
        {"eventsSinceNumber": "3", "eventsUntilNumber": "5", "content": "full-resource"}
    ]
    assert [e.source.event_number for e in publisher.events] == [3, 4, 5]
    assert {e.source.kind for e in publisher.events} == {GAP_RECOVERY}
    assert {e.source.subscription_id for e in publisher.events} == {"sub-1"}
    assert not state.recovery_pending
    assert (state.last_event_number, state.events_counted_by_ehr) == (5, 5)
    assert gaps(listener, "recovered") == 1


async def test_what_status_counts_as_received_needs_nothing_more(
    publisher: RecordingPublisher, pseudonym_key: str
) -> None:
    listener, events = managed_listener(
        publisher, pseudonym_key, ("status", "events"), 4, recovery_search="Observation?code=x"
    )
    listener.ehr.add(respiratory_rate())
    channel_state(listener).last_event_number = 4

    await recover(listener)

    assert events.asked == []
    assert publisher.events == []
    assert not any("Observation?" in url for url in listener.ehr.reads)  # no search either
    assert gaps(listener, "recovered") == 1


async def test_a_number_that_went_missing_is_asked_for_with_the_later_ones(
    publisher: RecordingPublisher, pseudonym_key: str
) -> None:
    listener, events = managed_listener(publisher, pseudonym_key, ("status", "events"), 4)
    state = channel_state(listener)
    state.last_event_number, state.unrecovered = 4, {2}

    await recover(listener)

    assert events.asked == [
        {"eventsSinceNumber": "2", "eventsUntilNumber": "2", "content": "full-resource"}
    ]
    assert [e.source.event_number for e in publisher.events] == [2]


async def test_after_a_restart_events_start_above_what_the_topic_holds(
    publisher: RecordingPublisher, pseudonym_key: str
) -> None:
    """Nothing received since the start: the highest number of the Subscription read back
    from the topic tells where the missed events begin; what is on it is not published."""
    listener, events = managed_listener(publisher, pseudonym_key, ("status", "events"), 3)
    for number in (1, 2):
        listener.published.remember_event(
            ClinicalEvent(
                event_id=f"earlier-{number}",
                source=EventSource(subscription_id="sub-1", event_number=number),
            )
        )

    await recover(listener)

    assert events.asked[0]["eventsSinceNumber"] == "3"
    assert [e.source.event_number for e in publisher.events] == [3]


async def test_without_events_the_recovery_search_finds_what_changed(
    publisher: RecordingPublisher, pseudonym_key: str
) -> None:
    listener, events = managed_listener(
        publisher, pseudonym_key, ("status",), 3, recovery_search="Observation?code=9279-1"
    )
    listener.ehr.add(respiratory_rate())
    channel_state(listener).last_event_number = 1

    await recover(listener)

    assert events.asked == []
    [event] = publisher.events
    assert (event.source.kind, event.source.event_number) == (GAP_RECOVERY, 0)
    assert gaps(listener, "recovered") == 1


async def test_without_events_nor_a_search_the_gap_is_unrecoverable(
    publisher: RecordingPublisher, pseudonym_key: str
) -> None:
    listener, _ = managed_listener(publisher, pseudonym_key, ("status",), 3)
    state = channel_state(listener)
    state.last_event_number = 1

    await recover(listener)

    assert not state.recovery_pending
    assert gaps(listener, "unrecoverable") == 1
    assert gaps(listener, "recovered") == 0


async def test_an_ehr_that_cannot_answer_leaves_the_recovery_pending(
    publisher: RecordingPublisher, pseudonym_key: str
) -> None:
    listener, _ = managed_listener(publisher, pseudonym_key, ("status", "events"), 3)
    listener.ehr.routes["Subscription/sub-1/$status"] = lambda _: httpx.Response(503)
    state = channel_state(listener)
    state.last_event_number = 1

    await recover(listener)

    assert state.recovery_pending
    assert publisher.events == []
    assert gaps(listener, "recovered") == 0


async def test_numbers_still_in_their_grace_period_are_recovered_too(
    publisher: RecordingPublisher, pseudonym_key: str
) -> None:
    """SEKMET's handshake after a re-activation counts the event it gave up on: the number is
    missing (within its grace) when the recovery runs, and must not be taken as received."""
    listener, _ = managed_listener(publisher, pseudonym_key, ("status", "events"), 2)
    state = channel_state(listener)
    subscriptions_of(listener).note_notification(state, 1, [1])
    subscriptions_of(listener).note_notification(state, 2)  # the handshake, counting 2

    await recover(listener)

    assert [e.source.event_number for e in publisher.events] == [2]
    assert state.missing == {}


async def test_a_notification_in_error_asks_for_a_recovery(
    publisher: RecordingPublisher, pseudonym_key: str
) -> None:
    """The EHR says, in a notification's status, that it failed deliveries."""
    listener, _ = managed_listener(publisher, pseudonym_key, ("status",), 2)
    state = channel_state(listener)
    state.recovery_pending = False
    channel_secret = state.secret
    heartbeat = r4_backport("heartbeat", since=2, status="error")  # names Subscription/sub-1

    async with listener.client() as client:
        answer = await client.post(
            "/fhir/notifications/rest-hook",
            json=heartbeat,
            headers={"Authorization": f"Bearer {channel_secret}"},
        )

    assert answer.status_code == 200
    assert state.recovery_pending


class PagedSearch:
    """An EHR's Observation search: `_lastUpdated=gt…` honoured, sorted by it, in pages of
    `_count` with `next` links, over `resources` (oldest first)."""

    def __init__(self, resources: list[dict[str, Any]]) -> None:
        self.resources = resources
        self.pages = 0

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.pages += 1
        params = request.url.params
        since = datetime.fromisoformat(params["_lastUpdated"].removeprefix("gt"))
        count, offset = int(params["_count"]), int(params.get("_offset", "0"))
        matching = [
            r for r in self.resources if datetime.fromisoformat(r["meta"]["lastUpdated"]) > since
        ]
        page = matching[offset : offset + count]
        bundle: dict[str, Any] = {
            "resourceType": "Bundle",
            "type": "searchset",
            "entry": [{"resource": r, "search": {"mode": "match"}} for r in page],
        }
        if offset + count < len(matching):
            later = params.set("_offset", str(offset + count))
            bundle["link"] = [{"relation": "next", "url": f"{EHR_BASE_URL}/Observation?{later}"}]
        return httpx.Response(200, json=bundle)


async def test_a_gap_longer_than_one_search_is_recovered_by_searching_on(
    publisher: RecordingPublisher, pseudonym_key: str
) -> None:
    """2,500 changes in the look-back, one a second: more than a search reads (20 pages of
    100). The search goes on from the checkpoint it moved until it comes back short: every
    change is published, once."""
    listener, _ = managed_listener(
        publisher,
        pseudonym_key,
        ("status",),
        2_500,
        recovery_search="Observation?code=9279-1",
        limit_bytes=1024 * 1024,  # a page of 100
    )
    start = (datetime.now(UTC) - timedelta(minutes=50)).replace(microsecond=0)
    changes = [
        respiratory_rate(
            f"obs-{n}",
            patient_id=f"pat-{n % 7}",
            last_updated=(start + timedelta(seconds=n)).isoformat(),
        )
        for n in range(2_500)
    ]
    search = PagedSearch(changes)
    listener.ehr.routes["Observation"] = search
    channel_state(listener).last_event_number = 1

    await recover(listener)

    published = [event.resource_id for event in publisher.events]
    assert sorted(published) == sorted(r["id"] for r in changes)
    assert published[:3] == ["obs-0", "obs-1", "obs-2"]  # in the EHR's lastUpdated order
    assert search.pages < 30  # each page read about once (2 searches: 20 + 6 pages)
    assert gaps(listener, "recovered") == 1
