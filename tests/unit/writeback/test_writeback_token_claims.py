"""The replay check across replicas as pure logic: the claim's key and body, and which claim
of a token the claims topic holds first (`domain/token_claims.py`). On the real broker, with
two replicas: tests/integration/test_writeback_token_replays.py."""

from __future__ import annotations

import pytest

from cdsflow.telemetry import PatientKeyer
from cdsflow.writeback.domain.token_claims import (
    ClaimLedger,
    ClaimPosition,
    ClaimUnconfirmed,
    claim_expiry,
    claim_key,
    claim_value,
)

ISSUER = "https://ehr.example.org/"
KEYER = PatientKeyer("a-long-enough-unit-test-key")
OTHER_DEPLOYMENT = PatientKeyer("another-deployment-unit-key")


def key(jti: str, iss: str = ISSUER) -> bytes:
    return claim_key(KEYER.keyed_digest, iss, jti)


def test_the_claim_key_is_a_keyed_hash_of_issuer_and_jti_never_either() -> None:
    claimed = key("jti-0001")
    assert claimed == key("jti-0001")
    assert len(claimed) == 32
    assert b"jti-0001" not in claimed
    assert b"ehr.example.org" not in claimed
    assert claimed != key("jti-0002")
    assert claimed != key("jti-0001", iss="https://other.example.org/")
    assert claimed != claim_key(OTHER_DEPLOYMENT.keyed_digest, ISSUER, "jti-0001")
    # the parts cannot be shifted from one into the other
    assert claim_key(KEYER.keyed_digest, "a", "b,c") != claim_key(KEYER.keyed_digest, "a,b", "c")


def test_the_claim_body_carries_the_expiry() -> None:
    assert claim_expiry(claim_value(1_900_000_000.5)) == 1_900_000_000.5


@pytest.mark.parametrize("body", [None, b"", b"\xff\xfe not protobuf", b"\x08\x01"])
def test_a_body_that_is_not_a_claim_has_no_expiry(body: bytes | None) -> None:
    assert claim_expiry(body) is None


def at(partition: int, offset: int) -> ClaimPosition:
    return ClaimPosition(partition, offset)


def test_the_first_claim_of_a_token_wins_and_a_later_one_is_a_replay() -> None:
    ledger = ClaimLedger(max_claims=100)
    ledger.note(key("a"), at(2, 10), expires_at=500, now=100)
    ledger.note(key("b"), at(2, 11), expires_at=500, now=100)
    ledger.note(key("a"), at(2, 12), expires_at=500, now=100)  # the same token, later

    assert ledger.first_use(key("a"), at(2, 10))
    assert ledger.first_use(key("b"), at(2, 11))
    assert not ledger.first_use(key("a"), at(2, 12))


def test_reading_a_partition_again_after_a_reconnection_changes_nothing() -> None:
    ledger = ClaimLedger(max_claims=100)
    for _ in range(2):
        ledger.note(key("a"), at(0, 3), expires_at=500, now=100)
        ledger.note(key("a"), at(0, 4), expires_at=500, now=100)
    assert ledger.first_use(key("a"), at(0, 3))
    assert not ledger.first_use(key("a"), at(0, 4))


def test_a_claim_is_decided_only_once_its_partition_was_read_up_to_it() -> None:
    ledger = ClaimLedger(max_claims=100)
    assert not ledger.has_read(at(1, 0))
    ledger.note(key("a"), at(1, 5), expires_at=500, now=100)
    assert ledger.has_read(at(1, 5))
    assert ledger.has_read(at(1, 4))
    assert not ledger.has_read(at(1, 6))
    assert not ledger.has_read(at(0, 5))  # another partition
    ledger.skip(at(1, 6))  # a record that is not a claim still moves the partition on
    assert ledger.has_read(at(1, 6))


def test_an_own_claim_that_was_not_read_is_never_taken_as_a_first_use() -> None:
    ledger = ClaimLedger(max_claims=100)
    ledger.skip(at(0, 9))
    with pytest.raises(ClaimUnconfirmed):
        ledger.first_use(key("a"), at(0, 9))


def test_expired_claims_are_forgotten() -> None:
    ledger = ClaimLedger(max_claims=100)
    ledger.note(key("a"), at(0, 0), expires_at=200, now=100)
    ledger.note(key("b"), at(0, 1), expires_at=400, now=100)
    ledger.note(key("c"), at(0, 2), expires_at=150, now=300)  # already expired when read
    assert len(ledger) == 1
    with pytest.raises(ClaimUnconfirmed):
        ledger.first_use(key("a"), at(0, 0))
    assert ledger.first_use(key("b"), at(0, 1))


def test_the_claims_held_are_bounded_forgetting_the_soonest_expiring() -> None:
    ledger = ClaimLedger(max_claims=3)
    for offset, (jti, expiry) in enumerate((("a", 300), ("b", 100), ("c", 200), ("d", 400))):
        ledger.note(key(jti), at(0, offset), expires_at=expiry, now=0)
    assert len(ledger) == 3
    with pytest.raises(ClaimUnconfirmed):
        ledger.first_use(key("b"), at(0, 1))
    assert ledger.first_use(key("d"), at(0, 3))


def test_an_own_claim_right_after_everything_read_is_decided_from_its_ack() -> None:
    ledger = ClaimLedger(max_claims=100)
    ledger.note(key("a"), at(3, 7), expires_at=500, now=100)

    assert ledger.decide_own(key("b"), at(3, 8), expires_at=500, now=100) is True
    assert ledger.has_read(at(3, 8))  # as if read back: the next claim follows it
    assert ledger.decide_own(key("a"), at(3, 9), expires_at=500, now=100) is False  # a replay
    # the records read back later change nothing
    ledger.note(key("b"), at(3, 8), expires_at=500, now=100)
    assert ledger.first_use(key("b"), at(3, 8))


def test_the_first_record_of_a_partition_is_decided_from_its_ack() -> None:
    ledger = ClaimLedger(max_claims=100)
    assert ledger.decide_own(key("a"), at(4, 0), expires_at=500, now=100) is True


def test_an_own_claim_after_an_unread_record_waits_for_the_read_back() -> None:
    ledger = ClaimLedger(max_claims=100)
    ledger.note(key("a"), at(3, 7), expires_at=500, now=100)
    # offset 8 (another replica's claim, perhaps of the same token) is not read yet
    assert ledger.decide_own(key("b"), at(3, 9), expires_at=500, now=100) is None
    assert not ledger.has_read(at(3, 9))
    assert ledger.decide_own(key("b"), at(0, 4), expires_at=500, now=100) is None


def test_an_own_claim_the_reader_already_passed_is_decided_as_read() -> None:
    ledger = ClaimLedger(max_claims=100)
    ledger.note(key("a"), at(3, 7), expires_at=500, now=100)
    ledger.note(key("a"), at(3, 8), expires_at=500, now=100)  # read before the ack came
    assert ledger.decide_own(key("a"), at(3, 8), expires_at=500, now=100) is False
    assert ledger.decide_own(key("a"), at(3, 7), expires_at=500, now=100) is True
