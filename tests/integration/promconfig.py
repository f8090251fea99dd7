"""The shipped Prometheus configuration made runnable on one machine: pod discovery stood in for by file_sd.

Debian's Prometheus (the one scripts/install-system-deps.sh installs) is built without Kubernetes discovery: its
promtool rejects `kubernetes_sd_configs` outright. The stand-in changes that one block and nothing else, so the
relabelling that turns a pod's metadata into a target runs for real, on targets whose labels carry the same
`__meta_kubernetes_*` names the Kubernetes discovery sets.
"""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

import yaml

CONFIG = Path(__file__).resolve().parents[2] / "config"
PROMETHEUS_YML = CONFIG / "prometheus.yml"
DEPLOYMENT_YAML = CONFIG / "k8s" / "deployment.yaml"


def shipped() -> dict[str, Any]:
    config: dict[str, Any] = yaml.safe_load(PROMETHEUS_YML.read_text())
    return config


def job(config: dict[str, Any], name: str) -> dict[str, Any]:
    (found,) = [j for j in config["scrape_configs"] if j["job_name"] == name]
    return found


def pod_job(config: dict[str, Any]) -> dict[str, Any]:
    """The job that discovers pods (the one with kubernetes_sd_configs)."""
    (found,) = [j for j in config["scrape_configs"] if "kubernetes_sd_configs" in j]
    return found


def file_sd_twin(config: dict[str, Any], sd_file: Path) -> dict[str, Any]:
    """`config` with the pod job's kubernetes_sd_configs replaced by file_sd_configs reading `sd_file`; rule files
    made absolute (the twin is written elsewhere than config/)."""
    twin = copy.deepcopy(config)
    pods = pod_job(twin)
    del pods["kubernetes_sd_configs"]
    pods["file_sd_configs"] = [{"files": [str(sd_file)], "refresh_interval": "1s"}]
    twin["rule_files"] = [str(CONFIG / f) for f in twin.get("rule_files", [])]
    return twin


def annotation_label(annotation: str) -> str:
    """The meta label Kubernetes pod discovery sets for a pod annotation (names sanitised to [a-zA-Z0-9_])."""
    return "__meta_kubernetes_pod_annotation_" + re.sub(r"[^a-zA-Z0-9_]", "_", annotation)


def pod_target(address: str, annotations: dict[str, str], *, name: str, namespace: str, node: str, phase: str) -> Any:
    """A file_sd target group shaped like what Kubernetes discovery (role pod) yields for one container port."""
    labels = {annotation_label(k): v for k, v in annotations.items()}
    labels.update(
        {
            "__meta_kubernetes_namespace": namespace,
            "__meta_kubernetes_pod_name": name,
            "__meta_kubernetes_pod_node_name": node,
            "__meta_kubernetes_pod_phase": phase,
        }
    )
    return {"targets": [address], "labels": labels}
