"""Every container of every workload, in every ci values file, holds the invariants: Pod
Security "restricted", a read-only root with an emptyDir /tmp, pinned images, probes on
/healthz and /readyz for the services; and the cluster-level pieces: PDBs, a default-deny
NetworkPolicy with egress only to what each workload needs."""

from __future__ import annotations

import copy

import pytest

from tests.deployment.chart_invariants import pod_problems
from tests.deployment.rendered_chart import (
    ALL_VALUES,
    SERVICES,
    Rendering,
    component_name,
    rendering,
)

SERVICE_NAMES = {component_name(service) for service in SERVICES}


def _all_problems(rendered: Rendering) -> list[str]:
    problems: list[str] = []
    for label, pod in rendered.pod_templates():
        name = label.split("/", 1)[1]
        problems += pod_problems(label, pod, cdsflow_service=name in SERVICE_NAMES)
    return problems


@pytest.mark.parametrize("values_file", ALL_VALUES, ids=lambda v: v or "defaults")
def test_every_container_holds_the_invariants(values_file: str | None) -> None:
    rendered = rendering(values_file)
    workloads = list(rendered.pod_templates())
    assert len(workloads) >= 4  # the three services and Triton (and the topic Job)
    assert _all_problems(rendered) == []


def test_the_check_finds_a_container_that_lacks_them() -> None:
    rendered = rendering(None)
    for label, pod in rendered.pod_templates():
        if "listener" not in label:
            continue
        broken = copy.deepcopy(pod)
        container = broken["containers"][0]
        del container["securityContext"]["readOnlyRootFilesystem"]
        container["securityContext"]["capabilities"] = {"drop": []}
        container["readinessProbe"]["httpGet"]["path"] = "/healthz"
        container["volumeMounts"] = [
            m for m in container["volumeMounts"] if m["mountPath"] != "/tmp"
        ]
        container["image"] = "cdsflow-listener:latest"
        problems = pod_problems(label, broken, cdsflow_service=True)
        assert len(problems) == 5, problems
        return
    pytest.fail("no listener Deployment rendered")


def test_triton_is_probed_on_its_own_health_endpoints() -> None:
    triton = rendering(None).named("Deployment", component_name("triton"))
    container = triton["spec"]["template"]["spec"]["containers"][0]
    assert container["readinessProbe"]["httpGet"]["path"] == "/v2/health/ready"
    assert container["livenessProbe"]["httpGet"]["path"] == "/v2/health/live"
    volumes = {v["name"]: v for v in triton["spec"]["template"]["spec"]["volumes"]}
    assert volumes["shm"]["emptyDir"]["medium"] == "Memory"  # the python backend's shared memory


@pytest.mark.parametrize("values_file", ALL_VALUES, ids=lambda v: v or "defaults")
def test_every_deployment_has_a_disruption_budget(values_file: str | None) -> None:
    rendered = rendering(values_file)
    budgets = {
        tuple(sorted(p["spec"]["selector"]["matchLabels"].items()))
        for p in rendered.of_kind("PodDisruptionBudget")
    }
    for deployment in rendered.of_kind("Deployment"):
        selector = tuple(sorted(deployment["spec"]["selector"]["matchLabels"].items()))
        assert selector in budgets, deployment["metadata"]["name"]


@pytest.mark.parametrize(
    "values_file", [v for v in ALL_VALUES if v != "keda-off-values.yaml"], ids=str
)
def test_default_deny_and_each_workload_opens_only_what_it_needs(values_file: str | None) -> None:
    rendered = rendering(values_file)
    deny = rendered.named("NetworkPolicy", component_name("default-deny"))
    assert deny["spec"]["policyTypes"] == ["Ingress", "Egress"]
    assert "ingress" not in deny["spec"]
    assert "egress" not in deny["spec"]
    policies = {p["metadata"]["name"]: p for p in rendered.of_kind("NetworkPolicy")}
    for workload in ("listener", "reasoner", "writeback", "triton"):
        policy = policies[component_name(workload)]
        egress = policy["spec"]["egress"]
        ports = {port["port"] for rule in egress for port in rule["ports"]}
        assert 53 in ports, workload  # DNS
        # nothing but Kafka, the EHR (443), Triton (8001), OTLP (4317/4318), DNS
        assert ports <= {53, 9092, 9093, 443, 8001, 4317, 4318}, (workload, ports)
    reasoner_ports = {
        port["port"]
        for rule in policies[component_name("reasoner")]["spec"]["egress"]
        for port in rule["ports"]
    }
    assert {9092, 9093, 443, 8001, 4318} <= reasoner_ports
    # nobody but the reasoner and writeback reaches Triton's gRPC port
    triton_ingress = policies[component_name("triton")]["spec"]["ingress"][0]
    allowed = {
        peer["podSelector"]["matchLabels"]["app.kubernetes.io/component"]
        for peer in triton_ingress["from"]
    }
    assert allowed == {"reasoner", "writeback"}


def test_no_network_policy_when_disabled() -> None:
    assert rendering("keda-off-values.yaml").of_kind("NetworkPolicy") == []
