"""Fixtures for the listener's in-process tests."""

from __future__ import annotations

import pytest

from .in_process import Listener, RecordingPublisher


@pytest.fixture
def publisher() -> RecordingPublisher:
    return RecordingPublisher()


@pytest.fixture
def listener(publisher: RecordingPublisher, pseudonym_key: str) -> Listener:
    return Listener(publisher, pseudonym_key)
