"""Which replica's claim of a hook token came first, read from the claims topic
(`cdsflow.hook-token-claims.v1`), as pure logic over (partition, offset, key, expiry).

Every replica that accepts a token publishes a claim keyed by a keyed hash of its (iss, jti);
the partition is chosen by the key, so all claims of one token are on one partition, in the
order the broker took them. The claim with the lowest offset is the token's first use; any
later claim of the same key is a replay, whichever replica sent it. A replica decides its own
claim once it has read the claim's partition up to the claim's own offset.

No I/O here: producing the claim and following the topic are in
`cdsflow.writeback.token_claims`.
"""

from __future__ import annotations

import heapq
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from google.protobuf.message import DecodeError

from cdsflow.contracts import HookTokenClaim

# what the keyed hash of a token's (iss, jti) is kept apart from (patient keys and the like)
CLAIM_KEY_PURPOSE = "hook-token-claim"


class ClaimUnconfirmed(Exception):
    """The claim could not be confirmed in time (the broker down or slow): the call is refused
    with a 503, never accepted unverified. `reason` is a fixed label for metrics."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def claim_key(keyed_digest: Callable[[str, str], str], iss: str, jti: str) -> bytes:
    """The claim's Kafka key: a keyed hash of (iss, jti), never the token or its claims.
    `keyed_digest` is `PatientKeyer.keyed_digest` (the deployment's pseudonym key)."""
    return keyed_digest(CLAIM_KEY_PURPOSE, json.dumps([iss, jti])).encode()


def claim_value(expires_at: float) -> bytes:
    """The claim's body: when it may be forgotten (the token's exp + the clock skew)."""
    claim = HookTokenClaim()
    claim.expires_at.FromDatetime(datetime.fromtimestamp(expires_at, UTC))
    return claim.SerializeToString()


def claim_expiry(value: bytes | None) -> float | None:
    """The expiry a claim's body carries (POSIX seconds); None for a body that is not one."""
    if not value:
        return None
    try:
        claim = HookTokenClaim.FromString(value)
    except DecodeError:
        return None
    if not claim.HasField("expires_at"):
        return None
    return claim.expires_at.ToDatetime(tzinfo=UTC).timestamp()


@dataclass(frozen=True, slots=True)
class ClaimPosition:
    partition: int
    offset: int


@dataclass
class ClaimLedger:
    """The first claim of each token key read from the topic, until it expires, and how far
    each partition has been read. Bounded: past `max_claims`, the claim that expires soonest is
    forgotten first (like the in-process `SeenTokens`)."""

    max_claims: int
    _first: dict[bytes, tuple[ClaimPosition, float]] = field(default_factory=dict)
    _by_expiry: list[tuple[float, bytes]] = field(default_factory=list)
    _read_to: dict[int, int] = field(default_factory=dict)

    def note(self, key: bytes, position: ClaimPosition, expires_at: float, now: float) -> None:
        """A claim read from the topic (records of a partition come in offset order; one read
        twice, after a reconnection, changes nothing)."""
        self.skip(position)
        self._forget_expired(now)
        if expires_at < now:
            return
        held = self._first.get(key)
        if held is not None and held[0].offset <= position.offset:
            return
        while len(self._first) >= self.max_claims and self._by_expiry:
            _, soonest = heapq.heappop(self._by_expiry)
            self._first.pop(soonest, None)
        self._first[key] = (position, expires_at)
        heapq.heappush(self._by_expiry, (expires_at, key))

    def skip(self, position: ClaimPosition) -> None:
        """A record read that is not a claim: only how far its partition was read."""
        self._read_to[position.partition] = max(
            self._read_to.get(position.partition, -1), position.offset
        )

    def has_read(self, position: ClaimPosition) -> bool:
        """Whether the partition has been read up to and including `position`."""
        return self._read_to.get(position.partition, -1) >= position.offset

    def decide_own(
        self, key: bytes, position: ClaimPosition, expires_at: float, now: float
    ) -> bool | None:
        """A claim this replica has just published, decided from its acknowledgement alone
        when every earlier record of its partition has been read: it is then the next record
        of the partition, and its key and expiry are known without reading it back (noting it
        again once read changes nothing). None when a record before it is still unread
        (another replica's claim, say): read back then."""
        if not self.has_read(ClaimPosition(position.partition, position.offset - 1)):
            return None
        self.note(key, position, expires_at, now)
        return self.first_use(key, position)

    def first_use(self, key: bytes, position: ClaimPosition) -> bool:
        """Once `has_read(position)`: True when the claim at `position` is the first claim of
        `key` (the token is accepted), False when an earlier claim holds it (a replay).
        Raises `ClaimUnconfirmed` when the claim itself was not read (it was out of the window
        read, or forgotten): never accepted unverified."""
        held = self._first.get(key)
        if held is None:
            raise ClaimUnconfirmed("claim-not-read")
        return held[0] == position

    def _forget_expired(self, now: float) -> None:
        while self._by_expiry and self._by_expiry[0][0] < now:
            expires_at, key = heapq.heappop(self._by_expiry)
            held = self._first.get(key)
            if held is not None and held[1] == expires_at:
                del self._first[key]

    def __len__(self) -> int:
        return len(self._first)
