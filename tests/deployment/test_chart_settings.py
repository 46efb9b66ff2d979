"""Every setting the services read is wired by the chart, and what the chart renders is
accepted by each service's own Settings; the channels, adapters, topics and models in the
chart are those of the repository."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

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
from cdsflow.writeback.settings import Settings as WritebackSettings
from tests.deployment.rendered_chart import (
    ALL_VALUES,
    CHART,
    REPO_ROOT,
    Rendering,
    component_name,
    render,
    rendering,
)
from tests.support.signing_keys import write_key_pair
from tests.support.tls_certificates import write_ca_certificate

SETTINGS: dict[str, type[BaseSettings]] = {
    "listener": ListenerSettings,
    "reasoner": ReasonerSettings,
    "writeback": WritebackSettings,
}
# read only in one auth mode, from a Secret or a mounted file: shown by their own tests below
AUTH_MODE_ONLY = {"CDSFLOW_EHR_BEARER_TOKEN", "CDSFLOW_EHR_PRIVATE_KEY_FILE"}
# read only with SASL OAUTHBEARER (gpu-values uses SCRAM): shown by their own test below
OAUTH_ONLY = {
    "CDSFLOW_KAFKA_OAUTH_TOKEN_URL",
    "CDSFLOW_KAFKA_OAUTH_CLIENT_ID",
    "CDSFLOW_KAFKA_OAUTH_SCOPE",
}
SECRET_NAMES = {
    "CDSFLOW_PSEUDONYM_KEY",
    "CDSFLOW_CHANNEL_SECRET",
    "CDSFLOW_EHR_BEARER_TOKEN",
    "CDSFLOW_KAFKA_SASL_PASSWORD",
}
SECRET_VALUES = {
    "CDSFLOW_PSEUDONYM_KEY": "a-test-pseudonym-key-0123456789",
    "CDSFLOW_CHANNEL_SECRET": "a-test-channel-secret-0123456789",
}


def service_environment(rendered: Rendering, service: str) -> dict[str, str | None]:
    """The service container's environment: its ConfigMap, then its env entries (a value
    from a Secret as None)."""
    deployment = rendered.named("Deployment", component_name(service))
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    environment: dict[str, str | None] = {}
    for source in container.get("envFrom", []):
        config_map = rendered.named("ConfigMap", source["configMapRef"]["name"])
        environment.update(config_map["data"])
    for entry in container.get("env", []):
        environment[entry["name"]] = entry.get("value")
    return environment


def setting_names(settings: type[BaseSettings]) -> set[str]:
    return {f"CDSFLOW_{name.upper()}" for name in settings.model_fields}


@pytest.mark.parametrize("service", SETTINGS)
def test_every_setting_of_the_service_is_wired(service: str) -> None:
    environment = service_environment(rendering("gpu-values.yaml"), service)
    expected = setting_names(SETTINGS[service]) | setting_names(TelemetrySettings)
    # optional settings left empty are not rendered: the unset EHR client fields, and the
    # writeback's CORS origins (none: CORS off)
    optional_empty = {
        "CDSFLOW_EHR_TOKEN_URL",
        "CDSFLOW_PATIENT_CONTEXT_TOPIC",
        "CDSFLOW_CORS_ALLOWED_ORIGINS",
    }
    missing = expected - environment.keys() - AUTH_MODE_ONLY - OAUTH_ONLY - optional_empty
    assert missing == set(), (
        f"{service}: settings the chart does not set: {sorted(missing)}; add each as one "
        f"line under {service}.settings in charts/cdsflow/values.yaml"
    )


@pytest.mark.parametrize("values_file", ALL_VALUES, ids=lambda v: v or "defaults")
@pytest.mark.parametrize("service", SETTINGS)
def test_the_service_accepts_what_the_chart_renders(
    service: str, values_file: str | None, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    environment = service_environment(rendering(values_file), service)
    if environment.get("CDSFLOW_EHR_AUTH") == "smart-backend":
        # the Secret's key, mounted where the chart says, stands in a test folder here
        mounted = Path(str(environment["CDSFLOW_EHR_PRIVATE_KEY_FILE"]))
        key = write_key_pair(tmp_path, "ehr-client", "ES384")
        environment["CDSFLOW_EHR_PRIVATE_KEY_FILE"] = str(key.private_key_file)
        environment["CDSFLOW_EHR_KEY_ID"] = key.key_id
        assert mounted.parent == Path("/etc/cdsflow/ehr-key")
    if environment.get("CDSFLOW_KAFKA_SSL_CA_FILE") is not None:
        # the cluster CA Secret, mounted where the chart says, stands in a test folder here
        mounted = Path(str(environment["CDSFLOW_KAFKA_SSL_CA_FILE"]))
        assert mounted.parent == Path("/etc/cdsflow/kafka-ca")
        environment["CDSFLOW_KAFKA_SSL_CA_FILE"] = str(write_ca_certificate(tmp_path))
    for name in [n for n in os.environ if n.startswith(("CDSFLOW_", "OTEL_"))]:
        monkeypatch.delenv(name, raising=False)
    for name, value in environment.items():
        if value is None:  # from a Secret
            value = SECRET_VALUES.get(name, "a-secret-from-the-cluster")
        monkeypatch.setenv(name, value)
    SETTINGS[service]()
    TelemetrySettings()


def test_bearer_auth_reads_the_token_from_the_secret() -> None:
    environment = service_environment(rendering("external-secrets-values.yaml"), "writeback")
    assert environment["CDSFLOW_EHR_AUTH"] == "bearer"
    assert "CDSFLOW_EHR_BEARER_TOKEN" in environment
    assert environment["CDSFLOW_EHR_BEARER_TOKEN"] is None  # valueFrom a Secret


def test_smart_backend_mounts_the_private_key_from_the_secret() -> None:
    rendered = rendering("gpu-values.yaml")
    environment = service_environment(rendered, "reasoner")
    assert environment["CDSFLOW_EHR_PRIVATE_KEY_FILE"] == "/etc/cdsflow/ehr-key/ehr-private-key.pem"
    pod = rendered.named("Deployment", component_name("reasoner"))["spec"]["template"]["spec"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["ehr-key"]["secret"]["secretName"] == "cdsflow"


def test_secrets_come_from_the_secret_never_from_a_value() -> None:
    for values_file in ALL_VALUES:
        rendered = rendering(values_file)
        for config_map in rendered.of_kind("ConfigMap"):
            assert not SECRET_NAMES & set(config_map.get("data", {})), values_file
        for label, pod in rendered.pod_templates():
            for container in pod["containers"]:
                for entry in container.get("env", []):
                    if entry["name"] in SECRET_NAMES:
                        assert "secretKeyRef" in entry.get("valueFrom", {}), (label, entry)


def test_the_listener_channels_are_those_the_adapters_need() -> None:
    adapters = load_adapter_set([REPO_ROOT / "adapters"])
    derived = list(adapter_channels(adapters, embedded_ehr=False).channels)
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert values["listener"]["channels"] == derived


def test_the_chart_ships_the_repository_adapters() -> None:
    shipped = {p.name: p.read_text() for p in (CHART / "files" / "adapters").glob("*.yaml")}
    repository = {p.name: p.read_text() for p in (REPO_ROOT / "adapters").glob("*.yaml")}
    assert shipped == repository, "run `make charts` to copy adapters/ into the chart"
    config_map = rendering(None).named("ConfigMap", component_name("adapters"))
    assert {k: v.rstrip("\n") for k, v in config_map["data"].items()} == {
        k: v.rstrip("\n") for k, v in repository.items()
    }


def test_triton_loads_every_model_an_adapter_names() -> None:
    adapters = load_adapter_set([REPO_ROOT / "adapters"])
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert set(values["triton"]["models"]) == {a.model.triton_name for a in adapters}
    assert all((REPO_ROOT / "models" / name).is_dir() for name in values["triton"]["models"])


def test_the_topic_job_creates_every_topic() -> None:
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    topics = [CLINICAL_EVENTS, RECOMMENDATIONS, FEEDBACK]
    assert set(values["kafka"]["topics"]["names"]) == {
        *topics,
        *(dead_letter_topic(t) for t in topics),
    }
    reasoner = ReasonerSettings(ehr_base_url="https://ehr.example.org")
    script = _topic_script(rendering(None))
    for topic in values["kafka"]["topics"]["names"]:
        assert f'create "{topic}"\n' in script
    assert f'create "{reasoner.context_changelog_topic}" --config cleanup.policy=compact' in script
    # the writeback's claims, kept for twice (at least) the window each replica reads back
    writeback = WritebackSettings(ehr_base_url="https://ehr.example.org", hooks_auth="off")
    retention_ms = values["kafka"]["topics"]["hookTokenClaimsRetentionMs"]
    assert retention_ms >= 2 * writeback.hook_token_claims_window_s * 1000
    assert f'create "{HOOK_TOKEN_CLAIMS}" --config retention.ms={retention_ms}' in script


@pytest.mark.parametrize(
    ("reasoner_values", "changelog"),
    [
        ({"consumerGroup": "ward-7"}, "ward-7.patient-context.v1"),
        ({"settings": {"PATIENT_CONTEXT_TOPIC": "ctx.v1"}}, "ctx.v1"),
    ],
)
def test_the_changelog_follows_the_reasoner_settings(
    reasoner_values: dict[str, Any], changelog: str
) -> None:
    script = _topic_script(render({"reasoner": reasoner_values}))
    assert f'create "{changelog}" --config cleanup.policy=compact' in script
    assert script.count("cleanup.policy=compact") == 1


def _topic_script(rendered: Rendering) -> str:
    job = rendered.named("Job", component_name("kafka-topics"))
    script = job["spec"]["template"]["spec"]["containers"][0]["args"][0]
    assert isinstance(script, str)
    return script


def test_kafka_tls_and_sasl_reach_the_services_and_the_topic_job() -> None:
    rendered = rendering("gpu-values.yaml")
    environment = service_environment(rendered, "listener")
    assert environment["CDSFLOW_KAFKA_SECURITY_PROTOCOL"] == "SASL_SSL"
    assert environment["CDSFLOW_KAFKA_SASL_MECHANISM"] == "SCRAM-SHA-512"
    assert environment["CDSFLOW_KAFKA_SSL_CA_FILE"] == "/etc/cdsflow/kafka-ca/ca.crt"
    job = rendered.named("Job", component_name("kafka-topics"))
    names = {e["name"] for e in job["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert {"CDSFLOW_KAFKA_SECURITY_PROTOCOL", "CDSFLOW_KAFKA_SASL_PASSWORD"} <= names


def test_kafka_oauth_reaches_the_services_without_a_username() -> None:
    environment = service_environment(rendering("keda-on-values.yaml"), "reasoner")
    assert environment["CDSFLOW_KAFKA_SECURITY_PROTOCOL"] == "SASL_SSL"
    assert environment["CDSFLOW_KAFKA_SASL_MECHANISM"] == "OAUTHBEARER"
    assert environment["CDSFLOW_KAFKA_OAUTH_TOKEN_URL"] == "https://idp.example.org/oauth2/token"
    assert environment["CDSFLOW_KAFKA_OAUTH_CLIENT_ID"] == "cdsflow"
    assert environment["CDSFLOW_KAFKA_OAUTH_SCOPE"] == "kafka"
    # the OAuth client secret: the Secret's kafkaSaslPassword key
    assert "CDSFLOW_KAFKA_SASL_PASSWORD" in environment
    assert environment["CDSFLOW_KAFKA_SASL_PASSWORD"] is None
    assert "CDSFLOW_KAFKA_SASL_USERNAME" not in environment


def test_on_apache_kafka_every_consumer_waits_kafkas_own_500_ms_for_data() -> None:
    """Apache Kafka answers a fetch when a record arrives; a short wait only makes idle
    consumers poll (the services' default 5 ms is for the embedded broker)."""
    rendered = rendering(None)
    waits = {
        service: service_environment(rendered, service)["CDSFLOW_KAFKA_FETCH_MAX_WAIT_MS"]
        for service in SETTINGS
    }
    assert waits == {"listener": "500", "reasoner": "500", "writeback": "500"}
    listener = service_environment(rendered, "listener")
    assert listener["CDSFLOW_PUBLISHED_EVENTS_FETCH_MAX_WAIT_MS"] == "500"
