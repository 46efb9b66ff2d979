"""A hook token replayed to another writeback replica, on the real broker (Tansu): two
replicas in-process, each with its own follower of the claims topic, the EHR's JWTs signed
with a real ES384 key and verified against a JWK Set served over loopback HTTP.

The same token to one replica then the other: the second refuses it (401). The same token to
both at once: exactly one accepts it. Fresh tokens: both accept. A claim with nothing unread
before it on its partition is decided from its acknowledgement, without a fetch. The broker
paused (SIGSTOP): a 503, never a 200 for a token whose claim could not be confirmed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from cdsflow.runtime.parts import start_broker
from cdsflow.telemetry import Telemetry
from cdsflow.writeback.app import create_app
from cdsflow.writeback.settings import Settings
from tests.conftest import KafkaEndpoint
from tests.support.asgi import serve_app
from tests.support.own_parts import own_part, paused
from tests.support.polling import eventually
from tests.support.telemetry import recording_telemetry
from tests.unit.writeback.client_keys import SERVICE_PATH, bearer, es384_key, hook_token, jwks

pytestmark = pytest.mark.integration

ISSUER = "https://ehr.replicas.test/"
PUBLIC_BASE_URL = "https://cds.replicas.test"
AUDIENCE = PUBLIC_BASE_URL + SERVICE_PATH


@dataclass
class Replica:
    base_url: str
    telemetry: Telemetry
    http: httpx.AsyncClient

    async def call(self, token: str) -> httpx.Response:
        body = {
            "hook": "patient-view",
            "hookInstance": str(uuid.uuid4()),
            "context": {"userId": "Practitioner/replicas", "patientId": "p-1"},
        }
        return await self.http.post(
            self.base_url + SERVICE_PATH,
            content=json.dumps(body).encode(),
            headers={"Content-Type": "application/json", "Authorization": bearer(token)},
        )

    def sample(self, name: str, **labels: str) -> float:
        value = self.telemetry.metrics.registry.get_sample_value(name, labels)
        return value or 0.0

    def claims(self, outcome: str) -> float:
        return self.sample("cdsflow_writeback_hook_token_claims_total", outcome=outcome)

    def rejections(self, reason: str) -> float:
        return self.sample("cdsflow_writeback_hook_token_rejections_total", reason=reason)

    async def readiness(self) -> dict[str, bool]:
        checks: dict[str, bool] = (await self.http.get(self.base_url + "/readyz")).json()
        return checks

    async def wait_claims_ready(self) -> None:
        async def ready() -> bool:
            return (await self.readiness()).get("hook_token_claims") is True

        await eventually(ready, timeout_s=60, what="the claims topic followed")


def token() -> str:
    return hook_token(es384_key(), iss=ISSUER, aud=AUDIENCE)


@contextlib.asynccontextmanager
async def key_server() -> AsyncIterator[str]:
    async def keys(_: Request) -> JSONResponse:
        return JSONResponse(jwks(es384_key()))

    async with serve_app(Starlette(routes=[Route("/jwks.json", keys)])) as base_url:
        yield f"{base_url}/jwks.json"


@contextlib.asynccontextmanager
async def replica(
    bootstrap: str, jwks_url: str, unique: str, pseudonym_key: str, **overrides: Any
) -> AsyncIterator[Replica]:
    fields: dict[str, Any] = {
        "kafka_bootstrap": bootstrap,
        "kafka_idempotence": False,
        # no EHR: hook calls are answered from the (empty) store, `{"cards": []}`
        "ehr_base_url": "https://ehr.replicas.test/fhir",
        "recommendations_topic": f"test.recommendations.{unique}",
        "feedback_topic": f"test.feedback.{unique}",
        "consumer_group": f"test-writeback-replays-{unique}",
        "hook_audit_enabled": False,
        "trusted_issuers": [{"iss": ISSUER, "jwks_url": jwks_url}],
        "cds_public_base_url": PUBLIC_BASE_URL,
        "hook_token_claims_topic": f"test.hook-token-claims.{unique}",
        "hook_token_claims_partitions": 4,
        # generous on a loaded test machine; the paused-broker test sets a short one
        "hook_token_claim_deadline_ms": 5_000,
        **overrides,
    }
    settings = Settings(**fields)
    with recording_telemetry("writeback", pseudonym_key) as (telemetry, _):
        async with (
            serve_app(create_app(settings, telemetry=telemetry), settings=settings) as base_url,
            httpx.AsyncClient(timeout=30) as http,
        ):
            running = Replica(base_url, telemetry, http)
            await running.wait_claims_ready()
            yield running


@contextlib.asynccontextmanager
async def two_replicas(
    bootstrap: str, unique: str, pseudonym_key: str, **overrides: Any
) -> AsyncIterator[tuple[Replica, Replica]]:
    async with (
        key_server() as jwks_url,
        replica(bootstrap, jwks_url, unique, pseudonym_key, **overrides) as first,
        replica(bootstrap, jwks_url, unique, pseudonym_key, **overrides) as second,
    ):
        yield first, second


def assert_bare_401(response: httpx.Response) -> None:
    assert response.status_code == 401, response.text
    assert response.headers["www-authenticate"] == "Bearer"
    assert response.json()["issue"][0]["diagnostics"] == "authentication required"


@pytest.fixture
async def replicas(
    kafka: KafkaEndpoint, unique: str, pseudonym_key: str
) -> AsyncIterator[tuple[Replica, Replica]]:
    async with two_replicas(kafka.bootstrap, unique, pseudonym_key) as both:
        yield both


async def test_a_token_used_on_one_replica_is_refused_by_the_other(
    replicas: tuple[Replica, Replica],
) -> None:
    first, second = replicas
    used = token()

    accepted = await first.call(used)
    assert accepted.status_code == 200, accepted.text
    assert accepted.json() == {"cards": []}

    assert_bare_401(await second.call(used))
    assert second.rejections("replayed") == 1
    assert first.claims("first") == 1
    assert second.claims("replayed") == 1
    # and back to the first: refused there too, from its own memory (no claim made)
    assert_bare_401(await first.call(used))
    assert first.claims("first") + first.claims("replayed") == 1


async def test_the_same_token_to_both_at_once_is_accepted_exactly_once(
    replicas: tuple[Replica, Replica],
) -> None:
    first, second = replicas
    for _ in range(10):
        raced = token()
        answers = await asyncio.gather(first.call(raced), second.call(raced))
        statuses = sorted(response.status_code for response in answers)
        assert statuses == [200, 401], [response.text for response in answers]
    assert first.claims("first") + second.claims("first") == 10
    assert first.claims("replayed") + second.claims("replayed") == 10


async def test_fresh_tokens_are_accepted_by_both(replicas: tuple[Replica, Replica]) -> None:
    first, second = replicas
    for _ in range(5):
        one, other = await asyncio.gather(first.call(token()), second.call(token()))
        assert one.status_code == 200, one.text
        assert other.status_code == 200, other.text
    assert first.claims("first") == 5
    assert second.claims("first") == 5


async def test_a_claim_with_nothing_unread_before_it_is_decided_without_a_fetch(
    replicas: tuple[Replica, Replica],
) -> None:
    first, second = replicas
    for _ in range(5):  # one replica alone: each claim follows what it has read (its own)
        accepted = await first.call(token())
        assert accepted.status_code == 200, accepted.text
    assert first.sample("cdsflow_writeback_hook_token_claims_decided_from_ack_total") == 5

    used = token()
    accepted = await second.call(used)
    assert accepted.status_code == 200, accepted.text
    # the first's claim of it lands after the second's, unread: read back, and refused
    assert_bare_401(await first.call(used))
    assert first.claims("replayed") == 1
    assert first.sample("cdsflow_writeback_hook_token_claims_decided_from_ack_total") == 5


async def test_with_the_broker_paused_a_token_is_refused_503_never_accepted(
    tmp_path: Path, unique: str, pseudonym_key: str
) -> None:
    async with (
        own_part(start_broker, tmp_path) as broker,
        two_replicas(
            broker.endpoints["broker"], unique, pseudonym_key, hook_token_claim_deadline_ms=1_000
        ) as (first, second),
    ):
        assert (await first.call(token())).status_code == 200
        with paused(broker):
            for running in (first, second):
                refused = await running.call(token())
                assert refused.status_code == 503, refused.text
                assert refused.json()["issue"][0]["code"] == "transient"
                assert running.claims("unconfirmed") == 1
                readiness = await running.readiness()
                assert readiness["hook_token_claims"] is False
        # back: a fresh token is accepted again, once
        resumed = token()

        async def accepted_again() -> bool:
            return (await first.call(token())).status_code == 200

        await eventually(accepted_again, timeout_s=60, what="tokens accepted after the pause")
        assert (await second.call(resumed)).status_code == 200
        assert_bare_401(await first.call(resumed))
