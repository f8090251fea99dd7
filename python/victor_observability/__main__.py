"""The command line: ``python -m victor_observability demo`` (also the ``victor-observability`` script)."""

from __future__ import annotations

import argparse
import sys


def _demo_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    d = sub.add_parser(
        "demo",
        help="run an instrumented example service on 127.0.0.1 under a built-in load generator",
        description="Starts an example service (FastAPI under uvicorn, on 127.0.0.1) instrumented with the "
        "monitoring middleware, /metrics, /health/live|ready|startup, tracing (spans as JSON lines in the working "
        "folder) and alerting (log notifier), and drives it with chat and tool traffic. Ctrl-C stops it.",
    )
    d.add_argument("--port", type=int, default=8000, help="port on 127.0.0.1 (0: any free port; default 8000)")
    d.add_argument("--rate", type=float, default=20.0, help="requests per second (0: flat out; default 20)")
    d.add_argument("--duration", type=float, default=0.0, help="seconds to run (default 0: until Ctrl-C)")
    d.add_argument("--no-load", dest="load", action="store_false", help="serve only; send no traffic")
    d.add_argument("--concurrency", type=int, default=64, help="most requests in flight (default 64)")
    d.add_argument(
        "--latency-scale", type=float, default=1.0, help="multiply simulated LLM and tool latency (default 1)"
    )
    d.add_argument("--seed", type=int, default=None, help="random seed for a repeatable run")
    d.add_argument(
        "--spans-file",
        default="victor-demo-spans.jsonl",
        help="JSON-lines span file (default: in the working folder; empty: spans stay in memory only)",
    )
    d.add_argument("--summary-json", default=None, help="also write the final summary (and last scrape) here")
    d.add_argument(
        "--alert-error-rate",
        type=float,
        default=5.0,
        help="error rate (percent) over which the in-process high_error_rate alert fires (default 5)",
    )
    d.add_argument(
        "--system-interval", type=float, default=5.0, help="seconds between memory/CPU/disk samples (default 5)"
    )
    d.add_argument(
        "--services",
        type=int,
        choices=(1, 2),
        default=1,
        help="2: the service sends its LLM calls to a model backend in a second process (its own port, /metrics and "
        "health routes) over a traced HTTP client, so each trace spans both services (default 1)",
    )
    d.add_argument("--profile", default=None, help=argparse.SUPPRESS)
    d.add_argument("--client", choices=("httpx", "raw"), default="httpx", help=argparse.SUPPRESS)
    d.add_argument("--no-instrumentation", dest="instrumented", action="store_false", help=argparse.SUPPRESS)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="victor-observability", description="victor-observability tools")
    sub = parser.add_subparsers(dest="command", required=True)
    _demo_parser(sub)
    args = parser.parse_args(argv)
    if min(args.duration, args.rate, args.latency_scale) < 0 or args.concurrency < 1 or args.system_interval <= 0:
        parser.error("--duration, --rate, --latency-scale must be >= 0; --concurrency >= 1; --system-interval > 0")
    try:
        from victor_observability.demo import DemoOptions, run_demo
    except ImportError as exc:  # FastAPI / uvicorn are the `demo` extra
        print(f"the demo needs FastAPI and uvicorn: pip install 'victor-observability[demo]' ({exc})", file=sys.stderr)
        return 2
    options = DemoOptions(**{k: v for k, v in vars(args).items() if k != "command"})
    return run_demo(options)


if __name__ == "__main__":
    raise SystemExit(main())
