"""Parse a JSON request body once, safely, for every service that takes JSON from a client.

What the standard library would turn into a 500 (nesting deep enough to exhaust the stack,
integers longer than CPython converts, `NaN`/`Infinity`, numbers beyond a double, bodies in
another encoding than UTF-8) is refused here with a short, fixed reason that names no value.
"""

from __future__ import annotations

import json
import math
from typing import Any

# Deeper than any FHIR resource or CDS Hooks request needs, far below the interpreter's stack.
MAX_JSON_DEPTH = 64


class MalformedJson(Exception):
    """The body is not acceptable JSON; `reason` is a fixed label for metrics and answers."""

    def __init__(self, reason: str, description: str) -> None:
        super().__init__(description)
        self.reason = reason
        self.description = description


def parse_json_document(raw: bytes, max_depth: int = MAX_JSON_DEPTH) -> Any:
    """The decoded JSON value of a UTF-8 body, or `MalformedJson` saying what is wrong."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise MalformedJson("not-utf8", "the body is not UTF-8 text") from None
    try:
        document = json.loads(text, parse_constant=_refuse_constant, parse_float=_finite_float)
    except RecursionError:
        raise _too_deep(max_depth) from None
    except _NonFiniteNumber:
        raise MalformedJson(
            "number-out-of-range", "the body holds a number outside the range of a double"
        ) from None
    except ValueError as exc:  # JSONDecodeError, and CPython's limit on integer digits
        if isinstance(exc, json.JSONDecodeError):
            raise MalformedJson("not-json", "the body is not JSON") from None
        raise MalformedJson(
            "number-out-of-range", "the body holds an integer with too many digits"
        ) from None
    if json_depth(document) > max_depth:
        raise _too_deep(max_depth)
    return document


def json_depth(document: Any) -> int:
    """How deeply objects and arrays nest (a scalar is 0); iterative, so any depth is safe."""
    deepest = 0
    pending: list[tuple[Any, int]] = [(document, 0)]
    while pending:
        value, depth = pending.pop()
        if isinstance(value, dict):
            children: Any = value.values()
        elif isinstance(value, list):
            children = value
        else:
            continue
        depth += 1
        deepest = max(deepest, depth)
        pending.extend((child, depth) for child in children)
    return deepest


class _NonFiniteNumber(ValueError):
    pass


def _refuse_constant(name: str) -> Any:
    # NaN, Infinity and -Infinity are JavaScript, not JSON (RFC 8259)
    raise json.JSONDecodeError("not a JSON value", name, 0)


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise _NonFiniteNumber(text)
    return value


def _too_deep(max_depth: int) -> MalformedJson:
    return MalformedJson("too-deep", f"the body nests objects and arrays deeper than {max_depth}")
