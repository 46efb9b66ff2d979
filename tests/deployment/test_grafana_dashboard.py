"""The Grafana dashboard shipped by the chart reads metrics that cdsflow declares, and shows
what the issue lists for an SRE."""

from __future__ import annotations

import json
import re

from tests.deployment.rendered_chart import CHART, REPO_ROOT, component_name, rendering

DASHBOARD = CHART / "files" / "dashboards" / "cdsflow.json"
_CDSFLOW_METRIC = re.compile(r"\bcdsflow_([a-z_]+?)(?:_total|_bucket|_count|_sum)?\b")


def expressions() -> list[str]:
    dashboard = json.loads(DASHBOARD.read_text())
    return [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]


def declared_metrics() -> set[str]:
    """Names the services and libraries declare on their registries (namespace `cdsflow`)."""
    names: set[str] = set()
    for source in [
        *REPO_ROOT.glob("services/*/src/**/*.py"),
        *REPO_ROOT.glob("libs/*/src/**/*.py"),
    ]:
        text = source.read_text()
        names |= set(re.findall(r"\.(?:counter|gauge|histogram)\(\s*\"([a-z_]+)\"", text))
    return names


def test_every_cdsflow_metric_on_the_dashboard_is_declared() -> None:
    declared = declared_metrics()
    assert "listener_notifications" in declared  # the scan finds declarations
    used = {m for expr in expressions() for m in _CDSFLOW_METRIC.findall(expr)}
    assert used
    assert used - declared == set(), f"the dashboard reads undeclared metrics: {used - declared}"


def test_the_dashboard_shows_what_an_sre_watches() -> None:
    text = " ".join(expressions())
    for needed in (
        "cdsflow_listener_notifications_total",  # notifications accepted / rejected
        "kafka_consumergroup_lag",  # consumer lag per group
        "cdsflow_writeback_event_to_card_seconds_bucket",  # end-to-end latency
        "cdsflow_writeback_event_to_ehr_write_seconds_bucket",  # ... to the EHR write
        "nv_inference_queue_duration_us",  # Triton queue time
        "nv_inference_compute_infer_duration_us",  # Triton compute time
        "nv_inference_exec_count",  # Triton batch size
        "cdsflow_writeback_hook_duration_seconds_bucket",  # CDS Hooks latency
        "cdsflow_writeback_hook_refusals_total",  # CDS Hooks errors
        "cdsflow_writeback_feedback_total",  # cards accepted / overridden
        "cdsflow_writeback_cards_served_total",  # cards shown
        '.dlq"',  # DLQ depth
        "cdsflow_writeback_ehr_write_attempts_total",  # EHR write retries
    ):
        assert needed in text, needed


def test_shipped_as_a_configmap_when_enabled() -> None:
    assert rendering(None).of_kind("ConfigMap")  # defaults: no dashboard ConfigMap
    names = {m["metadata"]["name"] for m in rendering(None).of_kind("ConfigMap")}
    assert component_name("dashboard") not in names
    config_map = rendering("gpu-values.yaml").named("ConfigMap", component_name("dashboard"))
    assert config_map["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert json.loads(config_map["data"]["cdsflow.json"]) == json.loads(DASHBOARD.read_text())
