"""Health check results: statuses, probe kinds, per-check results and probe responses (plain and IETF health+json)."""

from __future__ import annotations

import contextlib
import enum
import math
import re
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Literal

__all__ = [
    "CheckResult",
    "Detail",
    "HealthCheckResponse",
    "HealthCheckType",
    "HealthStatus",
    "ProbeStatus",
]

#: How much a rendered response reveals:
#:
#: - "status": the overall status only (and `is_healthy` in `to_dict()`): safe for anyone.
#: - "checks": plus each check's status (and componentType), the version, the timestamp and uptime: names
#:   which dependencies exist, nothing about them.
#: - "full": plus observed values and units, durations and each check's output text (a failing check's
#:   one-line reason, which may quote an exception).
#:
#: The probe endpoints (health/http.py) default to "status"; `to_dict()` and `to_health_json()` default to
#: "full" as the guide's example expects. At every level, credentials in output text are redacted
#: (`redact_credentials`: URL userinfo, `password=`/`token=`-style pairs, Bearer/Basic values), but "full" is
#: still meant for operators, not for a public endpoint.
Detail = Literal["status", "checks", "full"]
_DETAILS: tuple[str, ...] = ("status", "checks", "full")

_REDACTED = "***"
# scheme://user:password@host or scheme://token@host: greedy up to the last "@" of the authority.
_URL_USERINFO = re.compile(r"(\b[A-Za-z][A-Za-z0-9+.\-]*://)([^\s/?#]*)@")
# password=..., "token": "...", api_key: ..., ?sig=... (quoted values whole, bare ones up to a delimiter).
_KEY_VALUE = re.compile(
    r"(?i)\b(password|passwd|pwd|secret|client[_-]?secret|(?:access[_-]|refresh[_-]|id[_-]|auth[_-])?token|"
    r"api[_-]?key|apikey|sig|signature|private[_-]?key|credentials?)"
    r"(['\"]?\s*[=:]\s*)(\"[^\"]*\"|'[^']*'|[^\s&;,'\"]+)"
)
_AUTH_SCHEME = re.compile(r"(?i)\b(bearer\s+)[A-Za-z0-9._~+/\-]+=*|\b(basic\s+)[A-Za-z0-9+/]{8,}=*")


def _userinfo(match: re.Match[str]) -> str:
    user, colon, _ = match.group(2).partition(":")
    return f"{match.group(1)}{user}:{_REDACTED}@" if colon else f"{match.group(1)}{_REDACTED}@"


def redact_credentials(text: str) -> str:
    """`text` with credentials replaced by ``***``: URL userinfo, `password=`/`token=`-style pairs (query
    strings too) and Bearer/Basic values. Check output goes through this before it is shown or logged.

    >>> redact_credentials("OperationalError: postgres://app:password=hunter2@db:5432/app refused")
    'OperationalError: postgres://app:***@db:5432/app refused'
    >>> redact_credentials("GET https://api/x?token=abc&page=2 -> 401 (Authorization: Bearer eyJ.x.y)")
    'GET https://api/x?token=***&page=2 -> 401 (Authorization: Bearer ***)'
    """
    if "://" in text:
        text = _URL_USERINFO.sub(_userinfo, text)
    text = _KEY_VALUE.sub(lambda m: f"{m.group(1)}{m.group(2)}{_REDACTED}", text)
    return _AUTH_SCHEME.sub(lambda m: f"{m.group(1) or m.group(2)}{_REDACTED}", text)


class HealthStatus(str, enum.Enum):
    """Status of a check or a probe; HTTP 200 for HEALTHY and DEGRADED, 503 for UNHEALTHY.

    The IETF names are accepted too, so results can be written either way:

    >>> HealthStatus("warn") is HealthStatus.DEGRADED
    True
    >>> HealthStatus.UNHEALTHY.ietf
    'fail'
    """

    HEALTHY = "healthy"
    DEGRADED = "degraded"
    UNHEALTHY = "unhealthy"

    @classmethod
    def _missing_(cls, value: object) -> HealthStatus | None:
        if isinstance(value, str):
            return _FROM_IETF.get(value.lower())
        return None

    @property
    def ietf(self) -> str:
        """The "Health Check Response Format for HTTP APIs" name: pass, warn or fail."""
        return _TO_IETF[self]

    @property
    def metric_value(self) -> float:
        """The value of `<prefix>_health_check_status`: 1 pass, 0.5 warn, 0 fail."""
        return _METRIC_VALUE[self]


_FROM_IETF = {
    "pass": HealthStatus.HEALTHY,
    "ok": HealthStatus.HEALTHY,
    "up": HealthStatus.HEALTHY,
    "warn": HealthStatus.DEGRADED,
    "fail": HealthStatus.UNHEALTHY,
    "error": HealthStatus.UNHEALTHY,
    "down": HealthStatus.UNHEALTHY,
}
_TO_IETF = {HealthStatus.HEALTHY: "pass", HealthStatus.DEGRADED: "warn", HealthStatus.UNHEALTHY: "fail"}
_METRIC_VALUE = {HealthStatus.HEALTHY: 1.0, HealthStatus.DEGRADED: 0.5, HealthStatus.UNHEALTHY: 0.0}


class HealthCheckType(str, enum.Enum):
    """The Kubernetes probe a check belongs to.

    >>> HealthCheckType.READINESS.value
    'readiness'
    """

    LIVENESS = "liveness"
    READINESS = "readiness"
    STARTUP = "startup"


class ProbeStatus(str, enum.Enum):
    """A probe's overall answer in its own words, as the pure-Python checker spells them: liveness is
    "healthy"/"unhealthy", readiness "ready"/"not_ready", startup "started"/"starting" ("timeout" once
    `startup_timeout` has passed); "degraded" (a failing non-critical check) is the same for every probe.
    Members compare equal to those plain strings; `health` is the underlying `HealthStatus`.

    >>> ProbeStatus.NOT_READY == "not_ready", ProbeStatus.NOT_READY.health, ProbeStatus.NOT_READY.ietf
    (True, <HealthStatus.UNHEALTHY: 'unhealthy'>, 'fail')
    >>> ProbeStatus.of(HealthCheckType.READINESS, HealthStatus.HEALTHY)
    <ProbeStatus.READY: 'ready'>
    """

    HEALTHY = "healthy"
    DEGRADED = "degraded"
    UNHEALTHY = "unhealthy"
    READY = "ready"
    NOT_READY = "not_ready"
    STARTED = "started"
    STARTING = "starting"
    TIMEOUT = "timeout"

    @classmethod
    def _missing_(cls, value: object) -> ProbeStatus | None:
        # IETF names and HealthStatus members read as liveness words.
        if isinstance(value, str):
            health = _FROM_IETF.get(value.lower())
            return None if health is None else cls(health.value)
        return None

    @classmethod
    def of(cls, probe: HealthCheckType | None, health: HealthStatus) -> ProbeStatus:
        """The word `probe` uses for `health` (liveness words when the probe is unknown)."""
        return probe_status(probe, health)

    @property
    def health(self) -> HealthStatus:
        return _PROBE_HEALTH[self]

    @property
    def ietf(self) -> str:
        """pass, warn or fail: the IETF health+json rendering keeps its own words."""
        return _TO_IETF[_PROBE_HEALTH[self]]

    @property
    def metric_value(self) -> float:
        return _METRIC_VALUE[_PROBE_HEALTH[self]]


_PROBE_HEALTH = {
    ProbeStatus.HEALTHY: HealthStatus.HEALTHY,
    ProbeStatus.DEGRADED: HealthStatus.DEGRADED,
    ProbeStatus.UNHEALTHY: HealthStatus.UNHEALTHY,
    ProbeStatus.READY: HealthStatus.HEALTHY,
    ProbeStatus.NOT_READY: HealthStatus.UNHEALTHY,
    ProbeStatus.STARTED: HealthStatus.HEALTHY,
    ProbeStatus.STARTING: HealthStatus.UNHEALTHY,
    ProbeStatus.TIMEOUT: HealthStatus.UNHEALTHY,
}
_HEALTHY, _DEGRADED = HealthStatus.HEALTHY, HealthStatus.DEGRADED
_READINESS, _STARTUP = HealthCheckType.READINESS, HealthCheckType.STARTUP


_PROBE_DEGRADED = ProbeStatus.DEGRADED
_LIVE_OK, _LIVE_FAIL = ProbeStatus.HEALTHY, ProbeStatus.UNHEALTHY
_READY, _NOT_READY = ProbeStatus.READY, ProbeStatus.NOT_READY
_STARTED, _STARTING = ProbeStatus.STARTED, ProbeStatus.STARTING


def probe_status(probe: HealthCheckType | None, health: HealthStatus) -> ProbeStatus:
    """`ProbeStatus.of` by identity tests on module constants: it runs on every probe, and enum hashing and
    enum attribute lookups are Python calls."""
    if health is _DEGRADED:
        return _PROBE_DEGRADED
    ok = health is _HEALTHY
    if probe is _READINESS:
        return _READY if ok else _NOT_READY
    if probe is _STARTUP:
        return _STARTED if ok else _STARTING
    return _LIVE_OK if ok else _LIVE_FAIL


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, tz=timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _json_number(value: Any) -> Any:
    # NaN and infinities are not JSON: report them as strings rather than emit an invalid document.
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return value


# slots, not frozen: a frozen dataclass's __init__ costs 4x more, and results are built on every probe.
# Responses are shared (cache, concurrent probes): treat them as read-only.
@dataclass(slots=True, init=False)
class CheckResult:
    """The outcome of one check: status, optional observed value and unit, optional output text.

    A check may return one itself for a richer answer than a bool; the checker fills in `duration_seconds`
    and `time`. The status may be given by its IETF name.

    >>> CheckResult("warn", observed_value=87.5, observed_unit="percent", output="disk almost full").status
    <HealthStatus.DEGRADED: 'degraded'>
    """

    status: HealthStatus
    observed_value: Any
    observed_unit: str | None
    output: str | None
    component_type: str | None
    duration_seconds: float
    time: float

    def __init__(
        self,
        status: HealthStatus | str,
        observed_value: Any = None,
        observed_unit: str | None = None,
        output: str | None = None,
        component_type: str | None = None,
        duration_seconds: float = 0.0,
        time: float = 0.0,
    ) -> None:
        if not isinstance(status, HealthStatus):
            try:
                status = HealthStatus(status)
            except ValueError:
                raise ValueError(f"CheckResult status {status!r} is not pass, warn or fail") from None
        self.status = status
        self.observed_value = observed_value
        self.observed_unit = observed_unit
        self.output = output
        self.component_type = component_type
        self.duration_seconds = duration_seconds
        self.time = time

    @property
    def is_healthy(self) -> bool:
        """True unless the check failed."""
        return self.status is not HealthStatus.UNHEALTHY

    def to_dict(self, detail: Detail = "full") -> dict[str, Any]:
        """The check as it appears in `HealthCheckResponse.to_dict()`."""
        out: dict[str, Any] = {"status": self.status.value}
        if detail == "full":
            out["duration_ms"] = round(self.duration_seconds * 1000.0, 3)
            if self.observed_value is not None:
                out["observed_value"] = _json_number(self.observed_value)
            if self.observed_unit:
                out["observed_unit"] = self.observed_unit
            if self.output:
                out["output"] = redact_credentials(self.output)
        return out

    def to_health_json(self, detail: Detail = "full") -> dict[str, Any]:
        """The check as one entry of the IETF `checks` object (an array element keyed by the check name)."""
        out: dict[str, Any] = {"status": self.status.ietf}
        if self.component_type:
            out["componentType"] = self.component_type
        if detail == "full":
            out["time"] = _iso(self.time)
            if self.observed_value is not None:
                out["observedValue"] = _json_number(self.observed_value)
            if self.observed_unit:
                out["observedUnit"] = self.observed_unit
            # The draft says output SHOULD be omitted for "pass".
            if self.output and self.status is not HealthStatus.HEALTHY:
                out["output"] = redact_credentials(self.output)
        return out


def aggregate(checks: dict[str, CheckResult], critical: dict[str, bool] | None = None) -> HealthStatus:
    """Worst status wins; a failing non-critical check only degrades the probe."""
    status = HealthStatus.HEALTHY
    for name, result in checks.items():
        if result.status is HealthStatus.UNHEALTHY:
            if critical is None or critical.get(name, True):
                return HealthStatus.UNHEALTHY
            status = HealthStatus.DEGRADED
        elif result.status is HealthStatus.DEGRADED:
            status = HealthStatus.DEGRADED
    return status


@dataclass(slots=True, init=False)
class HealthCheckResponse:
    """The answer of one probe: overall status, per-check results, when, uptime and service version.

    `status` is a `ProbeStatus` ("ready"/"not_ready" for readiness, ...); it may be given as a `HealthStatus`,
    read in the probe's words, or as a plain string. `checks` may hold plain dicts (the pure-Python checker's
    shape) and `timestamp` an ISO 8601 string; both are rendered as given.

    >>> r = HealthCheckResponse(HealthStatus.HEALTHY, {}, timestamp=0.0, uptime_seconds=1.0, version="1.0.0")
    >>> r.is_healthy, r.http_status, r.to_dict()["status"]
    (True, 200, 'healthy')
    >>> HealthCheckResponse("not_ready", {"db": {"status": "not_ready"}}).to_dict()["checks"]
    {'db': {'status': 'not_ready'}}
    """

    status: ProbeStatus
    # Plain dicts given by a caller are kept and rendered as given; the checker always stores CheckResults.
    checks: dict[str, CheckResult]
    timestamp: float | str
    uptime_seconds: float
    version: str
    probe: HealthCheckType | None
    service_id: str | None

    def __init__(
        self,
        status: ProbeStatus | HealthStatus | str,
        checks: dict[str, CheckResult] | dict[str, dict[str, Any]],
        timestamp: float | str | None = None,
        uptime_seconds: float = 0.0,
        version: str = "1.0.0",
        probe: HealthCheckType | None = None,
        service_id: str | None = None,
    ) -> None:
        if status.__class__ is not ProbeStatus:
            if isinstance(status, HealthStatus):
                status = probe_status(probe, status)
            else:
                try:
                    status = ProbeStatus(status)
                except ValueError:
                    words = ", ".join(m.value for m in ProbeStatus)
                    raise ValueError(f"health response status {status!r} is not one of {words}") from None
        self.status = status
        self.checks = checks  # type: ignore[assignment]
        self.timestamp = time.time() if timestamp is None else timestamp
        self.uptime_seconds = uptime_seconds
        self.version = version
        self.probe = probe
        self.service_id = service_id

    @property
    def health(self) -> HealthStatus:
        """The status as healthy, degraded or unhealthy, whatever the probe."""
        return self.status.health

    @property
    def is_healthy(self) -> bool:
        """True when the service should receive traffic: healthy or degraded-but-serving (ready, started)."""
        return self.status.health is not HealthStatus.UNHEALTHY

    @property
    def http_status(self) -> int:
        """200 when healthy or degraded, 503 when failing."""
        return 200 if self.is_healthy else 503

    def to_dict(self, detail: Detail = "full") -> dict[str, Any]:
        """Plain JSON-ready dict: status, checks, timestamp (ISO 8601 UTC), uptime_seconds, version, is_healthy.

        >>> HealthCheckResponse(HealthStatus.UNHEALTHY, {}, 0.0).to_dict(detail="status")
        {'status': 'unhealthy', 'is_healthy': False}
        """
        check_detail(detail)
        out: dict[str, Any] = {"status": self.status.value}
        if detail != "status":
            out["checks"] = {name: _check_dict(result, detail) for name, result in self.checks.items()}
            out["timestamp"] = self.timestamp if isinstance(self.timestamp, str) else _iso(self.timestamp)
            out["uptime_seconds"] = round(self.uptime_seconds, 3)
            out["version"] = self.version
            if self.probe is not None:
                out["probe"] = self.probe.value
        out["is_healthy"] = self.is_healthy
        return out

    def to_health_json(self, detail: Detail = "full") -> dict[str, Any]:
        """The IETF "Health Check Response Format for HTTP APIs" body (media type application/health+json).

        >>> HealthCheckResponse(HealthStatus.DEGRADED, {}, 0.0, version="2.1").to_health_json()
        {'status': 'warn', 'version': '2.1', 'checks': {}}
        """
        check_detail(detail)
        out: dict[str, Any] = {"status": self.status.ietf}
        if detail != "status":
            out["version"] = self.version
            if self.service_id:
                out["serviceId"] = self.service_id
            if detail == "full" and self.probe is not None:
                out["description"] = f"{self.probe.value} probe"
            out["checks"] = {name: [_check_health_json(result, detail)] for name, result in self.checks.items()}
        return out


def _check_dict(result: CheckResult | dict[str, Any], detail: Detail) -> dict[str, Any]:
    return result if isinstance(result, dict) else result.to_dict(detail)


def _check_health_json(result: CheckResult | dict[str, Any], detail: Detail) -> dict[str, Any]:
    if isinstance(result, dict):
        out = dict(result)
        if "status" in out:
            with contextlib.suppress(ValueError):  # a word we do not know stays as given
                out["status"] = ProbeStatus(out["status"]).ietf
        return out
    return result.to_health_json(detail)


def check_detail(detail: str) -> None:
    """Raises ValueError unless `detail` is a known detail level (the model and the probe app share it)."""
    if detail not in _DETAILS:
        raise ValueError(f"health detail {detail!r} is not one of {', '.join(_DETAILS)}")
