"""Span exporters: the SpanExporter protocols and in-memory, JSON lines, console and OTLP/HTTP implementations.

Exporters run on the tracer's background export worker, never on the request path:

>>> from victor_observability import DistributedTracer
>>> from victor_observability.tracing.exporters import InMemorySpanExporter
>>> memory = InMemorySpanExporter()
>>> tracer = DistributedTracer("svc", exporters=[memory])
>>> with tracer.start_span("op"):
...     pass
>>> tracer.force_flush()
True
>>> [s.name for s in memory.get_finished_spans()]
['op']
"""

from __future__ import annotations

import collections
import os
import sys
import threading
import weakref
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Protocol, runtime_checkable

from victor_observability._core import SpanBatch, SpanData
from victor_observability.tracing.otlp import OTLPSpanExporter, RetryableExportError, _batches_of

__all__ = [
    "BatchSpanExporter",
    "ConsoleSpanExporter",
    "InMemorySpanExporter",
    "JsonLinesSpanExporter",
    "OTLPSpanExporter",
    "RetryableExportError",
    "SpanExporter",
]


@runtime_checkable
class SpanExporter(Protocol):
    """Receives batches of finished spans on a background thread.

    `export` returns True/None when done, False for a failure not worth retrying; raising means "try again"
    (retried with backoff a bounded number of times). A call that takes longer than the tracer's
    `export_timeout` is abandoned and counted as a timeout.

    >>> class Printer:
    ...     def export(self, spans: Sequence[SpanData]) -> bool:
    ...         print(len(spans))
    ...         return True
    ...     def shutdown(self) -> None:
    ...         pass
    """

    def export(self, spans: Sequence[SpanData]) -> bool | None: ...

    def shutdown(self) -> None: ...


@runtime_checkable
class BatchSpanExporter(SpanExporter, Protocol):
    """A SpanExporter that takes the tracer's batch itself: the export worker calls `export_batch` instead of
    `export`, and no SpanData is made. Exporters that write bytes implement it with `batch.encode_otlp()` or
    `batch.encode_json_lines()`, which encode the whole batch in Rust with the GIL released, so exporting costs
    the application's threads next to nothing. Same return and retry rules as `export`.

    >>> class Sizes:
    ...     def export(self, spans: Sequence[SpanData]) -> bool:
    ...         return self.export_batch(SpanBatch.of(spans))
    ...     def export_batch(self, batch: SpanBatch) -> bool:
    ...         print(len(batch.encode_json_lines()))
    ...         return True
    ...     def shutdown(self) -> None:
    ...         pass
    """

    def export_batch(self, batch: SpanBatch) -> bool | None: ...


class InMemorySpanExporter:
    """Keeps the last `max_spans` exported spans in memory (tests, debugging).

    >>> InMemorySpanExporter(max_spans=10).get_finished_spans()
    []
    """

    def __init__(self, max_spans: int = 100_000) -> None:
        self._spans: collections.deque[SpanData] = collections.deque(maxlen=max_spans)
        self._lock = threading.Lock()
        _renew_lock_in_child(self)

    def export(self, spans: Sequence[SpanData]) -> bool:
        with self._lock:
            self._spans.extend(spans)
        return True

    def get_finished_spans(self) -> list[SpanData]:
        with self._lock:
            return list(self._spans)

    def clear(self) -> None:
        with self._lock:
            self._spans.clear()

    def shutdown(self) -> None:
        pass


class JsonLinesSpanExporter:
    """Appends one JSON object per span to a file (see `SpanData.to_dict` for the fields).

    >>> import tempfile, os
    >>> exporter = JsonLinesSpanExporter(os.path.join(tempfile.mkdtemp(), "spans.jsonl"))
    >>> exporter.shutdown()
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        # A raw O_APPEND descriptor, no Python buffer: a batch is one append (whole lines from several worker
        # processes never interleave), and a forked child inherits no buffer or buffer lock that a parent thread
        # held mid-write (a BufferedWriter then fails in the child with "reentrant call").
        self._fd: int | None = None
        _renew_lock_in_child(self)

    def export(self, spans: Sequence[SpanData]) -> bool:
        return self._write(b"".join(batch.encode_json_lines() for batch in _batches_of(spans)))

    def export_batch(self, batch: SpanBatch) -> bool:
        # Encoded and written in Rust in one call with the GIL released: no bytes object, no os.write loop.
        with self._lock:
            batch.write_json_lines(self._open())
        return True

    def _write(self, lines: bytes) -> bool:
        data = memoryview(lines)
        with self._lock:
            fd = self._open()
            while data:
                data = data[os.write(fd, data) :]
        return True

    def _open(self) -> int:
        if self._fd is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)
        return self._fd

    def shutdown(self) -> None:
        with self._lock:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None

    def __repr__(self) -> str:
        return f"JsonLinesSpanExporter({str(self.path)!r})"


class ConsoleSpanExporter:
    """Writes each span as one line of JSON to a stream (default: stdout).

    >>> import io
    >>> ConsoleSpanExporter(io.StringIO()).shutdown()
    """

    def __init__(self, stream: IO[str] | None = None) -> None:
        self._stream = stream
        self._lock = threading.Lock()
        _renew_lock_in_child(self)

    def export(self, spans: Sequence[SpanData]) -> bool:
        return self._write(b"".join(batch.encode_json_lines(compact=False) for batch in _batches_of(spans)))

    def export_batch(self, batch: SpanBatch) -> bool:
        return self._write(batch.encode_json_lines(compact=False))

    def _write(self, lines: bytes) -> bool:
        stream = self._stream if self._stream is not None else sys.stdout
        text = lines.decode("ascii")
        with self._lock:
            stream.write(text)
            stream.flush()
        return True

    def shutdown(self) -> None:
        pass


class _Locked(Protocol):
    _lock: threading.Lock


def _renew_lock_in_child(owner: _Locked) -> None:
    # The export worker may hold the lock (JsonLines: across a file write, with the GIL released) when another
    # thread forks; the child has no such thread, so it gets a fresh lock instead of one held forever.
    ref = weakref.ref(owner)
    os.register_at_fork(after_in_child=lambda: _renew_lock(ref))


def _renew_lock(ref: weakref.ReferenceType[_Locked]) -> None:
    owner = ref()
    if owner is not None:
        owner._lock = threading.Lock()
