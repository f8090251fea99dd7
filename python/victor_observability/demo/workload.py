"""The demo's simulated world: LLM providers and models, tools and a tool cache, with realistic latency and errors.

>>> world = World(seed=1, latency_scale=0.0)
>>> call = world.llm_call("anthropic", "claude-haiku-4-5", prompt_tokens=120)
>>> call.latency_ms
0.0
"""

from __future__ import annotations

import random
import threading
from collections import OrderedDict
from dataclasses import dataclass


@dataclass(frozen=True)
class Model:
    name: str
    usd_per_mtok_in: float
    usd_per_mtok_out: float
    speed: float  # latency multiplier: small models answer faster


@dataclass(frozen=True)
class Provider:
    name: str
    median_ms: float
    error_rate: float
    models: tuple[Model, ...]


# Prices are list prices per million tokens; latencies and error rates are made up but shaped like real ones.
PROVIDERS: dict[str, Provider] = {
    p.name: p
    for p in (
        Provider(
            "anthropic",
            900.0,
            0.03,
            (Model("claude-sonnet-4-5", 3.0, 15.0, 1.0), Model("claude-haiku-4-5", 1.0, 5.0, 0.45)),
        ),
        Provider("openai", 700.0, 0.05, (Model("gpt-4o", 2.5, 10.0, 1.0), Model("gpt-4o-mini", 0.15, 0.6, 0.5))),
        Provider(
            "google", 650.0, 0.04, (Model("gemini-2.5-pro", 1.25, 10.0, 1.2), Model("gemini-2.5-flash", 0.3, 2.5, 0.4))
        ),
        Provider("ollama", 1400.0, 0.08, (Model("llama3.1:8b", 0.0, 0.0, 1.0),)),
    )
}


@dataclass(frozen=True)
class Tool:
    name: str
    median_ms: float
    error_rate: float


TOOLS: dict[str, Tool] = {
    t.name: t
    for t in (
        Tool("read_file", 4.0, 0.01),
        Tool("search_code", 40.0, 0.03),
        Tool("web_fetch", 250.0, 0.06),
        Tool("run_tests", 700.0, 0.10),
    )
}

# Failures an LLM call can end in, with their HTTP status and relative weight.
LLM_FAILURES: tuple[tuple[str, int, float], ...] = (
    ("rate_limited", 429, 0.4),
    ("provider_error", 502, 0.4),
    ("timeout", 504, 0.2),
)


@dataclass(frozen=True)
class LlmCall:
    latency_ms: float
    failure: str | None
    status: int
    completion_tokens: int
    cost_usd: float


@dataclass(frozen=True)
class ToolRun:
    latency_ms: float
    ok: bool


class World:
    """Samples outcomes; thread-safe (the service may run handlers in several threads)."""

    def __init__(self, seed: int | None = None, latency_scale: float = 1.0) -> None:
        if latency_scale < 0:
            raise ValueError(f"latency_scale must be >= 0, got {latency_scale}")
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        self.latency_scale = latency_scale

    def _latency(self, median_ms: float) -> float:
        # Log-normal: most calls near the median, a long tail of slow ones.
        with self._lock:
            return median_ms * self._rng.lognormvariate(0.0, 0.5) * self.latency_scale

    def _chance(self, p: float) -> bool:
        with self._lock:
            return self._rng.random() < p

    def llm_call(self, provider: str, model: str, prompt_tokens: int) -> LlmCall:
        p = PROVIDERS[provider]
        m = next((m for m in p.models if m.name == model), p.models[0])
        latency = self._latency(p.median_ms * m.speed)
        if self._chance(p.error_rate):
            with self._lock:
                name, status, _ = self._rng.choices(LLM_FAILURES, weights=[w for *_, w in LLM_FAILURES])[0]
            return LlmCall(latency, name, status, 0, 0.0)
        with self._lock:
            completion = int(self._rng.uniform(40, 900))
        cost = (prompt_tokens * m.usd_per_mtok_in + completion * m.usd_per_mtok_out) / 1e6
        return LlmCall(latency, None, 200, completion, cost)

    def tool_run(self, tool: str) -> ToolRun:
        t = TOOLS[tool]
        return ToolRun(self._latency(t.median_ms), not self._chance(t.error_rate))


class LruCache:
    """A small LRU cache of tool results; reports what each lookup and insert did."""

    def __init__(self, capacity: int = 64) -> None:
        if capacity < 1:
            raise ValueError(f"cache capacity must be >= 1, got {capacity}")
        self.capacity = capacity
        self._items: OrderedDict[str, str] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: str) -> str | None:
        with self._lock:
            value = self._items.get(key)
            if value is not None:
                self._items.move_to_end(key)
            return value

    def put(self, key: str, value: str) -> bool:
        """Stores ``key``; True if that evicted the least recently used entry."""
        with self._lock:
            self._items[key] = value
            self._items.move_to_end(key)
            if len(self._items) > self.capacity:
                self._items.popitem(last=False)
                return True
            return False

    def __len__(self) -> int:
        return len(self._items)
