"""EHR auth against a real SEKMET whose FHIR API asks for credentials (its `server_auth` on,
set through the `SEKMET_CONFIG` file that `start_ehr` writes): SMART Backend Services with
an ES384 and an RS384 client (token endpoint discovered or configured; a token replaced
before it expires, and on SEKMET's 401 when it expired anyway), a static bearer, and
what SEKMET refuses — no credentials (401), a wrong key, scopes not granted (token endpoint),
a write with a read-only token (403). And the services configured by `CDSFLOW_EHR_*`: the
listener keeps its Subscription and searches on a ping, the writeback writes its transaction,
both with SMART Backend Services tokens."""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from cdsflow.contracts import ClinicalEvent
from cdsflow.fhir import (
    BackendServicesClient,
    EhrAuthError,
    EhrClient,
    EhrError,
    SmartBackendAuth,
    StaticBearerAuth,
    is_ehr_outage,
    load_signing_key,
)
from cdsflow.listener.settings import Settings as ListenerSettings
from cdsflow.runtime.parts import start_ehr
from tests.conftest import KafkaEndpoint
from tests.integration.test_listener import (
    consume_clinical_events,
    listener_settings,
    respiratory_rate,
)
from tests.integration.test_listener_subscriptions import managing_listener, shown
from tests.integration.test_writeback import (
    RECOMMENDATION_TAG,
    recommendation_for,
    started_writeback,
)
from tests.support.polling import eventually
from tests.support.signing_keys import KeyPairFiles, write_key_pair

pytestmark = pytest.mark.integration

STATIC_TOKEN = "static-bearer-token-for-tests-0123456789"
# short, so that tests see tokens expire: cdsflow replaces one after 8 s (a fifth of its
# life before), SEKMET refuses it after 9 to 10 s (it counts from a whole second)
TOKEN_LIFETIME_S = 10
READ_WRITE = "system/*.read system/*.write"
IDENTIFIER_SYSTEM = "urn:cdsflow:test:ehr-auth"


@dataclass(frozen=True)
class SecuredEhr:
    base_url: str
    token_url: str
    keys: dict[str, KeyPairFiles]
    folder: Path


@pytest.fixture(scope="module")
def secured_ehr(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecuredEhr]:
    """SEKMET with SMART and static-bearer auth: client `es384` registered by a JWK Set,
    `rs384` by a public key file, `reader` (ES384) allowed to read only."""
    folder = tmp_path_factory.mktemp("secured-ehr")
    keys = {
        "es384": write_key_pair(folder / "keys", "es384", "ES384"),
        "rs384": write_key_pair(folder / "keys", "rs384", "RS384"),
        "reader": write_key_pair(folder / "keys", "reader", "ES384"),
    }
    server_auth = {
        "types": ["smart", "bearer"],
        "token_lifetime": TOKEN_LIFETIME_S,
        "tokens": [STATIC_TOKEN],
        "smart_clients": [
            {
                "client_id": "es384",
                "jwks": {"keys": [keys["es384"].public_jwk()]},
                "scopes": READ_WRITE,
            },
            {
                "client_id": "rs384",
                "public_key_path": str(keys["rs384"].public_key_file),
                "scopes": READ_WRITE,
            },
            {
                "client_id": "reader",
                "jwks": {"keys": [keys["reader"].public_jwk()]},
                "scopes": "system/*.read",
            },
        ],
    }
    part = start_ehr(folder, server_auth=server_auth)
    try:
        yield SecuredEhr(part.endpoints["ehr"], part.endpoints["ehr_token_url"], keys, folder)
    finally:
        part.stop()


@pytest.fixture
async def http_clients() -> AsyncIterator[list[httpx.AsyncClient]]:
    """Closes the httpx clients that a test makes."""
    made: list[httpx.AsyncClient] = []
    yield made
    for client in made:
        await client.aclose()


def smart_auth(
    ehr: SecuredEhr,
    client_id: str,
    key: KeyPairFiles,
    *,
    scopes: str = READ_WRITE,
    token_url: str | None = None,
    monotonic: Callable[[], float] = time.monotonic,
) -> SmartBackendAuth:
    return SmartBackendAuth(
        BackendServicesClient(
            base_url=ehr.base_url,
            client_id=client_id,
            signing_key=load_signing_key(key.private_key_file, key.key_id),
            scopes=scopes,
            token_url=token_url,
        ),
        monotonic=monotonic,
    )


def ehr_client(
    ehr: SecuredEhr,
    auth: httpx.Auth | None,
    made: list[httpx.AsyncClient],
    statuses: list[int] | None = None,
) -> EhrClient:
    """An EhrClient on SEKMET; `statuses` collects the status of every answer (token
    endpoint and retried ones included)."""

    async def record(response: httpx.Response) -> None:
        if statuses is not None:
            statuses.append(response.status_code)

    http = httpx.AsyncClient(timeout=10, auth=auth, event_hooks={"response": [record]})
    made.append(http)
    return EhrClient(ehr.base_url, http)


async def write_and_read_back(client: EhrClient) -> None:
    """Create a Patient, read it back, find it by a search: a write, a read and a search."""
    marker = uuid.uuid4().hex
    created = await client.create(
        {
            "resourceType": "Patient",
            "active": True,
            "identifier": [{"system": IDENTIFIER_SYSTEM, "value": marker}],
        }
    )
    read = await client.read("Patient", created["id"])
    assert read is not None
    assert read["identifier"][0]["value"] == marker
    found = await client.search("Patient", [("identifier", f"{IDENTIFIER_SYSTEM}|{marker}")])
    assert [patient["id"] for patient in found] == [created["id"]]


async def test_without_credentials_sekmet_answers_401(
    secured_ehr: SecuredEhr, http_clients: list[httpx.AsyncClient]
) -> None:
    client = ehr_client(secured_ehr, None, http_clients)

    with pytest.raises(EhrError) as err:
        await client.search("Patient", [("active", "true")])

    assert err.value.status_code == 401
    assert not is_ehr_outage(err.value)


@pytest.mark.parametrize("client_id", ["es384", "rs384"])
@pytest.mark.parametrize("discovered", [True, False], ids=["discovered", "configured"])
async def test_a_registered_client_gets_one_token_and_reads_and_writes(
    secured_ehr: SecuredEhr, http_clients: list[httpx.AsyncClient], client_id: str, discovered: bool
) -> None:
    auth = smart_auth(
        secured_ehr,
        client_id,
        secured_ehr.keys[client_id],
        token_url=None if discovered else secured_ehr.token_url,
    )

    await write_and_read_back(ehr_client(secured_ehr, auth, http_clients))

    assert auth.token_requests == 1  # the same token for the write, the read and the search


async def test_a_token_is_replaced_before_sekmet_would_call_it_expired(
    secured_ehr: SecuredEhr, http_clients: list[httpx.AsyncClient]
) -> None:
    statuses: list[int] = []
    auth = smart_auth(secured_ehr, "es384", secured_ehr.keys["es384"])
    client = ehr_client(secured_ehr, auth, http_clients, statuses)

    async def read_with_a_second_token() -> bool:
        await client.search("Patient", [("active", "true")])
        return auth.token_requests >= 2

    await eventually(read_with_a_second_token, timeout_s=30, what="a second token")
    assert 401 not in statuses  # replaced in time: SEKMET never saw an expired one


async def test_a_token_sekmet_calls_expired_is_replaced_on_its_401_and_the_read_retried(
    secured_ehr: SecuredEhr, http_clients: list[httpx.AsyncClient]
) -> None:
    statuses: list[int] = []
    # a clock that never moves: cdsflow would keep the token for ever, SEKMET does not
    auth = smart_auth(secured_ehr, "rs384", secured_ehr.keys["rs384"], monotonic=lambda: 0.0)
    client = ehr_client(secured_ehr, auth, http_clients, statuses)

    async def read_with_a_second_token() -> bool:
        await client.search("Patient", [("active", "true")])  # raises on a 401 not cured
        return auth.token_requests >= 2

    await eventually(read_with_a_second_token, timeout_s=30, what="a second token")
    assert 401 in statuses


async def test_a_wrong_key_is_refused_with_the_token_endpoints_reason(
    secured_ehr: SecuredEhr, http_clients: list[httpx.AsyncClient]
) -> None:
    impostor = write_key_pair(secured_ehr.folder / "keys", "impostor", "ES384")
    auth = smart_auth(secured_ehr, "es384", impostor)

    with pytest.raises(EhrAuthError) as err:
        await ehr_client(secured_ehr, auth, http_clients).read("Patient", "any")

    assert str(err.value) == (
        "the EHR's token endpoint refused cdsflow (401): invalid_client: "
        "client_assertion verification failed: Signature verification failed"
    )
    assert err.value.oauth_error == "invalid_client"
    assert not is_ehr_outage(err.value)
    assert auth.token_requests == 1  # a refusal is not retried


async def test_scopes_beyond_the_clients_registration_are_refused(
    secured_ehr: SecuredEhr, http_clients: list[httpx.AsyncClient]
) -> None:
    auth = smart_auth(secured_ehr, "reader", secured_ehr.keys["reader"], scopes="system/*.write")

    with pytest.raises(EhrAuthError) as err:
        await ehr_client(secured_ehr, auth, http_clients).read("Patient", "any")

    assert err.value.oauth_error == "invalid_scope"
    assert "refused cdsflow (400): invalid_scope" in str(err.value)


async def test_a_read_only_token_reads_but_cannot_write(
    secured_ehr: SecuredEhr, http_clients: list[httpx.AsyncClient]
) -> None:
    auth = smart_auth(secured_ehr, "reader", secured_ehr.keys["reader"], scopes="system/*.read")
    client = ehr_client(secured_ehr, auth, http_clients)

    await client.search("Patient", [("active", "true")])
    with pytest.raises(EhrError) as err:
        await client.create({"resourceType": "Patient", "active": True})

    assert err.value.status_code == 403
    assert not is_ehr_outage(err.value)


async def test_a_static_bearer_reads_and_writes_and_a_wrong_one_gets_401(
    secured_ehr: SecuredEhr, http_clients: list[httpx.AsyncClient]
) -> None:
    await write_and_read_back(ehr_client(secured_ehr, StaticBearerAuth(STATIC_TOKEN), http_clients))

    wrong = ehr_client(secured_ehr, StaticBearerAuth("not-the-token"), http_clients)
    with pytest.raises(EhrError) as err:
        await wrong.read("Patient", "any")
    assert err.value.status_code == 401


def smart_backend_settings(ehr: SecuredEhr, client_id: str) -> dict[str, Any]:
    """The `CDSFLOW_EHR_*` settings of a service registered with SEKMET as `client_id`."""
    key = ehr.keys[client_id]
    return {
        "ehr_auth": "smart-backend",
        "ehr_client_id": client_id,
        "ehr_private_key_file": key.private_key_file,
        "ehr_key_id": key.key_id,
    }


async def test_the_listener_keeps_its_subscription_and_searches_on_a_ping_with_tokens(
    secured_ehr: SecuredEhr,
    kafka: KafkaEndpoint,
    unique: str,
    pseudonym_key: str,
    http_clients: list[httpx.AsyncClient],
) -> None:
    name = f"pings-{unique}"
    criteria = f"Observation?code=9279-1&_tag=urn:test|{unique}"

    def settings_for(endpoint: str) -> ListenerSettings:
        return listener_settings(
            kafka.bootstrap,
            unique,
            ehr_base_url=secured_ehr.base_url,
            channels=[{"name": name, "criteria": criteria, "payload": "empty"}],
            notification_endpoint=endpoint,
            subscription_check_interval_s=0.5,
            **smart_backend_settings(secured_ehr, "es384"),
        )

    fhir = ehr_client(secured_ehr, StaticBearerAuth(STATIC_TOKEN), http_clients)
    async with managing_listener(settings_for, pseudonym_key) as (url, settings):

        async def active_id() -> str | None:
            state = (await shown(url))[name]
            return str(state["id"]) if state["status"] == "active" else None

        # created on the EHR through a token: without one SEKMET would answer 401
        subscription_id = await eventually(active_id, what="the ping channel active")
        try:
            patient = await fhir.create({"resourceType": "Patient", "active": True})
            observation = respiratory_rate(patient["id"])
            observation["meta"] = {"tag": [{"system": "urn:test", "code": unique}]}
            written = await fhir.create(observation)

            # a ping carries nothing: the event exists only if the listener's search got in
            [record] = await consume_clinical_events(
                kafka.bootstrap, settings.clinical_events_topic, f"test-{unique}"
            )
            assert ClinicalEvent.FromString(record.value).resource_id == written["id"]
        finally:
            subscription = await fhir.read("Subscription", subscription_id)
            assert subscription is not None
            await fhir.update({**subscription, "status": "off"})


async def test_the_writeback_writes_back_with_tokens(
    secured_ehr: SecuredEhr,
    kafka: KafkaEndpoint,
    unique: str,
    pseudonym_key: str,
    http_clients: list[httpx.AsyncClient],
) -> None:
    fhir = ehr_client(secured_ehr, StaticBearerAuth(STATIC_TOKEN), http_clients)
    patient = await fhir.create({"resourceType": "Patient", "active": True})

    async with started_writeback(
        kafka,
        secured_ehr.base_url,
        unique,
        pseudonym_key,
        **smart_backend_settings(secured_ehr, "rs384"),
    ) as running:
        recommendation = recommendation_for(running, secured_ehr.base_url, patient["id"])
        await running.publish(recommendation)
        await running.wait_for_writebacks("written", 1)
        fetched = running.telemetry.metrics.registry.get_sample_value(
            "cdsflow_ehr_access_tokens_total", {"outcome": "fetched"}
        )
        assert fetched is not None  # its tokens are counted on its /metrics
        assert fetched >= 1

    tag = f"{RECOMMENDATION_TAG}|{recommendation.recommendation_id}"
    written = await fhir.search("RiskAssessment", [("_tag", tag)])
    assert [resource["subject"]["reference"] for resource in written] == [
        f"Patient/{patient['id']}"
    ]
