"""The deployment files against the real stack: the demo service, Prometheus (rules) and Alertmanager on loopback."""

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
from promconfig import file_sd_twin, job, shipped

pytestmark = pytest.mark.integration

CONFIG = Path(__file__).resolve().parents[2] / "config"
PROMETHEUS_YML = CONFIG / "prometheus.yml"
ALERTS_YML = CONFIG / "alerting" / "alerts.yml"
ALERTMANAGER_YML = CONFIG / "alertmanager.yml"
DASHBOARD = CONFIG / "dashboards" / "victor-metrics.json"
# Grafana's built-in interval variable; any valid range works for Prometheus.
RATE_INTERVAL = "30s"
DEMO = [sys.executable, "-u", "-m", "victor_observability", "demo"]

# Fires as soon as the demo's traffic has produced a failed request (the demo's providers fail a few percent).
TEST_RULES = {
    "groups": [
        {
            "name": "victor_test_only",
            "rules": [
                {
                    "alert": "VictorTestRequestErrors",
                    "expr": "sum(increase(victor_request_errors_total[1m])) > 0",
                    "for": "0s",
                    "labels": {"severity": "warning"},
                    "annotations": {"summary": "test-only", "description": "{{ $value }} failed requests in 1m"},
                }
            ],
        }
    ]
}

T = TypeVar("T")


def _binary(name: str) -> str:
    path = shutil.which(name) or (f"/usr/bin/{name}" if os.access(f"/usr/bin/{name}", os.X_OK) else None)
    if path is None:
        pytest.fail(f"{name} is not installed: run scripts/install-system-deps.sh (Debian's prometheus packages)")
    return path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_for(what: str, probe: Callable[[], T | None], timeout: float, procs: list[subprocess.Popen[bytes]]) -> T:
    """Polls `probe` until it returns something truthy; fails with `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        for proc in procs:
            if proc.poll() is not None:
                pytest.fail(f"{proc.args!r} exited with {proc.returncode} while waiting for {what}")
        try:
            result = probe()
            if result:
                return result
        except (httpx.HTTPError, KeyError, ValueError) as exc:
            last = exc
        time.sleep(0.25)
    pytest.fail(f"timed out after {timeout:g}s waiting for {what} (last error: {last!r})")


@dataclass
class Stack:
    demo_port: int
    prometheus: str
    alertmanager: str
    workdir: Path
    procs: list[subprocess.Popen[bytes]]
    client: httpx.Client

    def query(self, expr: str) -> httpx.Response:
        return self.client.post(f"{self.prometheus}/api/v1/query", data={"query": expr})

    def wait(self, what: str, probe: Callable[[], T | None], timeout: float = 40.0) -> T:
        return _wait_for(what, probe, timeout, self.procs)


def _start(args: list[str], log: Path, cwd: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen(args, cwd=cwd, stdout=out, stderr=subprocess.STDOUT)


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    prometheus, alertmanager = _binary("prometheus"), _binary("prometheus-alertmanager")
    work = tmp_path_factory.mktemp("stack")
    procs: list[subprocess.Popen[bytes]] = []
    client = httpx.Client(timeout=10, trust_env=False)
    try:
        # The demo service, on a port it picks and reports.
        demo_log = work / "demo.log"
        demo = _start(
            [*DEMO, "--port", "0", "--rate", "40", "--latency-scale", "0.05", "--seed", "3", "--system-interval", "1"],
            demo_log,
            work,
        )
        procs.append(demo)

        def demo_port() -> int | None:
            found = re.search(r"serving http://127\.0\.0\.1:(\d+)", demo_log.read_text())
            return int(found.group(1)) if found else None

        port = _wait_for("the demo service", demo_port, 30, procs)

        # Alertmanager: the shipped config, with the Slack receiver swapped for a silent one (no outbound calls).
        am_port = _free_port()
        am_config = yaml.safe_load(ALERTMANAGER_YML.read_text())
        am_config["global"].pop("slack_api_url")
        am_config["route"].update(group_wait="1s", group_interval="1s")
        am_config["receivers"] = [{"name": am_config["route"]["receiver"]}]
        (work / "alertmanager.yml").write_text(yaml.safe_dump(am_config))
        procs.append(
            _start(
                [
                    alertmanager,
                    f"--config.file={work / 'alertmanager.yml'}",
                    f"--storage.path={work / 'am-data'}",
                    f"--web.listen-address=127.0.0.1:{am_port}",
                    "--cluster.listen-address=",  # no gossip: a single local instance
                ],
                work / "alertmanager.log",
                work,
            )
        )
        am_url = f"http://127.0.0.1:{am_port}"

        # Prometheus: the shipped config (pod discovery finding no pods) with the local job pointed at the demo and
        # that Alertmanager, every interval 1 s.
        prom_port = _free_port()
        (work / "pods.json").write_text("[]")
        config = file_sd_twin(shipped(), work / "pods.json")
        config["global"].update(scrape_interval="1s", evaluation_interval="1s")
        job(config, "victor-local")["static_configs"] = [{"targets": [f"127.0.0.1:{port}"]}]
        (work / "test-rules.yml").write_text(yaml.safe_dump(TEST_RULES))
        config["rule_files"] = [str(ALERTS_YML), str(work / "test-rules.yml")]
        config["alerting"]["alertmanagers"][0]["static_configs"] = [{"targets": [f"127.0.0.1:{am_port}"]}]
        (work / "prometheus.yml").write_text(yaml.safe_dump(config))
        procs.append(
            _start(
                [
                    prometheus,
                    f"--config.file={work / 'prometheus.yml'}",
                    f"--storage.tsdb.path={work / 'tsdb'}",
                    f"--web.listen-address=127.0.0.1:{prom_port}",
                    # As the deployment docs start it: the latency buckets' exemplars are kept (README, Exemplars).
                    "--enable-feature=exemplar-storage",
                ],
                work / "prometheus.log",
                work,
            )
        )
        prom_url = f"http://127.0.0.1:{prom_port}"

        def ready(url: str) -> Callable[[], bool]:
            return lambda: client.get(f"{url}/-/ready").status_code == 200

        _wait_for("Alertmanager to be ready", ready(am_url), 30, procs)
        _wait_for("Prometheus to be ready", ready(prom_url), 30, procs)
        yield Stack(port, prom_url, am_url, work, procs, client)
    finally:
        for proc in reversed(procs):
            _stop(proc)
        client.close()


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, timeout=60)


def _dashboard_targets() -> list[tuple[str, str]]:
    """(panel title, PromQL) for every query of the dashboard, Grafana's $__rate_interval filled in."""
    panels = json.loads(DASHBOARD.read_text())["panels"]
    return [
        (p["title"], t["expr"].replace("$__rate_interval", RATE_INTERVAL))
        for p in panels
        if p["type"] != "row"
        for t in p["targets"]
    ]


def _rule_exprs() -> list[tuple[str, str]]:
    groups = yaml.safe_load(ALERTS_YML.read_text())["groups"]
    return [(r["alert"], r["expr"]) for g in groups for r in g["rules"]]


def test_shipped_files_pass_promtool_and_amtool(tmp_path: Path) -> None:
    promtool, amtool = _binary("promtool"), _binary("amtool")
    # promtool resolves rule_files against the config's directory: the shipped layout must check as is...
    checked = _run(promtool, "check", "config", str(PROMETHEUS_YML))
    if "field kubernetes_sd_configs not found" in checked.stdout + checked.stderr:
        # ... by a promtool with Kubernetes discovery; Debian builds it without, so there the pod job is checked
        # with file_sd in its place (everything else as shipped: relabelling, jobs, rules, alerting).
        twin = tmp_path / "prometheus.yml"
        twin.write_text(yaml.safe_dump(file_sd_twin(shipped(), tmp_path / "pods.json")))
        checked = _run(promtool, "check", "config", str(twin))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "SUCCESS" in checked.stdout
    rules = _run(promtool, "check", "rules", str(ALERTS_YML))
    assert rules.returncode == 0, rules.stdout + rules.stderr
    assert f"SUCCESS: {len(_rule_exprs())} rules found" in rules.stdout
    am = _run(amtool, "check-config", str(ALERTMANAGER_YML))
    assert am.returncode == 0, am.stdout + am.stderr


def test_alert_groups_cover_the_guide() -> None:
    groups = {g["name"] for g in yaml.safe_load(ALERTS_YML.read_text())["groups"]}
    expected = {"api_health", "tool_execution", "cache_performance", "system_resources", "business_logic"}
    expected |= {"availability", "coordinator", "token_usage"}
    assert {f"victor_{name}" for name in expected} == groups
    for group in yaml.safe_load(ALERTS_YML.read_text())["groups"]:
        for rule in group["rules"]:
            assert rule["labels"]["severity"] in {"info", "warning", "error", "critical"}, rule["alert"]
            assert rule["annotations"]["summary"] and rule["annotations"]["description"], rule["alert"]


def test_rewritten_configs_pass_promtool_and_amtool(stack: Stack) -> None:
    checked = _run(_binary("promtool"), "check", "config", str(stack.workdir / "prometheus.yml"))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    am = _run(_binary("amtool"), "check-config", str(stack.workdir / "alertmanager.yml"))
    assert am.returncode == 0, am.stdout + am.stderr


def test_prometheus_scrapes_the_demo(stack: Stack) -> None:
    def up() -> list[dict[str, Any]] | None:
        targets = stack.client.get(f"{stack.prometheus}/api/v1/targets").json()["data"]["activeTargets"]
        return [t for t in targets if t["health"] == "up" and t["labels"]["job"] == "victor-local"] or None

    (target,) = stack.wait("the victor-local target to be up", up)
    assert target["scrapeUrl"] == f"http://127.0.0.1:{stack.demo_port}/metrics"
    result = stack.wait(
        "up{job='victor-local'}", lambda: stack.query('up{job="victor-local"}').json()["data"]["result"]
    )
    assert result[0]["value"][1] == "1"


def test_every_dashboard_and_rule_expression_parses(stack: Stack) -> None:
    exprs = _dashboard_targets() + _rule_exprs()
    assert len(exprs) > 40
    for name, expr in exprs:
        assert "$" not in expr, f"{name}: unresolved variable in {expr!r}"
        response = stack.query(expr)
        assert response.status_code == 200, f"{name}: {expr!r}: {response.text}"
        assert response.json()["status"] == "success", name

    # Prometheus loaded every shipped rule and evaluates each without error.
    def rules() -> list[dict[str, Any]] | None:
        groups = stack.client.get(f"{stack.prometheus}/api/v1/rules").json()["data"]["groups"]
        found = [r for g in groups for r in g["rules"] if g["name"] != "victor_test_only"]
        return found if found and all(r.get("lastEvaluation", "").startswith("20") for r in found) else None

    loaded = stack.wait("every rule to be evaluated", rules)
    assert sorted(r["name"] for r in loaded) == sorted(name for name, _ in _rule_exprs())
    assert [r["name"] for r in loaded if r["health"] != "ok"] == []


def test_queries_use_metric_names_the_demo_exports(stack: Stack) -> None:
    exposition = stack.client.get(f"http://127.0.0.1:{stack.demo_port}/metrics").text
    exported = {line.split("{")[0].split(" ")[0] for line in exposition.splitlines() if not line.startswith("#")}
    for name, expr in _dashboard_targets() + _rule_exprs():
        for metric in re.findall(r"\bvictor_[a-z_]+\b", expr):
            assert metric in exported, f"{name} queries {metric}, which the toolkit does not export"


def test_dashboard_panels_return_data_after_traffic(stack: Stack) -> None:
    panels: dict[str, list[str]] = {}
    for title, expr in _dashboard_targets():
        panels.setdefault(title, []).append(expr)
    # The guide's panels, found by title.
    for wanted in ("Request rate", "Request latency", "Error rate", "Active requests", "Service uptime", "Memory"):
        assert wanted in panels
    for wanted in ("Tool execution rate", "Cache hit rate", "CPU", "Tasks", "Cost", "Token usage"):
        assert wanted in panels

    def empty_panels() -> list[str]:
        return [
            title for title, exprs in panels.items() if not any(stack.query(e).json()["data"]["result"] for e in exprs)
        ]

    stack.wait("every dashboard panel to return data", lambda: not empty_panels() or None)


def test_an_alert_driven_by_the_demo_reaches_alertmanager(stack: Stack) -> None:
    def firing_in_alertmanager() -> list[dict[str, Any]] | None:
        alerts = stack.client.get(f"{stack.alertmanager}/api/v2/alerts").json()
        return [a for a in alerts if a["labels"]["alertname"] == "VictorTestRequestErrors"] or None

    (alert,) = stack.wait("VictorTestRequestErrors in Alertmanager", firing_in_alertmanager, timeout=60)
    assert alert["labels"]["severity"] == "warning"
    assert alert["labels"].get("job") is None  # an aggregate over every series: no target labels left
    assert alert["status"]["state"] == "active"
    assert alert["annotations"]["summary"] == "test-only"


def test_kubernetes_probe_paths_answer_on_the_demo(stack: Stack) -> None:
    docs = [d for d in yaml.safe_load_all((CONFIG / "k8s" / "deployment.yaml").read_text()) if d]
    (deployment,) = [d for d in docs if d["kind"] == "Deployment"]
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    probes = [container[p]["httpGet"]["path"] for p in ("livenessProbe", "readinessProbe", "startupProbe")]
    assert probes == ["/health/live", "/health/ready", "/health/startup"]
    for path in probes:
        response = stack.client.get(f"http://127.0.0.1:{stack.demo_port}{path}")
        assert response.status_code == 200, (path, response.text)


def test_latency_exemplars_are_traces_in_the_demos_span_file(stack: Stack) -> None:
    """Grafana's click from a latency bucket to its trace: the exemplar Prometheus stored names a trace the demo
    exported."""

    def exemplar_trace_ids() -> set[str] | None:
        now = time.time()
        found = stack.client.post(
            f"{stack.prometheus}/api/v1/query_exemplars",
            data={"query": "victor_request_latency_ms_bucket", "start": str(now - 600), "end": str(now + 60)},
        ).json()
        assert found["status"] == "success", found
        return {e["labels"]["trace_id"] for series in found["data"] for e in series["exemplars"]} or None

    trace_ids = stack.wait("exemplars of victor_request_latency_ms_bucket in Prometheus", exemplar_trace_ids)
    assert all(re.fullmatch(r"[0-9a-f]{32}", t) for t in trace_ids), trace_ids
    spans_file = stack.workdir / "victor-demo-spans.jsonl"

    def missing_from_the_span_file() -> set[str]:
        # The demo exports spans in batches, and a request's server span ends after its children: a trace just
        # scraped may be a moment from the file, its server span last.
        if not spans_file.exists():
            return trace_ids
        lines = spans_file.read_text().splitlines()
        # Each is the trace of a server span, the request whose latency the bucket counted.
        servers = {
            span["trace_id"]
            for line in lines
            if line.strip()
            for span in [json.loads(line)]
            if span.get("kind") == "server"
        }
        return trace_ids - servers

    stack.wait(
        "the exemplars' traces' server spans in the demo's span file", lambda: not missing_from_the_span_file() or None
    )


def test_latency_panels_show_exemplars_linked_to_the_trace_data_source() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["traces"]["type"] == "datasource" and variables["traces"]["query"] in {"tempo", "jaeger"}
    latency = [p for p in dashboard["panels"] if "histogram_quantile" in json.dumps(p.get("targets", []))]
    assert {p["title"] for p in latency} >= {"Request latency", "Tool duration p95", "Coordinator duration p95"}
    for panel in latency:
        assert all(t.get("exemplar") is True for t in panel["targets"]), panel["title"]
        (link,) = panel["fieldConfig"]["defaults"]["links"]
        assert "${traces}" in link["url"] and "${__data.fields.trace_id}" in link["url"], panel["title"]
    sources = yaml.safe_load((CONFIG / "grafana" / "datasources.yml").read_text())["datasources"]
    by_uid = {s["uid"]: s for s in sources}
    (destination,) = by_uid["prometheus"]["jsonData"]["exemplarTraceIdDestinations"]
    assert destination["name"] == "trace_id"  # the label our exemplars carry
    assert by_uid[destination["datasourceUid"]]["type"] in {"tempo", "jaeger"}
