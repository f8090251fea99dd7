"""Scale-out with the real engine: one Prometheus scraping three demo instances found the way pods are found.

The instances stand for three replicas of the Deployment; a file_sd file stands for the Kubernetes API (see
promconfig.py), and the shipped pod job's relabelling turns each entry into a target. Prometheus must then see
every instance on its own: per-pod counts add up to what was sent to each, the sum to what was sent to all, and a
rule aggregated over instances fires one alert, not one per pod.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
import yaml
from promconfig import CONFIG, DEPLOYMENT_YAML, file_sd_twin, job, pod_job, pod_target, shipped

pytestmark = pytest.mark.integration

T = TypeVar("T")
SENT = (40, 50, 60)  # tool requests sent to each instance
ALERT = "VictorScaleOutToolErrors"
# Aggregated over instances as the shipped rules are: one series, so one alert however many pods contribute.
TEST_RULES = {
    "groups": [
        {
            "name": "victor_scaleout_test_only",
            "rules": [
                {
                    "alert": ALERT,
                    "expr": 'sum(increase(victor_request_errors_total{provider="http"}[2m])) > 0',
                    "for": "0s",
                    "labels": {"severity": "warning"},
                    "annotations": {"summary": "test-only", "description": "{{ $value }} failed requests"},
                }
            ],
        }
    ]
}


def _binary(name: str) -> str:
    path = shutil.which(name) or (f"/usr/bin/{name}" if os.access(f"/usr/bin/{name}", os.X_OK) else None)
    if path is None:
        pytest.fail(f"{name} is not installed: run scripts/install-system-deps.sh (Debian's prometheus packages)")
    return path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


@dataclass
class Fleet:
    ports: list[int]
    prometheus: str
    workdir: Path
    procs: list[subprocess.Popen[bytes]]
    client: httpx.Client

    def wait(self, what: str, probe: Callable[[], T | None], timeout: float = 30.0) -> T:
        deadline = time.monotonic() + timeout
        last: Exception | None = None
        while time.monotonic() < deadline:
            for proc in self.procs:
                if proc.poll() is not None:
                    pytest.fail(f"{proc.args!r} exited with {proc.returncode} while waiting for {what}")
            try:
                result = probe()
                if result:
                    return result
            except (httpx.HTTPError, KeyError, ValueError, IndexError) as exc:
                last = exc
            time.sleep(0.25)
        pytest.fail(f"timed out after {timeout:g}s waiting for {what} (last error: {last!r})")

    def query(self, expr: str) -> list[dict[str, Any]]:
        body = self.client.post(f"{self.prometheus}/api/v1/query", data={"query": expr}).json()
        assert body["status"] == "success", body
        result: list[dict[str, Any]] = body["data"]["result"]
        return result


def _pod_annotations() -> dict[str, str]:
    docs = [d for d in yaml.safe_load_all(DEPLOYMENT_YAML.read_text()) if d]
    (deployment,) = [d for d in docs if d["kind"] == "Deployment"]
    annotations: dict[str, str] = deployment["spec"]["template"]["metadata"]["annotations"]
    return annotations


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    prometheus = _binary("prometheus")
    work = tmp_path_factory.mktemp("scaleout")
    procs: list[subprocess.Popen[bytes]] = []
    client = httpx.Client(timeout=10, trust_env=False)
    try:
        logs = []
        for i in range(3):
            log = work / f"demo-{i}.log"
            with log.open("wb") as out:
                args = [sys.executable, "-u", "-m", "victor_observability", "demo", "--port", "0", "--no-load"]
                args += ["--latency-scale", "0.01", "--seed", str(11 + i), "--system-interval", "1", "--spans-file", ""]
                procs.append(subprocess.Popen(args, cwd=work, stdout=out, stderr=subprocess.STDOUT))
            logs.append(log)
        fleet = Fleet([], "", work, procs, client)

        def port_of(log: Path) -> Callable[[], int | None]:
            def probe() -> int | None:
                found = re.search(r"serving http://127\.0\.0\.1:(\d+)", log.read_text())
                return int(found.group(1)) if found else None

            return probe

        fleet.ports = [fleet.wait(f"demo instance {i}", port_of(log)) for i, log in enumerate(logs)]

        # What the Kubernetes API would list: the three replicas (their annotations are the Deployment's, the port
        # rewritten to each instance's), one pod that does not ask to be scraped and one that has finished.
        annotations = _pod_annotations()
        groups = [
            pod_target(
                "127.0.0.1:8000",  # the container port discovery gives; the annotation's port replaces it
                {**annotations, "prometheus.io/port": str(port)},
                name=f"victor-api-{i}",
                namespace="victor",
                node=f"node-{i % 2}",
                phase="Running",
            )
            for i, port in enumerate(fleet.ports)
        ]
        groups.append(
            pod_target("127.0.0.1:9", {}, name="other-app", namespace="victor", node="node-0", phase="Running")
        )
        done = {**annotations, "prometheus.io/port": str(fleet.ports[0])}
        groups.append(
            pod_target("127.0.0.1:9", done, name="victor-job-1", namespace="victor", node="n", phase="Succeeded")
        )
        sd_file = work / "pods.json"
        sd_file.write_text(json.dumps(groups))

        config = file_sd_twin(shipped(), sd_file)
        config["global"].update(scrape_interval="1s", evaluation_interval="1s")
        # One machine, pods only: no local job, no Alertmanager (the rule's state is read from Prometheus).
        config["scrape_configs"] = [job(config, pod_job(shipped())["job_name"])]
        (work / "test-rules.yml").write_text(yaml.safe_dump(TEST_RULES))
        config["rule_files"] = [*config["rule_files"], str(work / "test-rules.yml")]
        config.pop("alerting")
        (work / "prometheus.yml").write_text(yaml.safe_dump(config))
        prom_port = _free_port()
        with (work / "prometheus.log").open("wb") as out:
            args = [
                prometheus,
                f"--config.file={work / 'prometheus.yml'}",
                f"--storage.tsdb.path={work / 'tsdb'}",
                f"--web.listen-address=127.0.0.1:{prom_port}",
            ]
            procs.append(subprocess.Popen(args, cwd=work, stdout=out, stderr=subprocess.STDOUT))
        fleet.prometheus = f"http://127.0.0.1:{prom_port}"
        fleet.wait("Prometheus to be ready", lambda: client.get(f"{fleet.prometheus}/-/ready").status_code == 200)
        yield fleet
    finally:
        for proc in reversed(procs):
            _stop(proc)
        client.close()


def test_the_runnable_twin_and_the_rules_pass_promtool(fleet: Fleet) -> None:
    promtool = _binary("promtool")
    twin = file_sd_twin(shipped(), fleet.workdir / "pods.json")
    (fleet.workdir / "shipped-twin.yml").write_text(yaml.safe_dump(twin))
    for args in (
        ["check", "config", str(fleet.workdir / "shipped-twin.yml")],
        ["check", "rules", str(CONFIG / "alerting" / "alerts.yml")],
    ):
        checked = subprocess.run([promtool, *args], capture_output=True, text=True, timeout=60)
        assert checked.returncode == 0, checked.stdout + checked.stderr


def test_every_replica_is_its_own_target_with_pod_namespace_and_node(fleet: Fleet) -> None:
    def up() -> list[dict[str, Any]] | None:
        targets = fleet.client.get(f"{fleet.prometheus}/api/v1/targets").json()["data"]["activeTargets"]
        healthy = [t for t in targets if t["health"] == "up"]
        return targets if len(healthy) == 3 else None

    targets = fleet.wait("three healthy targets", up)
    assert len(targets) == 3  # the unannotated pod and the finished one are dropped
    by_pod = {t["labels"]["pod"]: t for t in targets}
    assert sorted(by_pod) == ["victor-api-0", "victor-api-1", "victor-api-2"]
    for i, port in enumerate(fleet.ports):
        target = by_pod[f"victor-api-{i}"]
        assert target["scrapeUrl"] == f"http://127.0.0.1:{port}/metrics"
        labels = target["labels"]
        assert (labels["job"], labels["namespace"], labels["node"]) == ("victor", "victor", f"node-{i % 2}")
        assert labels["instance"] == f"victor-api-{i}"


def test_the_sum_over_instances_is_what_was_sent_to_all_and_one_aggregated_alert_fires(fleet: Fleet) -> None:
    # Distinct arguments: every request runs the tool (10% of run_tests runs fail, answered 500: errors on several
    # replicas); sequential per instance, so each seeded instance fails the same requests on every run. Two rounds,
    # each scraped before the next: a counter's first sample is its baseline, so only errors after it are an
    # increase() (as with steady traffic).
    sent = [0, 0, 0]
    for round_ in (0, 1):
        for i, (port, n) in enumerate(zip(fleet.ports, SENT, strict=True)):
            for k in range(n // 2 if round_ == 0 else n - n // 2):
                arg = f"case-{round_}-{i}-{k}"
                response = fleet.client.post(f"http://127.0.0.1:{port}/v1/tools/run_tests", json={"arg": arg})
                assert response.status_code in (200, 500)
                sent[i] += 1
        total = sum(sent)

        def scraped_all(total: int = total) -> list[dict[str, Any]] | None:
            result = fleet.query("sum(victor_request_total)")
            return result if result and float(result[0]["value"][1]) == total else None

        fleet.wait(f"sum(victor_request_total) == {total}", scraped_all)
    assert sent == list(SENT)
    per_pod = {r["metric"]["pod"]: float(r["value"][1]) for r in fleet.query("sum by (pod) (victor_request_total)")}
    assert per_pod == {f"victor-api-{i}": float(n) for i, n in enumerate(SENT)}

    errors = fleet.query("sum by (pod) (victor_request_errors_total) > 0")
    assert len(errors) >= 2, errors  # the premise: more than one replica contributes to the alert

    def firing() -> list[dict[str, Any]] | None:
        alerts = fleet.client.get(f"{fleet.prometheus}/api/v1/alerts").json()["data"]["alerts"]
        found = [a for a in alerts if a["labels"]["alertname"] == ALERT]
        return found if found and all(a["state"] == "firing" for a in found) else None

    (alert,) = fleet.wait(f"{ALERT} to fire", firing)
    assert "pod" not in alert["labels"] and "instance" not in alert["labels"]
