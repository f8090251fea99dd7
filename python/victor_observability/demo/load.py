"""The demo's load generator: chat and tool requests over real HTTP, paced open-loop (or closed-loop flat out).

>>> import asyncio
>>> gen = LoadGenerator("http://127.0.0.1:9", rate=10.0, seed=1)
>>> gen.next_request()[0] in ("/v1/chat", "/v1/tools/{tool}")
True
"""

from __future__ import annotations

import asyncio
import json
import math
import random
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, TextIO

from victor_observability.demo._clients import HttpxClient, JsonPoster, RawHttpClient, TransportError
from victor_observability.demo.workload import PROVIDERS, TOOLS

_PROVIDER_WEIGHTS = {"anthropic": 0.35, "openai": 0.3, "google": 0.2, "ollama": 0.15}
_TOOL_WEIGHTS = {"read_file": 0.4, "search_code": 0.3, "web_fetch": 0.2, "run_tests": 0.1}
_PROMPTS = (
    "Summarise the failing test output and propose a fix.",
    "Refactor this function to remove the duplicated branch.",
    "Explain what this stack trace means: " + "frame " * 40,
    "Write a docstring for the exporter class.",
    "Which files import the collector? " + "path/to/module.py " * 25,
)


@dataclass
class LoadStats:
    """What the client saw: responses by route and status, latencies, and what the responses reported."""

    started: float = field(default_factory=time.monotonic)
    elapsed: float = 0.0
    responses: Counter[tuple[str, int]] = field(default_factory=Counter)
    transport_errors: int = 0
    latencies_ms: list[float] = field(default_factory=list)
    llm_calls: Counter[tuple[str, str, bool]] = field(default_factory=Counter)  # (provider, model, ok)
    tool_runs: Counter[tuple[str, bool]] = field(default_factory=Counter)  # (tool, ok), cache misses only
    cache_hits: int = 0
    cache_misses: int = 0
    tokens: int = 0
    cost_usd: float = 0.0
    in_flight: int = 0

    @property
    def requests(self) -> int:
        return sum(self.responses.values())

    @property
    def errors(self) -> int:
        """Responses with a 4xx/5xx status, plus requests that got no response at all."""
        return sum(n for (_, status), n in self.responses.items() if status >= 400) + self.transport_errors

    def error_rate(self) -> float:
        total = self.requests + self.transport_errors
        return 100.0 * self.errors / total if total else 0.0

    def percentile(self, q: float) -> float | None:
        """Nearest-rank percentile of the client-observed latency (ms)."""
        if not self.latencies_ms:
            return None
        ordered = sorted(self.latencies_ms)
        return ordered[max(0, math.ceil(q / 100.0 * len(ordered)) - 1)]


class LoadGenerator:
    """Sends a realistic mix to the demo service: chats to several providers and models (some running a tool
    first), and direct tool calls whose arguments repeat often enough to give the tool cache hits.

    ``rate`` > 0: requests start at exponentially distributed intervals (open loop), at most ``concurrency`` in
    flight. ``rate`` == 0: ``concurrency`` workers send back to back (closed loop: the service's capacity).
    ``client``: "httpx" (default), or "raw", a lean keep-alive HTTP/1.1 client for benches on small machines.
    """

    def __init__(
        self,
        base_url: str,
        *,
        rate: float = 20.0,
        concurrency: int = 64,
        seed: int | None = None,
        progress: TextIO | None = None,
        request_timeout: float = 30.0,
        client: str = "httpx",
    ) -> None:
        if rate < 0 or not math.isfinite(rate):
            raise ValueError(f"rate must be a finite number >= 0, got {rate}")
        if concurrency < 1:
            raise ValueError(f"concurrency must be >= 1, got {concurrency}")
        if client not in ("httpx", "raw"):
            raise ValueError(f"client must be 'httpx' or 'raw', got {client!r}")
        self.client = client
        self.base_url = base_url
        self.rate = rate
        self.concurrency = concurrency
        self.progress = progress
        self.request_timeout = request_timeout
        self._rng = random.Random(seed)
        self.stats = LoadStats()

    def next_request(self) -> tuple[str, str, dict[str, Any]]:
        """(route template, path, JSON body) of the next request."""
        rng = self._rng
        if rng.random() < 0.65:
            provider = rng.choices(list(_PROVIDER_WEIGHTS), weights=list(_PROVIDER_WEIGHTS.values()))[0]
            body: dict[str, Any] = {
                "provider": provider,
                "model": rng.choice(PROVIDERS[provider].models).name,
                "prompt": rng.choice(_PROMPTS),
            }
            if rng.random() < 0.35:
                body["tool"], body["tool_arg"] = self._tool_call()
            return "/v1/chat", "/v1/chat", body
        tool, arg = self._tool_call()
        return "/v1/tools/{tool}", f"/v1/tools/{tool}", {"arg": arg}

    def _tool_call(self) -> tuple[str, str]:
        tool = self._rng.choices(list(_TOOL_WEIGHTS), weights=list(_TOOL_WEIGHTS.values()))[0]
        assert tool in TOOLS
        # Zipf-like arguments: a few hot ones (cache hits), a long tail (misses and evictions).
        return tool, f"arg-{int(self._rng.paretovariate(1.1)) % 400}"

    async def run(self, stop: asyncio.Event, duration: float | None = None) -> LoadStats:
        """Sends until ``stop`` is set or ``duration`` seconds pass, then waits (bounded) for requests in flight."""
        self.stats = stats = LoadStats()
        deadline = stats.started + duration if duration else math.inf
        client: JsonPoster = (
            RawHttpClient(self.base_url, self.request_timeout)
            if self.client == "raw"
            else HttpxClient(self.base_url, self.concurrency, self.request_timeout)
        )
        progress = asyncio.create_task(self._show_progress(stop, deadline))
        try:
            if self.rate > 0:
                await self._open_loop(client, stop, deadline)
            else:
                await self._closed_loop(client, stop, deadline)
        finally:
            progress.cancel()
            await asyncio.gather(progress, return_exceptions=True)
            await client.aclose()
        stats.elapsed = time.monotonic() - stats.started
        if self.progress is not None and self.progress.isatty():
            self.progress.write("\n")
        return stats

    async def _open_loop(self, client: JsonPoster, stop: asyncio.Event, deadline: float) -> None:
        slots = asyncio.Semaphore(self.concurrency)
        tasks: set[asyncio.Task[None]] = set()
        next_at = time.monotonic()
        while not stop.is_set():
            next_at += self._rng.expovariate(self.rate)
            wait = min(next_at, deadline) - time.monotonic()
            if wait > 0:
                try:
                    await asyncio.wait_for(stop.wait(), wait)
                    break
                except asyncio.TimeoutError:
                    pass
            if time.monotonic() >= deadline:
                break
            await slots.acquire()
            task = asyncio.create_task(self._one(client, slots))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
        await self._drain(tasks)

    async def _closed_loop(self, client: JsonPoster, stop: asyncio.Event, deadline: float) -> None:
        async def worker() -> None:
            while not stop.is_set() and time.monotonic() < deadline:
                await self._one(client, None)

        await asyncio.gather(*(worker() for _ in range(self.concurrency)))

    async def _drain(self, tasks: set[asyncio.Task[None]], timeout: float = 10.0) -> None:
        if not tasks:
            return
        _, pending = await asyncio.wait(set(tasks), timeout=timeout)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)

    async def _one(self, client: JsonPoster, slots: asyncio.Semaphore | None) -> None:
        route, path, body = self.next_request()
        stats = self.stats
        stats.in_flight += 1
        started = time.perf_counter()
        try:
            status, content = await client.post_json(path, body)
        except TransportError:
            stats.transport_errors += 1
            return
        finally:
            stats.in_flight -= 1
            if slots is not None:
                slots.release()
        stats.latencies_ms.append((time.perf_counter() - started) * 1000.0)
        stats.responses[(route, status)] += 1
        self._account(route, body, content)

    def _account(self, route: str, body: dict[str, Any], content: bytes) -> None:
        stats = self.stats
        try:
            payload = json.loads(content)
        except ValueError:
            return
        if not isinstance(payload, dict):
            return
        tools = payload.get("tools", []) if route == "/v1/chat" else [payload]
        for tool in tools:
            if "cached" not in tool:
                continue
            if tool["cached"]:
                stats.cache_hits += 1
            else:
                stats.cache_misses += 1
                stats.tool_runs[(tool["tool"], bool(tool["ok"]))] += 1
        if route == "/v1/chat" and "ok" in payload:
            stats.llm_calls[(body["provider"], body["model"], bool(payload["ok"]))] += 1
            stats.tokens += int(payload.get("tokens", 0))
            if payload["ok"]:
                stats.cost_usd += float(payload.get("cost_usd", 0.0))

    async def _show_progress(self, stop: asyncio.Event, deadline: float) -> None:
        stream = self.progress
        if stream is None:
            return
        tty = stream.isatty()
        period = 0.25 if tty else 5.0
        while True:
            await asyncio.sleep(period)
            s = self.stats
            elapsed = time.monotonic() - s.started
            p95 = s.percentile(95)
            line = (
                f"{elapsed:6.1f}s  requests {s.requests:6d} ({s.requests / max(elapsed, 1e-9):5.1f}/s)  "
                f"errors {s.error_rate():4.1f}%  p95 {p95 or 0:6.0f} ms  in flight {s.in_flight:3d}"
            )
            if math.isfinite(deadline):
                line += f"  {max(0.0, deadline - time.monotonic()):4.0f}s left"
            stream.write(f"\r{line}" if tty else f"{line}\n")
            stream.flush()


def default_progress_stream() -> TextIO:
    return sys.stderr
