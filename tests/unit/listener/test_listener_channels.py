"""Channels as configured, the Subscriptions they become, and their secrets."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import SecretStr, ValidationError

from cdsflow.listener.domain.channels import (
    BACKPORT,
    CHANNEL_TAG_SYSTEM,
    Channel,
    channel_tag,
    subscription_resource,
)
from cdsflow.listener.settings import Settings
from cdsflow.listener.subscriptions import channel_secret

TOPIC = "http://example.org/fhir/SubscriptionTopic/encounter-start"
ENDPOINT = "https://cdsflow.example/fhir/notifications/rest-hook"


def test_a_criteria_channel_is_a_classic_r4_rest_hook() -> None:
    channel = Channel(name="vitals", criteria="Observation?category=vital-signs")

    subscription = subscription_resource(channel, ENDPOINT, "s3cret")

    assert subscription["criteria"] == "Observation?category=vital-signs"
    assert subscription["status"] == "requested"
    assert subscription["channel"] == {
        "type": "rest-hook",
        "endpoint": ENDPOINT,
        "header": ["Authorization: Bearer s3cret"],
        "payload": "application/fhir+json",
    }
    assert subscription["meta"]["tag"] == [{"system": CHANNEL_TAG_SYSTEM, "code": "vitals"}]
    assert channel_tag(channel) == f"{CHANNEL_TAG_SYSTEM}|vitals"


def test_an_empty_criteria_channel_asks_for_pings() -> None:
    channel = Channel(name="pings", criteria="Observation?category=vital-signs", payload="empty")
    assert "payload" not in subscription_resource(channel, ENDPOINT, "s")["channel"]


def test_a_topic_channel_is_a_backport_subscription() -> None:
    channel = Channel(
        name="encounters",
        topic=TOPIC,
        payload="id-only",
        filters=("Encounter?patient=Patient/1",),
        heartbeat_period_s=60,
    )

    subscription = subscription_resource(channel, ENDPOINT, "s")

    assert subscription["meta"]["profile"] == [f"{BACKPORT}/backport-subscription"]
    assert subscription["criteria"] == TOPIC
    [content] = subscription["channel"]["_payload"]["extension"]
    assert content["valueCode"] == "id-only"
    [heartbeat] = subscription["channel"]["extension"]
    assert heartbeat["valueUnsignedInt"] == 60
    [criteria] = subscription["_criteria"]["extension"]
    assert criteria["valueString"] == "Encounter?patient=Patient/1"


@pytest.mark.parametrize(
    "fields",
    [
        {},
        {"criteria": "Observation?code=1", "topic": TOPIC},
        {"criteria": "observation"},
        {"criteria": "Observation?code=1", "payload": "id-only"},
        {"criteria": "Observation?code=1", "heartbeat_period_s": 60},
        {"topic": "encounter-start"},
        {"topic": TOPIC, "payload": "everything"},
        {"topic": TOPIC, "unknown": 1},
    ],
)
def test_a_channel_that_is_not_one_thing_is_refused(fields: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        Channel(name="bad", **fields)


@pytest.mark.parametrize("name", ["", "Vitals", "a b", "x" * 64, "-x"])
def test_a_channel_name_is_a_short_slug(name: str) -> None:
    with pytest.raises(ValidationError):
        Channel(name=name, topic=TOPIC)


def test_each_channel_has_its_own_secret_and_every_replica_derives_the_same() -> None:
    vitals, encounters = Channel(name="vitals", topic=TOPIC), Channel(name="enc", topic=TOPIC)
    master = "a-master-secret-0123456789"

    assert channel_secret(master, vitals) == channel_secret(master, vitals)
    assert channel_secret(master, vitals) != channel_secret(master, encounters)
    assert channel_secret(master, vitals) != channel_secret("another-master-secret-0123", vitals)
    assert master not in channel_secret(master, vitals)


def test_channels_need_the_endpoint_the_ehr_notifies_and_distinct_names() -> None:
    common: dict[str, Any] = {
        "channel_secret": SecretStr("a-master-secret-0123456789"),
        "ehr_base_url": "https://ehr.example/fhir",
    }
    channel = {"name": "vitals", "criteria": "Observation?code=1"}
    with pytest.raises(ValidationError, match="CDSFLOW_NOTIFICATION_ENDPOINT"):
        Settings(**common, channels=[channel])
    with pytest.raises(ValidationError, match="its own name"):
        Settings(**common, channels=[channel, channel], notification_endpoint=ENDPOINT)
    settings = Settings(**common, channels=[channel], notification_endpoint=ENDPOINT)
    assert settings.channels[0].criteria == "Observation?code=1"


def test_channels_come_from_the_environment_as_json(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CDSFLOW_CHANNEL_SECRET", "a-master-secret-0123456789")
    monkeypatch.setenv("CDSFLOW_EHR_BASE_URL", "https://ehr.example/fhir")
    monkeypatch.setenv("CDSFLOW_NOTIFICATION_ENDPOINT", ENDPOINT)
    monkeypatch.setenv("CDSFLOW_CHANNELS", f'[{{"name": "enc", "topic": "{TOPIC}"}}]')

    settings = Settings()

    assert [channel.name for channel in settings.channels] == ["enc"]
