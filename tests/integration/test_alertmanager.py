"""AlertmanagerNotifier against a real Prometheus Alertmanager started on a free loopback port."""

from __future__ import annotations

import asyncio
import datetime
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from victor_observability import AlertmanagerNotifier, AlertRule, AlertSeverity, create_alert_manager

pytestmark = pytest.mark.integration

CONFIG = """\
route:
  receiver: "null"
  group_wait: 1s
receivers:
  - name: "null"
"""


def alertmanager_binary() -> str:
    found = shutil.which("prometheus-alertmanager") or shutil.which("alertmanager")
    if found is None and Path("/usr/bin/prometheus-alertmanager").exists():
        found = "/usr/bin/prometheus-alertmanager"
    # No skip: a missing peer is a failure (scripts/install-system-deps.sh installs it).
    assert found, "prometheus-alertmanager is not installed (Debian package prometheus-alertmanager)"
    return found


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def alertmanager(tmp_path: Path) -> Iterator[str]:
    binary = alertmanager_binary()
    config = tmp_path / "alertmanager.yml"
    config.write_text(CONFIG)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = (tmp_path / "alertmanager.log").open("wb")
    proc = subprocess.Popen(
        [
            binary,
            f"--config.file={config}",
            f"--storage.path={tmp_path / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--cluster.listen-address=",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            assert proc.poll() is None, f"alertmanager exited: {(tmp_path / 'alertmanager.log').read_text()}"
            try:
                if httpx.get(f"{url}/-/ready", timeout=1.0).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "alertmanager not ready within 30 s"
            time.sleep(0.1)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
        log.close()


async def alerts(url: str) -> list[dict[str, Any]]:
    async with httpx.AsyncClient(timeout=5.0) as client:
        response = await client.get(f"{url}/api/v2/alerts", params={"filter": 'alertname="high_error_rate"'})
    response.raise_for_status()
    found: list[dict[str, Any]] = response.json()
    return found


async def test_firing_then_resolved_alert_reaches_alertmanager(alertmanager: str) -> None:
    manager = create_alert_manager()
    notifier = AlertmanagerNotifier(alertmanager, generator_url="http://victor.local/alerts", ttl=600)
    manager.add_notifier("alertmanager", notifier)
    failing = [True]
    manager.add_rule(
        AlertRule.builder()
        .name("high_error_rate")
        .description("Error rate exceeds 5%")
        .condition(lambda: failing[0])
        .severity(AlertSeverity.CRITICAL)
        .notification_channels(["alertmanager"])
        .labels({"service": "api"})
        .annotations({"runbook": "https://runbooks.victor.ai/errors"})
        .build()
    )
    [fired] = await manager.check_and_alert()
    assert await manager.flush(15)
    assert manager.get_failed_notifications() == []
    [alert] = await alerts(alertmanager)
    assert alert["labels"] == {"alertname": "high_error_rate", "severity": "critical", "service": "api"}
    assert alert["annotations"] == {"summary": "Error rate exceeds 5%", "runbook": "https://runbooks.victor.ai/errors"}
    assert alert["status"]["state"] == "active"
    assert alert["generatorURL"] == "http://victor.local/alerts"
    fired_at = datetime.datetime.fromtimestamp(fired.fired_at or 0.0, tz=datetime.timezone.utc)
    assert alert["startsAt"].startswith(fired_at.strftime("%Y-%m-%dT%H:%M:%S"))
    assert alert["endsAt"] > alert["startsAt"]  # alive for the ttl, until we resolve it
    failing[0] = False
    await manager.check_and_alert()
    assert await manager.flush(15)
    assert manager.get_failed_notifications() == []
    deadline = time.monotonic() + 15
    while await alerts(alertmanager):  # resolved alerts leave the API's alert list
        assert time.monotonic() < deadline, "alertmanager still lists the resolved alert"
        await asyncio.sleep(0.1)
