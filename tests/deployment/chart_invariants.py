"""What every rendered workload must hold (Pod Security "restricted", probes, /tmp), as a
function that lists what is wrong, so that the tests can show it finds a missing piece."""

from __future__ import annotations

from typing import Any

from tests.deployment.rendered_chart import Manifest

SERVICE_PROBES = {
    "startupProbe": "/healthz",
    "livenessProbe": "/healthz",
    "readinessProbe": "/readyz",
}


def pod_problems(label: str, pod: Manifest, *, cdsflow_service: bool) -> list[str]:
    """Everything `pod` (a pod spec) lacks; empty when it holds every invariant."""
    problems: list[str] = []
    pod_context = pod.get("securityContext") or {}
    if pod_context.get("runAsNonRoot") is not True:
        problems.append(f"{label}: pod securityContext.runAsNonRoot is not true")
    if (pod_context.get("seccompProfile") or {}).get("type") != "RuntimeDefault":
        problems.append(f"{label}: pod seccompProfile is not RuntimeDefault")
    if pod.get("automountServiceAccountToken") is not False:
        problems.append(f"{label}: the service account token is mounted")
    tmp_volumes = {
        v["name"] for v in pod.get("volumes", []) if "emptyDir" in v and v["name"] == "tmp"
    }
    for container in [*pod.get("initContainers", []), *pod.get("containers", [])]:
        problems += container_problems(f"{label}/{container['name']}", container, tmp_volumes)
        if cdsflow_service:
            problems += probe_problems(f"{label}/{container['name']}", container)
    return problems


def container_problems(label: str, container: dict[str, Any], tmp_volumes: set[str]) -> list[str]:
    problems: list[str] = []
    context = container.get("securityContext") or {}
    expected = {
        "runAsNonRoot": True,
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
    }
    for key, value in expected.items():
        if context.get(key) is not value:
            problems.append(f"{label}: securityContext.{key} is not {value}")
    if (context.get("capabilities") or {}).get("drop") != ["ALL"]:
        problems.append(f"{label}: capabilities do not drop ALL")
    if (context.get("capabilities") or {}).get("add"):
        problems.append(f"{label}: capabilities are added")
    if (context.get("seccompProfile") or {}).get("type") != "RuntimeDefault":
        problems.append(f"{label}: seccompProfile is not RuntimeDefault")
    if context.get("privileged"):
        problems.append(f"{label}: privileged")
    mounts = {m["mountPath"]: m["name"] for m in container.get("volumeMounts", [])}
    if mounts.get("/tmp") not in tmp_volumes:
        problems.append(f"{label}: no emptyDir on /tmp (the root filesystem is read-only)")
    image = str(container.get("image", ""))
    tag = image.rsplit(":", 1)[-1] if ":" in image.rsplit("/", 1)[-1] else ""
    if not tag or tag == "latest":
        problems.append(f"{label}: image {image!r} is not pinned to a tag")
    if not (container.get("resources") or {}).get("requests"):
        problems.append(f"{label}: no resource requests")
    return problems


def probe_problems(label: str, container: dict[str, Any]) -> list[str]:
    problems: list[str] = []
    for probe, path in SERVICE_PROBES.items():
        got = ((container.get(probe) or {}).get("httpGet") or {}).get("path")
        if got != path:
            problems.append(f"{label}: {probe} is not an HTTP GET of {path} (got {got!r})")
    return problems
