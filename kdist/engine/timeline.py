"""--timeline FILE: the run's phases per host and slice, in the Chrome trace event format.

Perfetto (ui.perfetto.dev) and chrome://tracing open the file. Each build host is a process
row (the head node first, for packaging and publishing), each slice a thread row under the
host that worked on it, and a host's own phases (connect, lock, sync) sit on its `host` row.
Every phase is one complete event (`"ph": "X"`) with its start and duration in microseconds
from the start of the run, and `args` saying the host, the slice, the attempt and whether the
phase ended well.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from kdist import __version__
from kdist.events import Event, Reporter, RunStarted, Span

PHASES = ("connect", "lock", "sync", "build", "pull", "package", "tests", "publish")
HEAD_NODE = "this machine (head node)"
HOST_LANE = "host"


@contextlib.contextmanager
def span(
    reporter: Reporter, phase: str, host: str, key: str = "", attempt: str = ""
) -> Iterator[None]:
    """Emit a Span for the code inside when it ends (ok only when it ended without raising)."""
    start, ok = time.time(), False
    try:
        yield
        ok = True
    finally:
        reporter.emit(Span(phase, host, key, start, time.time(), ok, attempt))


class TimelineRecorder:
    """Passes events on and keeps the spans and the run's header for the trace."""

    def __init__(self, inner: Reporter) -> None:
        self.inner = inner
        self.spans: list[Span] = []
        self.run: RunStarted | None = None

    def emit(self, event: Event) -> None:
        """Keep spans and the run header, forward everything."""
        if isinstance(event, Span):
            self.spans.append(event)
        elif isinstance(event, RunStarted):
            self.run = event
        self.inner.emit(event)

    def close(self) -> None:
        """Close the wrapped reporter."""
        self.inner.close()

    def write(self, path: Path) -> None:
        """Write the trace file (atomically: a reader never sees half of it)."""
        doc = trace(self.spans, self.run)
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(json.dumps(doc, indent=1) + "\n", encoding="utf-8")
        tmp.replace(path)


def trace(spans: Sequence[Span], run: RunStarted | None = None) -> dict[str, Any]:
    """The Chrome trace document of a run's spans."""
    origin = run.started if run else min((s.start for s in spans), default=0.0)
    origin = min([origin, *(s.start for s in spans)])
    rows = _Rows()
    events = [_complete(s, origin, rows) for s in sorted(spans, key=lambda s: (s.start, s.end))]
    other: dict[str, Any] = {"kdist": __version__}
    if run is not None:
        other |= {"project": run.project, "version": run.version, "run_id": run.run_id}
    return {
        "traceEvents": rows.metadata() + events,
        "displayTimeUnit": "ms",
        "otherData": other,
    }


class _Rows:
    """Process ids per host and thread ids per slice, in order of first appearance."""

    def __init__(self) -> None:
        self.pids: dict[str, int] = {HEAD_NODE: 1}  # the head node's row first, when it has one
        self.tids: dict[tuple[int, str], int] = {}
        self.used: set[int] = set()

    def pid(self, host: str) -> int:
        pid = self.pids.setdefault(host or HEAD_NODE, len(self.pids) + 1)
        self.used.add(pid)
        return pid

    def tid(self, pid: int, lane: str) -> int:
        return self.tids.setdefault((pid, lane), len(self.tids) + 1)

    def metadata(self) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for name, pid in self.pids.items():
            if pid not in self.used:
                continue
            out.append(_meta("process_name", pid, 0, name))
            out.append({"name": "process_sort_index", "ph": "M", "pid": pid, "tid": 0,
                        "args": {"sort_index": pid}})  # fmt: skip
        for (pid, lane), tid in self.tids.items():
            out.append(_meta("thread_name", pid, tid, lane))
        return out


def _meta(kind: str, pid: int, tid: int, name: str) -> dict[str, Any]:
    return {"name": kind, "ph": "M", "pid": pid, "tid": tid, "args": {"name": name}}


def _complete(s: Span, origin: float, rows: _Rows) -> dict[str, Any]:
    pid = rows.pid(s.host)
    tid = rows.tid(pid, s.key or HOST_LANE)
    return {
        "name": s.phase,
        "cat": "kdist",
        "ph": "X",
        "ts": round((s.start - origin) * 1e6),
        "dur": max(1, round((s.end - s.start) * 1e6)),
        "pid": pid,
        "tid": tid,
        "args": {"host": s.host or HEAD_NODE, "slice": s.key, "attempt": s.attempt, "ok": s.ok},
    }
