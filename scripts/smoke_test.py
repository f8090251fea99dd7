"""Smoke test of an installed wheel or sdist: the extension loads and one record reaches the exposition."""

from __future__ import annotations

import sys


def main() -> int:
    # Run from outside the source tree, so this imports the installed package, not python/.
    import victor_observability as vo

    collector = vo.create_production_collector(collect_system_metrics=False)
    collector.record_request(endpoint="/smoke", provider="wheel", success=True, latency_ms=1.5)
    exposition = collector.export_prometheus()
    expected = 'victor_request_total{endpoint="/smoke",provider="wheel"} 1.0'
    if expected not in exposition:
        print(f"smoke test: {expected!r} missing from the exposition", file=sys.stderr)
        return 1
    if not vo.__version__:
        print("smoke test: no __version__", file=sys.stderr)
        return 1
    print(f"victor-observability {vo.__version__} from {vo.__file__}: ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
