"""The listener's channels derived from the adapters: one channel per distinct need, criteria
on an EHR of yours, topics that cdsflow defines on the embedded EHR, and `cdsflow up`'s
listener configured with them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from cdsflow.listener.domain.channels import Channel
from cdsflow.models import ModelAdapter, parse_adapter
from cdsflow.runtime.adapter_channels import (
    SearchCriteria,
    adapter_channels,
    criteria_channel_name,
    needed_criteria,
    topic_channel_name,
)
from cdsflow.runtime.ehr_topics import TOPIC_EXTENSION, VITAL_SIGNS_TOPIC
from cdsflow.runtime.stack import (
    DEFAULT_CHANNELS,
    EMBEDDED_EHR_CHANNELS,
    StackOptions,
    listener_channels_of,
    service_environments,
)
from tests.unit.model_adapters.adapter_fixtures import (
    ADAPTERS,
    MEDICATION_SAFETY,
    deterioration_adapter,
    medication_adapter,
)

EGFR_CRITERIA = (
    "Observation?code=http://loinc.org|33914-3,http://loinc.org|48642-3,"
    "http://loinc.org|48643-1,http://loinc.org|62238-1,http://loinc.org|98979-8,"
    "http://loinc.org|69405-9"
)
VITAL_SIGNS = "Observation?category=vital-signs"
ACTIVE_ORDERS = "MedicationRequest?status=active"
ENCOUNTER_START = "http://sekmet.dev/fhir/SubscriptionTopic/encounter-start"
ENDPOINTS = {
    "broker": "127.0.0.1:9092",
    "triton_grpc": "127.0.0.1:8001",
    "ehr": "http://127.0.0.1:8080/fhir",
    "otlp": "http://127.0.0.1:4318",
    "listener": "http://127.0.0.1:8081/fhir/notifications/rest-hook",
    "writeback": "http://127.0.0.1:8083",
    "jwks": "http://127.0.0.1:8090/jwks.json",
    "ehr_client_issuer": "https://sandbox.cdsflow.dev",
}


def adapter_subscribing(criteria: list[str], topics: tuple[str, ...] = ()) -> ModelAdapter:
    """The medication-safety adapter with other `subscriptions`."""
    text = MEDICATION_SAFETY.read_text(encoding="utf-8")
    start, end = text.index("subscriptions:\n"), text.index("\nevaluation:")
    block = "subscriptions:\n  criteria: " + json.dumps(criteria)
    block += "\n  topics: " + json.dumps(list(topics)) + "\n"
    return parse_adapter(text[:start] + block + text[end:], MEDICATION_SAFETY)


def test_the_shipped_adapters_need_three_channels_on_an_ehr_of_yours() -> None:
    derived = adapter_channels([deterioration_adapter(), medication_adapter()], embedded_ehr=False)
    assert [channel["criteria"] for channel in derived.channels] == [
        VITAL_SIGNS,
        EGFR_CRITERIA,
        ACTIVE_ORDERS,
    ]
    names = [channel["name"] for channel in derived.channels]
    assert names[0] == "vital-signs"  # the name of cdsflow's own topic for these criteria
    assert names[1].startswith("observation-code-")
    assert names[2] == "medicationrequest-active"
    assert derived.ehr_topics == ()
    for channel in derived.channels:
        Channel.model_validate(channel)  # the listener takes it


def test_the_deterioration_adapter_alone_needs_the_channel_up_made_before_adapters() -> None:
    adapter = deterioration_adapter()
    assert adapter_channels([adapter], embedded_ehr=False).channels == DEFAULT_CHANNELS
    embedded = adapter_channels([adapter], embedded_ehr=True)
    assert embedded.channels == EMBEDDED_EHR_CHANNELS
    assert embedded.ehr_topics == (VITAL_SIGNS_TOPIC,)


def test_on_the_embedded_ehr_each_criteria_becomes_a_topic_defined_there() -> None:
    derived = adapter_channels([deterioration_adapter(), medication_adapter()], embedded_ehr=True)
    topics = {topic.url: topic for topic in derived.ehr_topics}
    assert len(topics) == len(derived.channels) == 3
    for channel in derived.channels:
        Channel.model_validate(channel)
        assert channel["payload"] == "full-resource"
        topic = topics[channel["topic"]]
        assert topic.name == channel["name"]
        assert channel["recovery_search"] == topic.criteria
        basic = topic.as_basic()
        assert basic["id"] == topic.basic_id
        [trigger] = [e for e in basic["extension"] if e["url"].endswith(".resourceTrigger")]
        parts = {p["url"]: p for p in trigger["extension"]}
        resource = topic.criteria.partition("?")[0]
        assert parts["resource"]["valueUri"].endswith(f"/{resource}")
        [current] = parts["queryCriteria"]["extension"]
        assert f"{resource}?{current['valueString']}" == topic.criteria
        [url] = [e for e in basic["extension"] if e["url"] == f"{TOPIC_EXTENSION}.url"]
        assert url["valueUri"] == topic.url
    assert [topic.criteria for topic in derived.ehr_topics] == [
        VITAL_SIGNS,
        EGFR_CRITERIA,
        ACTIVE_ORDERS,
    ]


def test_two_adapters_needing_the_same_data_share_one_channel() -> None:
    reordered = ",".join(reversed(EGFR_CRITERIA.partition("=")[2].split(",")))
    first = adapter_subscribing([EGFR_CRITERIA, "Observation?status=final&category=laboratory"])
    second = adapter_subscribing(
        [f"Observation?code={reordered}", "Observation?category=laboratory&status=final"]
    )
    derived = adapter_channels([first, second], embedded_ehr=False)
    assert [c["criteria"] for c in derived.channels] == [
        EGFR_CRITERIA,
        "Observation?status=final&category=laboratory",
    ]


def test_criteria_that_a_broader_one_covers_need_no_channel_of_their_own() -> None:
    narrow = adapter_subscribing([f"{VITAL_SIGNS}&code=http://loinc.org|9279-1"])
    broad = adapter_subscribing([VITAL_SIGNS])
    assert [c.text for c in needed_criteria([narrow, broad])] == [VITAL_SIGNS]
    two_codes = adapter_subscribing(["Observation?code=a,b"])
    one_code = adapter_subscribing(["Observation?code=b"])
    assert [c.text for c in needed_criteria([one_code, two_codes])] == ["Observation?code=a,b"]


@pytest.mark.parametrize(
    ("broad", "narrow", "covers"),
    [
        (VITAL_SIGNS, f"{VITAL_SIGNS}&subject=Patient/1", True),
        ("Observation?code=a,b", "Observation?code=a", True),
        ("Observation?code=a", "Observation?code=a,b", False),  # b would be missed
        (VITAL_SIGNS, "Observation?category=laboratory", False),
        (VITAL_SIGNS, "Condition?category=vital-signs", False),
        ("Observation?code:not=a,b", "Observation?code:not=a", False),  # a modifier: alike only
        ("Observation?code:not=a", "Observation?code:not=a&status=final", True),
    ],
)
def test_which_criteria_cover_which(broad: str, narrow: str, covers: bool) -> None:
    assert SearchCriteria.parse(broad).covers(SearchCriteria.parse(narrow)) is covers


def test_topics_are_subscribed_to_as_named_each_once() -> None:
    first = adapter_subscribing([ACTIVE_ORDERS], (ENCOUNTER_START,))
    second = adapter_subscribing([], (ENCOUNTER_START, "https://ehr.example/topics/x%y"))
    derived = adapter_channels([first, second], embedded_ehr=True)
    topic_channels = [c for c in derived.channels if "recovery_search" not in c]
    assert [(c["name"], c["topic"]) for c in topic_channels] == [
        ("topic-encounter-start", ENCOUNTER_START),
        (topic_channel_name("https://ehr.example/topics/x%y"), "https://ehr.example/topics/x%y"),
    ]
    assert topic_channel_name("https://ehr.example/topics/x%y") == "topic-x-y"
    assert [t.criteria for t in derived.ehr_topics] == [ACTIVE_ORDERS]  # URLs are not defined


def test_channel_names_are_plain_and_distinct() -> None:
    criteria = ["Observation?code=abc", "Observation?category=abc", "Observation?code=ABC"]
    derived = adapter_channels([adapter_subscribing(criteria)], embedded_ehr=False)
    names = [c["name"] for c in derived.channels]
    assert len(set(names)) == 3
    assert names[0] == "observation-abc"
    assert names[1].startswith("observation-abc-")  # the same plain name, made distinct
    assert names[2].startswith("observation-code-")  # not plain: parameter names and a digest
    long = SearchCriteria.parse("Observation?code=" + "x" * 80)
    assert len(criteria_channel_name(long)) <= 63
    for channel in derived.channels:
        Channel.model_validate(channel)


@pytest.mark.parametrize("text", ["Observation", "observation?code=a", "Observation?"])
def test_malformed_criteria_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match="criteria"):
        SearchCriteria.parse(text)


def _listener_channels(**options: Any) -> list[dict[str, Any]]:
    stack = StackOptions(work_dir=Path("/tmp/unused"), model_repository=Path("models"), **options)
    environment = service_environments(stack, ENDPOINTS)["listener"]
    channels: list[dict[str, Any]] = json.loads(environment["CDSFLOW_CHANNELS"])
    return channels


def test_up_gives_the_listener_the_channels_of_the_adapters_it_runs() -> None:
    folder = _listener_channels(with_ehr=True, adapters=(ADAPTERS,))
    files = _listener_channels(
        with_ehr=True, adapters=(ADAPTERS / "deterioration-risk.yaml", MEDICATION_SAFETY)
    )
    assert folder == files
    assert [c["recovery_search"] for c in folder] == [VITAL_SIGNS, EGFR_CRITERIA, ACTIVE_ORDERS]
    options = StackOptions(
        work_dir=Path("/tmp/unused"),
        model_repository=Path("models"),
        with_ehr=True,
        adapters=(ADAPTERS,),
    )
    assert [t.url for t in listener_channels_of(options).ehr_topics] == [c["topic"] for c in folder]
    yours = _listener_channels(ehr_base_url="https://ehr.example/fhir", adapters=(ADAPTERS,))
    assert [c["criteria"] for c in yours] == [VITAL_SIGNS, EGFR_CRITERIA, ACTIVE_ORDERS]
    # channels given explicitly win; no adapters given: those of the shipped adapters
    given = ({"name": "mine", "criteria": ACTIVE_ORDERS},)
    assert _listener_channels(with_ehr=True, adapters=(ADAPTERS,), channels=given) == list(given)
    default = _listener_channels(ehr_base_url="https://ehr.example/fhir")
    assert default == yours
