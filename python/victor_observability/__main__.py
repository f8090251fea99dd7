"""The command line: `python -m victor_observability demo` serves /metrics for a synthetic workload."""

from __future__ import annotations

import argparse
import random
import signal
import threading
import time

from victor_observability.collector import create_production_collector
from victor_observability.http import start_http_server


def demo(args: argparse.Namespace) -> int:
    collector = create_production_collector()
    server, _ = start_http_server(args.port, "127.0.0.1", collector)
    print(f"serving http://127.0.0.1:{server.server_port}/metrics (Ctrl-C stops)", flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    rng = random.Random(7)
    deadline = time.monotonic() + args.duration if args.duration else float("inf")
    while not stop.is_set() and time.monotonic() < deadline:
        ok = rng.random() > 0.05
        collector.record_request("/chat", rng.choice(["anthropic", "openai"]), ok, rng.lognormvariate(5, 0.6))
        collector.record_tool_execution(rng.choice(["read_file", "search"]), rng.random() > 0.02, rng.expovariate(1 / 40))
        (collector.record_cache_hit if rng.random() < 0.7 else collector.record_cache_miss)("tool_cache")
        stop.wait(1 / args.rate)
    summary = collector.get_summary()["requests"]
    print(f"requests={summary['total']} error_rate={summary['error_rate']:.2f}% p95={summary['latency_p95']:.1f}ms")
    server.shutdown()
    server.server_close()
    collector.close()
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="victor-observability")
    sub = parser.add_subparsers(dest="command", required=True)
    d = sub.add_parser("demo", help="serve /metrics on 127.0.0.1 for a synthetic workload")
    d.add_argument("--port", type=int, default=8000)
    d.add_argument("--rate", type=float, default=50.0, help="synthetic requests per second")
    d.add_argument("--duration", type=float, default=0.0, help="seconds to run (0: until Ctrl-C)")
    args = parser.parse_args(argv)
    return demo(args)


if __name__ == "__main__":
    raise SystemExit(main())
