from __future__ import annotations

import pytest
from pydantic import ValidationError

from cdsflow.telemetry import TelemetrySettings


@pytest.fixture(autouse=True)
def no_cdsflow_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CDSFLOW_PSEUDONYM_KEY", raising=False)


def test_the_pseudonym_key_has_no_default() -> None:
    with pytest.raises(ValidationError, match="pseudonym_key"):
        TelemetrySettings()


def test_a_short_pseudonym_key_is_refused_without_echoing_it() -> None:
    with pytest.raises(ValidationError, match="pseudonym_key") as caught:
        TelemetrySettings(pseudonym_key="short-key-99")
    assert "short-key-99" not in str(caught.value)


def test_read_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CDSFLOW_PSEUDONYM_KEY", "k" * 32)
    monkeypatch.setenv("CDSFLOW_LOG_LEVEL", "WARNING")
    settings = TelemetrySettings()
    assert settings.pseudonym_key.get_secret_value() == "k" * 32
    assert settings.log_level == "WARNING"
