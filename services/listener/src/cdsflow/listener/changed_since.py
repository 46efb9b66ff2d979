"""What changed on the EHR since a channel's checkpoint, searched and published: the answer
to a ping, and the recovery of a gap in a channel's notifications.

The checkpoint is the newest `meta.lastUpdated` found, less a second of overlap (the EHR may
still be writing resources with that same instant); what the overlap finds again is already
published, and the dedupe memory acknowledges it without publishing. Without a checkpoint
(after a start) a search looks back `CDSFLOW_PING_LOOKBACK_S`. One search at a time per
channel.

A search reads at most `_MAX_PAGES` pages of `_PAGE_SIZE`. One that comes back that full may
have left changes out (a long gap, a first search after a start on a busy EHR): it is searched
again from the checkpoint it moved, until a search comes back short of full, so nothing that
changed before the search began is left for a later one that may never come.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from cdsflow.contracts import NotificationKind
from cdsflow.fhir import InvalidResource, validate_resource
from cdsflow.listener.intake import NotificationIntake, publish_acked, record_unusable_acked
from cdsflow.listener.resource_deliveries import resource_delivery
from cdsflow.listener.subscriptions import ChannelState

_OVERLAP = timedelta(seconds=1)
_PAGE_SIZE = 100
_MAX_PAGES = 20
# what a search returns when it may have left some out
_FULL_SEARCH = _PAGE_SIZE * _MAX_PAGES


@dataclass(frozen=True)
class SearchOutcome:
    found: int
    published: int


async def publish_changed_since_checkpoint(
    intake: NotificationIntake,
    channel: ChannelState,
    search: str,
    kind: NotificationKind.ValueType,
) -> SearchOutcome:
    """Search `search` (`Type?params`) for what changed since the channel's checkpoint,
    publish each change (unusable ones recorded), then move the checkpoint; again from there
    while a search comes back full.

    Raises `EhrError`/`httpx.HTTPError` when the EHR cannot be searched and
    `PublishUnavailable` when the broker does not ack; the checkpoint then stays where the
    last search that went through left it."""
    async with channel.search_lock:
        found = published = 0
        while True:
            started_at = datetime.now(UTC)
            since = channel.checkpoint or started_at - timedelta(
                seconds=intake.settings.ping_lookback_s
            )
            matched, changed = await _changed_since(intake, search, since)
            for resource in changed:
                delivery = resource_delivery(intake, resource, kind, started_at)
                if delivery.unusable is not None:
                    await record_unusable_acked(intake, delivery.event, delivery.unusable)
                elif await publish_acked(intake, delivery.event):
                    published += 1
            found += len(changed)
            newest = max(
                (moment for r in changed if (moment := _last_updated(r)) is not None),
                default=None,
            )
            if newest is not None:
                channel.checkpoint = max(since, newest - _OVERLAP)
            if matched < _FULL_SEARCH or channel.checkpoint is None or channel.checkpoint <= since:
                break  # all found, or no way further on (the checkpoint did not move)
    return SearchOutcome(found=found, published=published)


async def _changed_since(
    intake: NotificationIntake, search: str, since: datetime
) -> tuple[int, list[dict[str, Any]]]:
    """How many resources the search matched, and those of them updated after `since`,
    oldest first, that are valid ones of the searched type."""
    resource_type, _, query = search.partition("?")
    params = list(httpx.QueryParams(query).multi_items())
    params += [
        ("_lastUpdated", f"gt{since.isoformat()}"),
        ("_sort", "_lastUpdated"),
        ("_count", str(_PAGE_SIZE)),
    ]
    found = await intake.ehr.search(resource_type, params, max_pages=_MAX_PAGES)
    valid = []
    for resource in found:
        if resource.get("resourceType") != resource_type:
            continue
        try:
            validate_resource(resource)
        except InvalidResource:
            continue  # not what the search asked for; nothing to publish
        valid.append(resource)
    return len(found), valid


def _last_updated(resource: dict[str, Any]) -> datetime | None:
    meta = resource.get("meta")
    value = meta.get("lastUpdated") if isinstance(meta, dict) else None
    if not isinstance(value, str):
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
