"""The chart lints and renders for its defaults and every ci values file; each ci file renders
what it is for; values.schema.json refuses what the chart must not take."""

from __future__ import annotations

from typing import Any

import helm_python
import pytest

from tests.deployment.rendered_chart import (
    ALL_VALUES,
    CHART,
    CI_VALUES,
    Rendering,
    component_name,
    render,
    rendering,
    values_of,
)

WARNING = 2


def test_every_ci_values_file_named_in_the_issue_exists() -> None:
    names = {path.name for path in CI_VALUES}
    assert {
        "gpu-values.yaml",
        "cpu-values.yaml",
        "keda-on-values.yaml",
        "keda-off-values.yaml",
        "external-secrets-values.yaml",
    } <= names


@pytest.mark.parametrize("values_file", ALL_VALUES, ids=lambda v: v or "defaults")
def test_the_chart_lints_strictly(values_file: str | None) -> None:
    values = {} if values_file is None else values_of(CHART / "ci" / values_file)
    report = helm_python.lint(CHART, values, strict=True, kube_version="v1.33.0")
    problems = [m for m in report["messages"] if m["severity"] >= WARNING]
    assert report["errors"] == [], report
    assert problems == [], report


@pytest.mark.parametrize("values_file", ALL_VALUES, ids=lambda v: v or "defaults")
def test_renders_the_three_services_and_triton(values_file: str | None) -> None:
    rendered = rendering(values_file)
    for component in ("listener", "reasoner", "writeback", "triton"):
        rendered.named("Deployment", component_name(component))
        rendered.named("Service", component_name(component))
    rendered.named("ConfigMap", component_name("adapters"))


def test_a_secret_is_never_rendered() -> None:
    for values_file in ALL_VALUES:
        assert rendering(values_file).of_kind("Secret") == [], values_file


def test_gpu_values_request_a_gpu_on_gpu_nodes() -> None:
    triton = _triton(rendering("gpu-values.yaml"))
    container = triton["spec"]["template"]["spec"]["containers"][0]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert container["resources"]["requests"]["nvidia.com/gpu"] == 1
    assert triton["spec"]["template"]["spec"]["tolerations"][0]["key"] == "nvidia.com/gpu"
    assert "nvidia.com/gpu.present" in triton["spec"]["template"]["spec"]["nodeSelector"]
    assert "--model-config-name=cpu" not in container["args"]
    assert container["image"] == "nvcr.io/nvidia/tritonserver:24.10-py3"


def test_cpu_values_serve_the_cpu_configuration_without_a_gpu() -> None:
    triton = _triton(rendering("cpu-values.yaml"))
    container = triton["spec"]["template"]["spec"]["containers"][0]
    assert "--model-config-name=cpu" in container["args"]
    assert "--model-repository=s3://cdsflow-models/models" in container["args"]
    assert "nvidia.com/gpu" not in str(container["resources"])
    assert "nodeSelector" not in triton["spec"]["template"]["spec"]
    assert container["image"].startswith("cdsflow-triton-cpu:")


def test_triton_loads_both_shipped_models() -> None:
    container = _triton(rendering(None))["spec"]["template"]["spec"]["containers"][0]
    loaded = {arg.split("=", 1)[1] for arg in container["args"] if arg.startswith("--load-model")}
    assert loaded == {"deterioration_risk", "medication_safety"}


def test_keda_on_scales_the_reasoner_on_its_consumer_lag() -> None:
    rendered = rendering("keda-on-values.yaml")
    scaled = rendered.named("ScaledObject", component_name("reasoner"))
    trigger = scaled["spec"]["triggers"][0]
    assert trigger["type"] == "kafka"
    assert trigger["metadata"]["consumerGroup"] == "cdsflow-reasoner"
    assert trigger["metadata"]["topic"] == "cdsflow.clinical-events.v1"
    assert trigger["metadata"]["sasl"] == "oauthbearer"
    assert trigger["authenticationRef"]["name"] == f"{component_name('reasoner')}-kafka"
    # KEDA owns the replica count; never more replicas than partitions
    reasoner = rendered.named("Deployment", component_name("reasoner"))
    assert "replicas" not in reasoner["spec"]
    assert scaled["spec"]["maxReplicaCount"] <= 12


def test_keda_off_leaves_fixed_replicas_and_no_scaled_object() -> None:
    rendered = rendering("keda-off-values.yaml")
    assert rendered.of_kind("ScaledObject") == []
    assert rendered.of_kind("HorizontalPodAutoscaler") == []
    assert rendered.named("Deployment", component_name("reasoner"))["spec"]["replicas"] == 3


def test_listener_and_writeback_scale_by_hpa_by_default() -> None:
    rendered = rendering(None)
    scaled = {
        h["spec"]["scaleTargetRef"]["name"] for h in rendered.of_kind("HorizontalPodAutoscaler")
    }
    assert scaled == {component_name("listener"), component_name("writeback")}
    for name in scaled:
        assert "replicas" not in rendered.named("Deployment", name)["spec"]


def test_external_secrets_fill_the_referenced_secret() -> None:
    rendered = rendering("external-secrets-values.yaml")
    external = rendered.named("ExternalSecret", "cdsflow")
    assert external["spec"]["target"]["name"] == "cdsflow"
    keys = {entry["secretKey"] for entry in external["spec"]["data"]}
    assert keys == {"pseudonym-key", "channel-secret", "ehr-bearer-token", "kafka-sasl-password"}


@pytest.mark.parametrize(
    "values",
    [
        {"secrets": {"pseudonymKey": "an-inlined-secret-value"}},
        {"writeback": {"settings": {"PSEUDONYM_KEY": "an-inlined-secret-value"}}},
        {"listener": {"settings": {"CHANNEL_SECRET": "an-inlined-secret-value"}}},
        {"triton": {"mode": "tpu"}},
        {"ehr": {"baseUrl": "ftp://ehr.example.org"}},
        {"kafka": {"bootstrapServers": "no-port"}},
        {"writeback": {"trustedIssuers": [{"iss": "x", "jwks_url": "http://plain.example"}]}},
    ],
    ids=[
        "inlined-secret",
        "secret-as-setting",
        "channel-secret-as-setting",
        "unknown-triton-mode",
        "ehr-not-http",
        "bootstrap-without-port",
        "jwks-not-https",
    ],
)
def test_the_values_schema_refuses(values: dict[str, Any]) -> None:
    with pytest.raises(helm_python.HelmValuesError):
        render(values)


def test_a_new_writeback_setting_is_one_line() -> None:
    rendered = render({"writeback": {"settings": {"CORS_ORIGINS": "https://ehr.example.org"}}})
    env = rendered.named("ConfigMap", f"{component_name('writeback')}-env")["data"]
    assert env["CDSFLOW_CORS_ORIGINS"] == "https://ehr.example.org"


def _triton(rendered: Rendering) -> dict[str, Any]:
    return rendered.named("Deployment", component_name("triton"))


def test_a_changed_adapter_rolls_the_reasoner_and_writeback() -> None:
    shipped = (CHART / "files" / "adapters" / "medication-safety.yaml").read_text()
    promoted = shipped.replace("mode: shadow", "mode: active")
    assert promoted != shipped
    before, after = (
        rendering(None),
        render({"adapters": {"files": {"medication-safety.yaml": promoted}}}),
    )
    for service in ("reasoner", "writeback"):
        name = component_name(service)
        old = before.named("Deployment", name)["spec"]["template"]["metadata"]["annotations"]
        new = after.named("Deployment", name)["spec"]["template"]["metadata"]["annotations"]
        assert old["checksum/adapters"] != new["checksum/adapters"]
    listener = after.named("Deployment", component_name("listener"))
    assert "checksum/adapters" not in listener["spec"]["template"]["metadata"]["annotations"]


@pytest.mark.parametrize(
    "values",
    [
        {"reasoner": {"replicas": 13}, "kafka": {"topics": {"partitions": 12}}},
        {
            "reasoner": {"keda": {"enabled": True, "maxReplicas": 7}},
            "kafka": {"topics": {"partitions": 6}},
        },
    ],
    ids=["fixed-replicas", "keda-max-replicas"],
)
def test_more_reasoners_than_partitions_is_refused(values: dict[str, Any]) -> None:
    with pytest.raises(helm_python.HelmRenderError, match="partitions"):
        render(values)


def test_the_service_monitor_scrapes_only_metrics_ports() -> None:
    rendered = rendering("gpu-values.yaml")
    monitor = rendered.named("ServiceMonitor", component_name("metrics"))
    endpoints = {e["port"]: e["path"] for e in monitor["spec"]["endpoints"]}
    assert endpoints == {"http": "/metrics", "metrics": "/metrics"}
    scraped: dict[str, set[str]] = {}
    for service in rendered.of_kind("Service"):
        component = service["metadata"]["labels"]["app.kubernetes.io/component"]
        ports = {port["name"] for port in service["spec"]["ports"]}
        scraped[component] = ports & endpoints.keys()
    # the services serve /metrics on their HTTP port; Triton on its metrics port only
    assert scraped == {
        "listener": {"http"},
        "reasoner": {"http"},
        "writeback": {"http"},
        "triton": {"metrics"},
    }


def test_the_ingress_routes_only_notifications_and_hooks() -> None:
    assert rendering(None).of_kind("Ingress") == []
    rendered = rendering("gpu-values.yaml")
    ingress = rendered.named("Ingress", component_name("ingress"))
    routes = {
        path["path"]: path["backend"]["service"]["name"]
        for rule in ingress["spec"]["rules"]
        for path in rule["http"]["paths"]
    }
    assert routes == {
        "/fhir/notifications": component_name("listener"),
        "/cds-services": component_name("writeback"),
    }
    policy = rendered.named("NetworkPolicy", component_name("listener"))
    assert policy["spec"]["ingress"][0]["from"][0]["namespaceSelector"]["matchLabels"] == {
        "kubernetes.io/metadata.name": "ingress-nginx"
    }
