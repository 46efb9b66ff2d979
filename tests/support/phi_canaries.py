"""PHI canaries: patient data made of random tokens, and the scans that look for them in what
cdsflow emits besides its clinical payloads (issue 10, item 4).

A canary is a value that could only have come from a patient's record: a family and a given
name, an MRN, a birth date and a sentence of free text, each holding a random token. The scans
read log lines, exported spans (name, attributes, events, status, resource), Prometheus text
and Kafka record headers (and keys), and return each place where a canary was found, named by
its label (`family`, `mrn`, ...) and where it was, never by its value. Matching ignores case.
"""

from __future__ import annotations

import random
import secrets
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

from cdsflow.runtime.trace_collector import CollectedSpan
from tests.support.topic_partitions import partitions_of_every_topic, records_to_end

MRN_SYSTEM = "http://hospital.example.org/fhir/sid/mrn"


@dataclass(frozen=True)
class Canaries:
    family: str
    given: str
    mrn: str
    birth_date: str
    free_text: str

    @classmethod
    def fresh(cls) -> Canaries:
        """New canaries: letters for names (as a name is), digits for the MRN, a birth date
        between 1920 and 1960, and a sentence around a token of its own."""
        token = secrets.token_hex(6)
        born = date(1920, 1, 1) + timedelta(days=random.SystemRandom().randrange(40 * 365))
        return cls(
            family="Canaryfam" + _letters(token),
            given="Canarygiv" + _letters(secrets.token_hex(6)),
            mrn="MRN" + str(secrets.randbelow(10**10)).zfill(10),
            birth_date=born.isoformat(),
            free_text=f"patient reports canarynote{secrets.token_hex(6)} since yesterday",
        )

    def labelled(self) -> dict[str, str]:
        """Each canary by label; the free text is looked for by its token alone."""
        note_token = next(word for word in self.free_text.split() if word.startswith("canary"))
        return {
            "family": self.family,
            "given": self.given,
            "mrn": self.mrn,
            "birth_date": self.birth_date,
            "free_text": note_token,
        }

    def labels_in(self, text: str) -> list[str]:
        lowered = text.lower()
        return [label for label, value in self.labelled().items() if value.lower() in lowered]


def _letters(hex_token: str) -> str:
    """A hex token as letters only (a name does not hold digits)."""
    return "".join(chr(ord("a") + int(c, 16)) for c in hex_token)


@dataclass(frozen=True)
class CanaryHit:
    """Where a canary was found: the channel (log, span, metric, kafka-header) and the
    place in it. Its `str` names the canary by label, never by value."""

    channel: str
    where: str
    label: str

    def __str__(self) -> str:
        return f"the {self.label} canary in a {self.channel}: {self.where}"


def hits_in_log_lines(canaries: Canaries, name: str, lines: Iterable[str]) -> list[CanaryHit]:
    return [
        CanaryHit("log", f"{name} line {number}", label)
        for number, line in enumerate(lines, start=1)
        for label in canaries.labels_in(line)
    ]


def hits_in_log_files(canaries: Canaries, paths: Iterable[Path]) -> list[CanaryHit]:
    hits: list[CanaryHit] = []
    for path in paths:
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
        hits += hits_in_log_lines(canaries, path.name, lines)
    return hits


def hits_in_spans(canaries: Canaries, spans: Iterable[CollectedSpan]) -> list[CanaryHit]:
    hits: list[CanaryHit] = []
    for span in spans:
        parts = {
            "name": span.name,
            "attributes": repr(span.attributes),
            "events": repr([(event.name, event.attributes) for event in span.events]),
            "status": span.status_message,
            "resource": repr(span.resource),
        }
        for part, text in parts.items():
            hits += [
                CanaryHit("span", f"{span.service}/{span.name} {part}", label)
                for label in canaries.labels_in(text)
            ]
    return hits


def hits_in_metrics(canaries: Canaries, service: str, exposition: str) -> list[CanaryHit]:
    """Prometheus text: metric names, label names and values, help text."""
    return [
        CanaryHit("metric", f"{service} /metrics: {line.split('{')[0].split(' ')[0]}", label)
        for line in exposition.splitlines()
        for label in canaries.labels_in(line)
    ]


@dataclass(frozen=True)
class HeaderedRecord:
    topic: str
    offset: int
    key: bytes | None
    headers: Sequence[tuple[str, bytes]]


def hits_in_kafka_headers(canaries: Canaries, records: Iterable[HeaderedRecord]) -> list[CanaryHit]:
    """Each record's header names and values, and its key (the bodies are the clinical
    payload, which carries patient data by design)."""
    hits: list[CanaryHit] = []
    for record in records:
        place = f"{record.topic} offset {record.offset}"
        for name, value in record.headers:
            text = name + " " + value.decode("utf-8", errors="replace")
            hits += [
                CanaryHit("kafka-header", f"{place} {name}", label)
                for label in canaries.labels_in(text)
            ]
        key = (record.key or b"").decode("utf-8", errors="replace")
        hits += [CanaryHit("kafka-key", place, label) for label in canaries.labels_in(key)]
    return hits


async def every_record(bootstrap: str, timeout_s: float = 60) -> list[HeaderedRecord]:
    """Every record of every topic on the broker (the `.dlq` twins and the internal ones
    included), from the beginning up to the end offsets it has now."""
    partitions = await partitions_of_every_topic(bootstrap)
    return [
        HeaderedRecord(r.topic, r.offset, r.key, list(r.headers))
        for r in await records_to_end(bootstrap, partitions, timeout_s)
    ]
