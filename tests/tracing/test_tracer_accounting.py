"""Tracer accounting: every queued span ends exported, failed or dropped, and flush/shutdown tell the truth."""

from __future__ import annotations

import threading
from collections.abc import Sequence

from victor_observability import DistributedTracer, SpanData


def run_spans(tracer: DistributedTracer, n: int) -> None:
    for i in range(n):
        tracer.start_span(f"span-{i}").end()


def settled(stats: dict[str, int]) -> int:
    return stats["exported_spans"] + stats["export_failed_spans"] + stats["export_dropped_spans"]


def test_the_batch_stuck_at_shutdown_is_counted_once() -> None:
    release = threading.Event()

    class StuckAtShutdown:
        def export(self, spans: Sequence[SpanData]) -> bool:
            release.wait(30)
            return True

        def shutdown(self) -> None:
            pass

    tracer = DistributedTracer(
        "acct.hang",
        exporters=[StuckAtShutdown()],
        schedule_delay=0.01,
        export_timeout=20.0,  # longer than shutdown waits: the batch in flight is stuck when shutdown gives up
        max_retries=0,
        max_queue_size=100,
        max_export_batch_size=10,
        flush_on_exit=False,
    )
    try:
        run_spans(tracer, 500)
        assert tracer.shutdown(timeout=0.5) is False
        stats = tracer.stats()
        assert stats["spans_queued"] > 0
        assert settled(stats) == stats["spans_queued"], stats
        assert stats["spans_queued"] + stats["queue_dropped"] == stats["spans_finished"] == 500
        assert tracer.shutdown(timeout=0.5) is False, "a second shutdown tells the same truth"
    finally:
        release.set()
    # The stuck export returns now: its batch was already counted as dropped, and is not counted again.
    for thread in threading.enumerate():
        if thread.name == "victor-export-StuckAtShutdown":  # the lane's thread ends once its export returns
            thread.join(10)
    after = tracer.stats()
    assert settled(after) == after["spans_queued"], after
    assert after["exported_spans"] == stats["exported_spans"]


def test_force_flush_is_false_when_exports_failed_and_true_again_once_they_succeed() -> None:
    class Flaky:
        fail = True

        def export(self, spans: Sequence[SpanData]) -> bool:
            if self.fail:
                raise ConnectionError("collector down")
            return True

        def shutdown(self) -> None:
            pass

    flaky = Flaky()
    tracer = DistributedTracer("acct.flaky", exporters=[flaky], schedule_delay=0.01, max_retries=1, flush_on_exit=False)
    run_spans(tracer, 5)
    assert tracer.force_flush(timeout=10.0) is False
    assert tracer.stats()["export_failed_spans"] == 5
    flaky.fail = False
    run_spans(tracer, 3)
    assert tracer.force_flush(timeout=10.0) is True
    assert tracer.shutdown(timeout=5.0) is True
    stats = tracer.stats()
    assert stats["exported_spans"] == 3 and settled(stats) == stats["spans_queued"] == 8


def test_shutdown_is_false_when_the_final_flush_failed_and_stays_false() -> None:
    class Refuses:
        def export(self, spans: Sequence[SpanData]) -> bool:
            return False

        def shutdown(self) -> None:
            pass

    tracer = DistributedTracer("acct.refuses", exporters=[Refuses()], schedule_delay=0.01, flush_on_exit=False)
    run_spans(tracer, 4)
    assert tracer.shutdown(timeout=5.0) is False
    assert tracer.shutdown(timeout=5.0) is False
    stats = tracer.stats()
    assert stats["export_failed_spans"] == 4 == settled(stats) == stats["spans_queued"]
