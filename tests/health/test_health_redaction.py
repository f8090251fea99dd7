"""Credentials in check output are redacted wherever the output goes: to_dict, to_health_json, logs."""

from __future__ import annotations

import json
import logging

import pytest
from victor_observability import CheckResult, ProductionHealthChecker

SECRETS = ("hunter2", "s3cr3t-token", "eyJhbGciOi.payload.sig", "dXNlcjpwYXNzd29yZA==", "k3y-v4lue")


def db_down() -> bool:
    raise ConnectionError("could not connect to postgres://app:password=hunter2@db:5432/app")


def api_down() -> CheckResult:
    return CheckResult(
        "fail",
        output="GET https://api.example/v1?access_token=s3cr3t-token&page=2 -> 401; "
        "Authorization: Bearer eyJhbGciOi.payload.sig; upstream api_key=k3y-v4lue",
    )


def basic_down() -> bool:
    raise PermissionError("rejected Authorization: Basic dXNlcjpwYXNzd29yZA==")


@pytest.mark.parametrize("is_async", [False, True])
async def test_guide_style_to_dict_never_shows_credentials(is_async: bool, caplog: pytest.LogCaptureFixture) -> None:
    checker = ProductionHealthChecker()
    checker.mark_startup_complete()
    if is_async:

        async def db_down_async() -> bool:
            return db_down()

        checker.add_async_readiness_check("database", db_down_async)
    else:
        checker.add_readiness_check("database", db_down)
    checker.add_readiness_check("api", api_down)
    checker.add_readiness_check("auth", basic_down)
    with caplog.at_level(logging.DEBUG, logger="victor_observability"):
        response = await checker.readiness()
    rendered = [
        json.dumps(response.to_dict()),
        json.dumps(response.to_health_json()),
        json.dumps(response.to_dict(detail="full")),
        caplog.text,
    ]
    for text in rendered:
        for secret in SECRETS:
            assert secret not in text, (secret, text)
    output = response.to_dict()["checks"]["database"]["output"]
    assert output == "ConnectionError: could not connect to postgres://app:***@db:5432/app"
    assert "page=2" in response.to_dict()["checks"]["api"]["output"]  # only the credential goes


async def test_a_string_that_is_not_a_status_is_redacted_before_it_is_cut(caplog: pytest.LogCaptureFixture) -> None:
    checker = ProductionHealthChecker()
    checker.add_liveness_check("dsn", lambda: "postgres://app:hunter2@db:5432/app?sslmode=require")
    with caplog.at_level(logging.DEBUG, logger="victor_observability"):
        response = await checker.liveness()
    assert response.checks["dsn"].output == "unrecognised status 'postgres://app:***@db:5432/app?sslmode=r'"
    assert "hunter2" not in caplog.text


def test_a_check_result_built_by_hand_is_redacted_when_rendered() -> None:
    result = CheckResult("fail", output="redis://:hunter2@cache:6379 refused")
    assert result.to_dict()["output"] == "redis://:***@cache:6379 refused"
    assert result.to_health_json()["output"] == "redis://:***@cache:6379 refused"
