"""The listener's channels, derived from the adapters that a deployment runs.

Each adapter declares what it needs the EHR to notify (`subscriptions`: search criteria and
SubscriptionTopic URLs). The listener needs one channel per distinct need, not one per
adapter: criteria that two adapters declare alike (the same parameters and values, in any
order) make one channel, and criteria that a broader one already covers
(`Observation?category=vital-signs&code=…` under `Observation?category=vital-signs`) make
none, since every resource they match reaches the broader channel. The reasoner hands every
clinical event to every adapter, so nothing is lost by sharing a channel.

On an EHR of yours, criteria become R4 criteria channels. On the embedded EHR (SEKMET, which
evaluates a topic's query criteria with the same search engine as a criteria Subscription),
each criteria becomes a SubscriptionTopic that cdsflow defines there (`ehr_topics`) and a
topic-based channel on it, full-resource, with the criteria as its recovery search. A topic
that an adapter names by URL is subscribed to as it is (the EHR must offer it).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

from cdsflow.models import ModelAdapter
from cdsflow.runtime.ehr_topics import NAMED_TOPICS, CriteriaTopic

# the listener's channel names: lowercase letters, digits and hyphens, at most 63
_READABLE = re.compile(r"^[a-z0-9][a-z0-9-]{0,39}$")
_CRITERIA = re.compile(r"^([A-Z][A-Za-z]+)\?(.+)$")
_VALUE_SEPARATOR = re.compile(r"(?<!\\),")


@dataclass(frozen=True)
class SearchCriteria:
    """`Type?name=value[,value…]&…`: every parameter must match, any of its values may."""

    text: str  # as declared
    resource_type: str
    parameters: tuple[tuple[str, frozenset[str]], ...]  # in declared order

    @classmethod
    def parse(cls, text: str) -> SearchCriteria:
        match = _CRITERIA.fullmatch(text.strip())
        if match is None:
            raise ValueError(f"criteria look like Type?param=value, not {text!r}")
        pairs = parse_qsl(match.group(2), keep_blank_values=True)
        if not pairs:
            raise ValueError(f"criteria without parameters: {text!r}")
        parameters = tuple(
            (name, frozenset(_VALUE_SEPARATOR.split(value))) for name, value in pairs
        )
        return cls(text.strip(), match.group(1), parameters)

    @property
    def canonical(self) -> str:
        """The same criteria whatever the order of parameters and values."""
        terms = sorted(f"{name}={','.join(sorted(values))}" for name, values in self.parameters)
        return f"{self.resource_type}?{'&'.join(terms)}"

    def covers(self, other: SearchCriteria) -> bool:
        """Whether every resource that `other` matches is matched by this one too: the same
        type, and each of this one's parameters is implied by one of `other`'s (the same name,
        and `other` allows only values that this one allows; a modified parameter, `code:not`,
        only by the same values)."""
        if self.resource_type != other.resource_type:
            return False
        return all(
            any(
                name == their_name
                and (their_values <= values if ":" not in name else their_values == values)
                for their_name, their_values in other.parameters
            )
            for name, values in self.parameters
        )


@dataclass(frozen=True)
class ListenerChannels:
    """The listener's channels (`CDSFLOW_CHANNELS` entries) and the topics to define on the
    embedded EHR before the listener subscribes to them."""

    channels: tuple[dict[str, Any], ...]
    ehr_topics: tuple[CriteriaTopic, ...] = ()


def needed_criteria(adapters: Iterable[ModelAdapter]) -> list[SearchCriteria]:
    """The adapters' criteria, each need once: alike ones merged, covered ones dropped;
    in the order first declared."""
    distinct: dict[str, SearchCriteria] = {}
    for adapter in adapters:
        for text in adapter.subscriptions.criteria:
            criteria = SearchCriteria.parse(text)
            distinct.setdefault(criteria.canonical, criteria)
    kept = list(distinct.values())
    return [
        criteria
        for criteria in kept
        if not any(other is not criteria and other.covers(criteria) for other in kept)
    ]


def needed_topics(adapters: Iterable[ModelAdapter]) -> list[str]:
    """The topic URLs the adapters name, each once, in the order first declared."""
    return list(dict.fromkeys(url for a in adapters for url in a.subscriptions.topics))


def adapter_channels(adapters: Iterable[ModelAdapter], *, embedded_ehr: bool) -> ListenerChannels:
    """The channels that bring every adapter its data, for the embedded EHR or one of yours."""
    adapters = list(adapters)
    names: set[str] = set()
    channels: list[dict[str, Any]] = []
    topics: list[CriteriaTopic] = []
    named = {SearchCriteria.parse(topic.criteria).canonical: topic for topic in NAMED_TOPICS}
    for criteria in needed_criteria(adapters):
        known = named.get(criteria.canonical)
        plain = known.name if known is not None else criteria_channel_name(criteria)
        name = _unique(plain, criteria.canonical, names)
        if embedded_ehr:
            title = known.title if known is not None else f"{criteria.text} created or updated"
            topic = CriteriaTopic(name, criteria.text, title)
            topics.append(topic)
            channels.append(
                {
                    "name": name,
                    "topic": topic.url,
                    "payload": "full-resource",
                    "recovery_search": criteria.text,
                }
            )
        else:
            channels.append({"name": name, "criteria": criteria.text})
    for url in needed_topics(adapters):
        name = _unique(topic_channel_name(url), url, names)
        channels.append({"name": name, "topic": url, "payload": "full-resource"})
    return ListenerChannels(tuple(channels), tuple(topics))


def criteria_channel_name(criteria: SearchCriteria) -> str:
    """`medicationrequest-active` (the type and the values, when short and plain), else the
    type, the parameter names and a digest: `observation-code-1f3e5a7c`. (Criteria alike to
    a named topic's, `Observation?category=vital-signs`, take its name: `vital-signs`.)"""
    values = [value for _, allowed in criteria.parameters for value in sorted(allowed)]
    readable = "-".join([criteria.resource_type.lower(), *values])
    if _READABLE.fullmatch(readable) and "--" not in readable:
        return readable
    parameters = "-".join(_slug(name) for name, _ in criteria.parameters)[:30].strip("-")
    return f"{criteria.resource_type.lower()}-{parameters}-{_digest(criteria.canonical)}"


def topic_channel_name(url: str) -> str:
    """`topic-encounter-start` for `…/SubscriptionTopic/encounter-start`, else a digest."""
    readable = f"topic-{_slug(url.rstrip('/').rsplit('/', 1)[-1])}"
    if _READABLE.fullmatch(readable) and "--" not in readable:
        return readable
    return f"topic-{_digest(url)}"


def _unique(name: str, identity: str, taken: set[str]) -> str:
    if name in taken:
        name = f"{name[:50]}-{_digest(identity)}"
    taken.add(name)
    return name


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:8]
