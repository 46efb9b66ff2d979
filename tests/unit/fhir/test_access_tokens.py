"""Reading the token endpoint's and the SMART configuration's answers: a token and when to
replace it, an outage, or a refusal that names its reason and never a JWT."""

from __future__ import annotations

import httpx
import pytest

from cdsflow.fhir import EhrAuthError, EhrError, is_ehr_outage
from cdsflow.fhir.access_tokens import access_token_from, token_endpoint_from

FAKE_JWT = "eyJhbGciOiJFUzM4NCJ9.eyJpc3MiOiJjIn0.c2lnbmF0dXJl"


def _token_answer(**body: object) -> httpx.Response:
    return httpx.Response(200, json={"access_token": "tok", "token_type": "bearer", **body})


@pytest.mark.parametrize(("expires_in", "refresh_after"), [(3600, 3540.0), (300, 240.0), (10, 8.0)])
def test_a_token_is_replaced_shortly_before_it_expires(
    expires_in: int, refresh_after: float
) -> None:
    token = access_token_from(_token_answer(expires_in=expires_in, scope="system/*.rs"), 1000.0)

    assert token.value == "tok"
    assert token.refresh_at == 1000.0 + refresh_after
    assert token.scope == "system/*.rs"
    assert "tok" not in repr(token)


def test_a_token_without_expires_in_is_kept_five_minutes_at_most() -> None:
    assert access_token_from(_token_answer(token_type="Bearer"), 0.0).refresh_at == 240.0


@pytest.mark.parametrize(
    "body",
    [
        {"token_type": "bearer", "expires_in": 60},
        {"access_token": "tok", "token_type": "mac", "expires_in": 60},
        {"access_token": "tok", "token_type": "bearer", "expires_in": 0},
        {"access_token": "tok", "token_type": "bearer", "expires_in": "soon"},
    ],
)
def test_an_unusable_token_answer_is_an_auth_error_not_an_outage(body: dict[str, object]) -> None:
    with pytest.raises(EhrAuthError) as err:
        access_token_from(httpx.Response(200, json=body), 0.0)
    assert not is_ehr_outage(err.value)


def test_a_refusal_names_the_oauth_error_and_description_with_any_jwt_withheld() -> None:
    answer = httpx.Response(
        401,
        json={
            "error": "invalid_client",
            "error_description": f"client_assertion {FAKE_JWT} verification failed:\nbad sig",
        },
    )

    with pytest.raises(EhrAuthError) as err:
        access_token_from(answer, 0.0)

    refusal = err.value
    assert str(refusal) == (
        "the EHR's token endpoint refused cdsflow (401): invalid_client: "
        "client_assertion [token withheld] verification failed: bad sig"
    )
    assert refusal.oauth_error == "invalid_client"
    assert refusal.status_code == 401
    assert not refusal.is_outage
    assert not is_ehr_outage(refusal)


def test_a_refusal_without_a_json_body_still_says_who_refused() -> None:
    with pytest.raises(EhrAuthError, match=r"token endpoint refused cdsflow \(400\)\Z"):
        access_token_from(httpx.Response(400, text="<html>no</html>"), 0.0)


@pytest.mark.parametrize("status", [408, 429, 500, 503])
def test_a_busy_or_failing_token_endpoint_is_an_outage(status: int) -> None:
    answer = httpx.Response(status, headers={"Retry-After": "7"}, json={"error": "x"})

    with pytest.raises(EhrError) as err:
        access_token_from(answer, 0.0)

    assert not isinstance(err.value, EhrAuthError)
    assert err.value.is_outage
    assert err.value.retry_after_s == 7.0


def test_the_token_endpoint_is_read_from_the_smart_configuration() -> None:
    answer = httpx.Response(200, json={"token_endpoint": "https://auth.ehr.test/token"})
    assert token_endpoint_from(answer, "https://ehr.test/fhir") == "https://auth.ehr.test/token"


@pytest.mark.parametrize(
    ("answer", "reason"),
    [
        (httpx.Response(200, json={"issuer": "x"}), "names no http"),
        (
            httpx.Response(200, json={"token_endpoint": "http://ehr.test/token"}),
            "plain-http token_endpoint for an https EHR",
        ),
        (httpx.Response(404, json={}), r"SMART configuration refused cdsflow \(404\)"),
    ],
)
def test_a_smart_configuration_without_a_usable_token_endpoint_is_an_auth_error(
    answer: httpx.Response, reason: str
) -> None:
    with pytest.raises(EhrAuthError, match=reason):
        token_endpoint_from(answer, "https://ehr.test/fhir")
