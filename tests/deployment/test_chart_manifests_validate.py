"""Every rendered manifest validates against the Kubernetes API schemas of a pinned version
(kubernetes-validate, offline, strict: no unknown fields). The operators' kinds that those
schemas do not hold (KEDA, Prometheus Operator, External Secrets) are checked for the fields
their operators require."""

from __future__ import annotations

import kubernetes_validate
import pytest

from tests.deployment.rendered_chart import ALL_VALUES, KUBERNETES_VERSION, Manifest, rendering

CUSTOM_KINDS = {
    ("keda.sh/v1alpha1", "ScaledObject"): ("scaleTargetRef", "triggers"),
    ("keda.sh/v1alpha1", "TriggerAuthentication"): ("secretTargetRef",),
    ("monitoring.coreos.com/v1", "ServiceMonitor"): ("selector", "endpoints"),
    ("external-secrets.io/v1beta1", "ExternalSecret"): ("secretStoreRef", "target", "data"),
}


@pytest.mark.parametrize("values_file", ALL_VALUES, ids=lambda v: v or "defaults")
def test_every_manifest_meets_the_kubernetes_schemas(values_file: str | None) -> None:
    failures: list[str] = []
    for manifest in rendering(values_file).manifests:
        key = (manifest["apiVersion"], manifest["kind"])
        if key in CUSTOM_KINDS:
            failures += _custom_kind_problems(manifest, CUSTOM_KINDS[key])
            continue
        try:
            kubernetes_validate.validate(manifest, KUBERNETES_VERSION, strict=True)
        except kubernetes_validate.ValidationError as exc:
            failures.append(f"{manifest['kind']}/{manifest['metadata']['name']}: {exc.message}")
    assert failures == []


def test_the_schema_check_refuses_an_unknown_field() -> None:
    deployment = rendering(None).of_kind("Deployment")[0]
    broken = {**deployment, "spec": {**deployment["spec"], "replicaz": 2}}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, KUBERNETES_VERSION, strict=True)


def _custom_kind_problems(manifest: Manifest, required: tuple[str, ...]) -> list[str]:
    label = f"{manifest['kind']}/{manifest.get('metadata', {}).get('name')}"
    spec = manifest.get("spec") or {}
    missing = [field for field in required if not spec.get(field)]
    return [f"{label}: spec.{field} missing" for field in missing]
