"""A ping from a channel with criteria is answered by a search for what changed."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx

from cdsflow.contracts import NotificationKind
from cdsflow.listener.domain.channels import Channel
from cdsflow.listener.subscriptions import channel_secret

from .in_process import ENDPOINT, Listener, RecordingPublisher, only_issue
from .vital_signs import CHANNEL_SECRET, respiratory_rate

PINGS = Channel(name="pings", criteria="Observation?code=9279-1", payload="empty")


def pinging_listener(publisher: RecordingPublisher, pseudonym_key: str) -> Listener:
    return Listener(publisher, pseudonym_key, channels=(PINGS,))


async def ping(listener: Listener, secret: str) -> httpx.Response:
    async with listener.client() as client:
        return await client.post(ENDPOINT, headers={"Authorization": f"Bearer {secret}"})


def changed(resource_id: str, last_updated: str) -> dict[str, object]:
    resource = respiratory_rate(patient_id="pat-9")
    resource["id"] = resource_id
    resource["meta"] = {"versionId": "1", "lastUpdated": last_updated}
    return resource


async def test_a_ping_publishes_what_the_search_finds_and_moves_the_checkpoint(
    pseudonym_key: str,
) -> None:
    publisher = RecordingPublisher()
    listener = pinging_listener(publisher, pseudonym_key)
    # within the first search's look-back (an hour)
    newest = (datetime.now(UTC) - timedelta(minutes=10)).replace(microsecond=0)
    listener.ehr.add(changed("obs-1", newest.isoformat()))
    secret = channel_secret(CHANNEL_SECRET, PINGS)

    first = await ping(listener, secret)

    assert first.status_code == 200
    assert "1 changed found, 1 published" in only_issue(first)["diagnostics"]
    [event] = publisher.events
    assert event.resource_id == "obs-1"
    assert event.source.kind == NotificationKind.NOTIFICATION_KIND_REST_HOOK_PING
    [search] = listener.ehr.reads
    query = httpx.URL(search).params
    assert query["code"] == "9279-1"
    assert query["_lastUpdated"].startswith("gt")
    assert query["_sort"] == "_lastUpdated"

    listener.ehr.add(changed("obs-2", (newest + timedelta(minutes=5)).isoformat()))
    second = await ping(listener, secret)

    assert "2 changed found, 1 published" in only_issue(second)["diagnostics"]
    assert [e.resource_id for e in publisher.events] == ["obs-1", "obs-2"]
    # the second search starts a second before the newest change the first one found
    checkpoint = newest - timedelta(seconds=1)
    assert httpx.URL(listener.ehr.reads[1]).params["_lastUpdated"] == f"gt{checkpoint.isoformat()}"
    assert listener.count("rest-hook-ping", "searched") == 2


async def test_a_ping_with_the_master_secret_names_no_channel_and_searches_nothing(
    listener: Listener, publisher: RecordingPublisher
) -> None:
    response = await ping(listener, CHANNEL_SECRET)

    assert response.status_code == 200
    assert listener.ehr.reads == []
    assert publisher.events == []
    assert listener.count("rest-hook-ping", "acknowledged") == 1


async def test_an_ehr_that_cannot_be_searched_is_asked_to_send_the_ping_again(
    pseudonym_key: str,
) -> None:
    publisher = RecordingPublisher()
    listener = pinging_listener(publisher, pseudonym_key)
    listener.ehr.unreachable = True

    response = await ping(listener, channel_secret(CHANNEL_SECRET, PINGS))

    assert response.status_code == 503
    assert response.headers["retry-after"] == "7"
    assert publisher.events == []


async def test_a_search_the_ehr_refuses_is_acknowledged_with_a_warning(
    pseudonym_key: str,
) -> None:
    publisher = RecordingPublisher()
    listener = pinging_listener(publisher, pseudonym_key)
    listener.ehr.answer = httpx.Response(400, json={"resourceType": "OperationOutcome"})

    response = await ping(listener, channel_secret(CHANNEL_SECRET, PINGS))

    assert response.status_code == 200
    assert only_issue(response)["severity"] == "warning"
    assert listener.count("rest-hook-ping", "search-refused") == 1
