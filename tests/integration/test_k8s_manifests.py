"""The Kubernetes manifests parse, and agree with the scrape configuration that relies on them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from promconfig import CONFIG, annotation_label, pod_job, shipped

MANIFESTS = sorted((CONFIG / "k8s").glob("*.yaml"))


def _docs(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def _one(kind: str) -> dict[str, Any]:
    (found,) = [d for path in MANIFESTS for d in _docs(path) if d["kind"] == kind]
    return found


def _container(deployment: dict[str, Any]) -> dict[str, Any]:
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    return container  # type: ignore[no-any-return]


def test_the_manifests_are_there() -> None:
    names = {p.name for p in MANIFESTS}
    assert {"deployment.yaml", "podmonitor.yaml", "prometheus-rbac.yaml"} <= names


@pytest.mark.parametrize("path", MANIFESTS, ids=lambda p: p.name)
def test_every_manifest_parses_into_named_kubernetes_objects(path: Path) -> None:
    docs = _docs(path)
    assert docs
    for doc in docs:
        assert doc["apiVersion"] and doc["kind"], doc
        assert doc["metadata"]["name"], doc


def test_the_pod_template_carries_the_annotations_the_pod_job_reads() -> None:
    deployment = _one("Deployment")
    annotations = deployment["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert annotations["prometheus.io/path"] == "/metrics"
    ports = {p["containerPort"] for p in _container(deployment)["ports"]}
    assert int(annotations["prometheus.io/port"]) in ports

    pods = pod_job(shipped())
    assert pods["job_name"] == "victor"  # the rules and dashboards select it
    assert pods["kubernetes_sd_configs"] == [{"role": "pod"}]
    read = {label for rule in pods["relabel_configs"] for label in rule.get("source_labels", [])}
    wanted = {annotation_label(f"prometheus.io/{key}") for key in ("scrape", "port", "path")}
    assert wanted <= read, wanted - read
    # Every annotation label the job reads is one the pod template sets.
    annotation_labels = {label for label in read if label.startswith("__meta_kubernetes_pod_annotation_")}
    assert annotation_labels == {annotation_label(a) for a in annotations if a.startswith("prometheus.io/")}
    targets = {rule.get("target_label") for rule in pods["relabel_configs"]}
    assert {"pod", "namespace", "node", "instance", "__address__", "__metrics_path__"} <= targets
    (keep,) = [r for r in pods["relabel_configs"] if r.get("action") == "keep"]
    assert keep["source_labels"] == [annotation_label("prometheus.io/scrape")] and keep["regex"] == "true"


def test_the_service_is_not_a_scrape_target() -> None:
    # Annotated, it would be scraped again by an endpoints job, beside the pods.
    service = _one("Service")
    assert not any(k.startswith("prometheus.io/") for k in service["metadata"].get("annotations", {}))
    assert service["spec"]["selector"] == _one("Deployment")["spec"]["selector"]["matchLabels"]


def test_the_podmonitor_scrapes_the_same_pods_port_and_path() -> None:
    deployment, monitor = _one("Deployment"), _one("PodMonitor")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert monitor["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    (endpoint,) = monitor["spec"]["podMetricsEndpoints"]
    annotations = deployment["spec"]["template"]["metadata"]["annotations"]
    (port,) = [p for p in _container(deployment)["ports"] if p["name"] == endpoint["port"]]
    assert str(port["containerPort"]) == annotations["prometheus.io/port"]
    assert endpoint["path"] == annotations["prometheus.io/path"]
    relabel = {r["targetLabel"]: r for r in endpoint["relabelings"]}
    assert relabel["job"]["replacement"] == "victor"
    assert relabel["node"]["sourceLabels"] == ["__meta_kubernetes_pod_node_name"]


def test_prometheus_may_list_and_watch_pods() -> None:
    role = _one("ClusterRole")
    (rule,) = role["rules"]
    assert rule["resources"] == ["pods"] and {"get", "list", "watch"} <= set(rule["verbs"])
    binding = _one("ClusterRoleBinding")
    assert binding["roleRef"]["name"] == role["metadata"]["name"]
    account = _one("ServiceAccount")
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": account["metadata"]["name"], "namespace": account["metadata"]["namespace"]}
    ]
