"""Instrumentation switched off: a recorder and a tracer whose every call does nothing (the bench's baseline).

>>> with NoopTracer().start_span("chat") as span:
...     span.set_attribute("llm.provider", "openai")
"""

from __future__ import annotations

from types import TracebackType
from typing import Any


class NoopSpan:
    """A span that records nothing."""

    def set_attribute(self, key: str, value: Any) -> None:
        pass

    def set_status(self, status: Any, description: str | None = None) -> None:
        pass

    def __enter__(self) -> NoopSpan:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        pass


_SPAN = NoopSpan()


class NoopTracer:
    """Hands out one shared no-op span."""

    def start_span(
        self, name: str, parent: Any = None, kind: str | None = None, attributes: dict[str, Any] | None = None
    ) -> NoopSpan:
        return _SPAN


class NoopRecorder:
    """The collector's record methods, doing nothing."""

    def record_request(
        self, endpoint: str, provider: str, success: bool, latency_ms: float, labels: dict[str, Any] | None = None
    ) -> None:
        pass

    def record_tool_execution(
        self, tool_name: str, success: bool, duration_ms: float, labels: dict[str, Any] | None = None
    ) -> None:
        pass

    def record_coordinator_execution(
        self, coordinator_name: str, success: bool, duration_ms: float, labels: dict[str, Any] | None = None
    ) -> None:
        pass

    def record_task_completion(self, success: bool, cost_usd: float | None = None) -> None:
        pass

    def record_token_usage(self, token_count: float) -> None:
        pass

    def record_cache_hit(self, cache_name: str) -> None:
        pass

    def record_cache_miss(self, cache_name: str) -> None:
        pass

    def record_cache_eviction(self, cache_name: str) -> None:
        pass

    def set_cache_size(self, cache_name: str, size: float) -> None:
        pass

    def increment_tool_active(self, count: int = 1) -> None:
        pass

    def decrement_tool_active(self, count: int = 1) -> None:
        pass

    def record_error(self, error_type: str, message: str = "") -> None:
        pass
