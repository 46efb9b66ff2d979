"""The chart rendered with Helm's own code (helm-python-sdk), for the deployment checks.

No cluster and no helm binary: `helm_python.Chart.load(path).render(values)` runs Helm's
template engine (values.schema.json included) and returns `{template path: manifest text}`.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import helm_python
import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
CHART = REPO_ROOT / "charts" / "cdsflow"
CI_VALUES = sorted((CHART / "ci").glob("*-values.yaml"))
RELEASE = "cdsflow"
NAMESPACE = "cdsflow"
SERVICES = ("listener", "reasoner", "writeback")
# the Kubernetes version whose API schemas every manifest must meet (kubernetes-validate)
KUBERNETES_VERSION = "1.33.0"

Manifest = dict[str, Any]


@dataclass(frozen=True)
class Rendering:
    """One values file's manifests."""

    label: str
    manifests: tuple[Manifest, ...]

    def of_kind(self, kind: str) -> list[Manifest]:
        return [m for m in self.manifests if m["kind"] == kind]

    def named(self, kind: str, name: str) -> Manifest:
        found = [m for m in self.of_kind(kind) if m["metadata"]["name"] == name]
        assert len(found) == 1, f"{self.label}: {kind}/{name} rendered {len(found)} times"
        return found[0]

    def pod_templates(self) -> Iterator[tuple[str, Manifest]]:
        """(kind/name, pod spec) of every workload."""
        for manifest in self.manifests:
            if manifest["kind"] in {"Deployment", "StatefulSet", "DaemonSet", "Job"}:
                label = f"{manifest['kind']}/{manifest['metadata']['name']}"
                yield label, manifest["spec"]["template"]["spec"]


@functools.cache
def chart() -> helm_python.Chart:
    return helm_python.Chart.load(CHART)


def values_of(path: Path | None) -> dict[str, Any]:
    if path is None:
        return {}
    loaded = yaml.safe_load(path.read_text())
    assert isinstance(loaded, dict)
    return loaded


def render(values: dict[str, Any], label: str = "values") -> Rendering:
    templates = chart().render(values, name=RELEASE, namespace=NAMESPACE, is_install=True)
    manifests: list[Manifest] = []
    for path, text in sorted(templates.items()):
        if path.endswith("NOTES.txt"):
            continue
        for document in yaml.safe_load_all(text):
            if document:
                assert isinstance(document, dict), f"{path}: a manifest is a mapping"
                manifests.append(document)
    return Rendering(label, tuple(manifests))


@functools.cache
def rendering(values_file: str | None) -> Rendering:
    """The chart rendered with its defaults, or with one ci values file on top (cached)."""
    path = CHART / "ci" / values_file if values_file else None
    return render(values_of(path), values_file or "default values")


# the renderings every check runs over: the defaults and each ci/*-values.yaml
ALL_VALUES: tuple[str | None, ...] = (None, *(path.name for path in CI_VALUES))


def component_name(component: str) -> str:
    return f"{RELEASE}-{component}"
