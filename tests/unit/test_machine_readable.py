"""Unit tests of what machines read: the JSON documents against their schema, and --timeline."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from kdist.cli import documents
from kdist.config.profile import KUBERNETES
from kdist.engine.job import Job, RunResult
from kdist.engine.timeline import PHASES, TimelineRecorder, span, trace
from kdist.events import NullReporter, RunStarted, Span
from kdist.model import Artifact, Plan, Platform, Slice, SliceResult, Status, VersionInfo
from kdist.testing.reporter import RecordingReporter

AMD64 = Platform("linux", "amd64")
SLICE = Slice(AMD64, "h1", False, "/w", ("make", "cross"), "/w/_output/local/bin/linux/amd64")
JOB = Job(
    source=Path("/src/kubernetes"),
    output=Path("/src/kubernetes/_output"),
    profile=KUBERNETES,
    platforms=(AMD64,),
    version=VersionInfo("v1.31.0", "c0ffee", "clean", "1", "31", 1700000000),
    tree_id="kubernetes-0123",
)


def _validator() -> jsonschema.Draft202012Validator:
    schema = json.loads(documents.SCHEMA.read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def _run_doc(status: Status) -> dict[str, Any]:
    result = SliceResult(
        SLICE, status, 3.5, "build" if status is not Status.OK else "done",
        "" if status is Status.OK else "h1: linux/amd64: build failed (exit 2)",
        "/src/kubernetes/_output/logs/linux-amd64.log",
        (Artifact("dockerized/bin/linux/amd64/kubectl", "ab" * 32, 10),),
        excerpt=("main.go:1:1: boom",) if status is not Status.OK else (),
    )  # fmt: skip
    run = RunResult(Plan((SLICE,), {"h1": {}}), [result], run_id="5eed1234", started=10.0)
    run.finished = 20.25
    return documents.run_summary(JOB, run)


@pytest.mark.parametrize("status", [Status.OK, Status.FAILED, Status.INFRA, Status.INTEGRITY])
def test_run_documents_follow_the_schema(status: Status) -> None:
    """A run's document, ok or failed, is valid against document.schema.json."""
    doc = _run_doc(status)
    _validator().validate(doc)
    assert doc["schema_version"] == documents.SCHEMA_VERSION
    assert doc["started"] == "1970-01-01T00:00:10.000Z"
    assert doc["finished"] == "1970-01-01T00:00:20.250Z"
    assert (
        doc["exit_class"]
        == documents.exit_status(
            RunResult(Plan((SLICE,), {}), [SliceResult(SLICE, status, 1.0)])
        ).name.lower()
    )


def test_the_schema_refuses_a_document_that_breaks_it() -> None:
    """A missing field, a wrong type or an unknown exit class are schema errors."""
    validator = _validator()
    doc = _run_doc(Status.OK)
    for broken in (
        {k: v for k, v in doc.items() if k != "run_id"},
        {**doc, "slices": [{**doc["slices"][0], "attempts": "one"}]},
        {**doc, "exit_class": "fine"},
        {**doc, "started": "yesterday"},
    ):
        assert not validator.is_valid(broken)


def test_span_says_whether_the_phase_ended_well() -> None:
    """A span is emitted when its block ends, ok only if nothing was raised."""
    recorder = RecordingReporter()
    with span(recorder, "sync", "h1"):
        pass
    with pytest.raises(RuntimeError), span(recorder, "build", "h1", "linux-amd64", "r-1"):
        raise RuntimeError
    first, second = [e for e in recorder.events if isinstance(e, Span)]
    assert (first.phase, first.host, first.key, first.ok) == ("sync", "h1", "", True)
    assert (second.phase, second.key, second.attempt, second.ok) == (
        "build",
        "linux-amd64",
        "r-1",
        False,
    )
    assert first.start <= first.end


def test_trace_is_chrome_trace_events_with_one_row_per_host_and_slice() -> None:
    """Each span is one complete event on its host's process and its slice's thread."""
    spans = [
        Span("connect", "h1", "", 100.0, 100.5),
        Span("build", "h1", "linux-amd64", 101.0, 111.0, True, "r-linux-amd64-1"),
        Span("build", "h2", "linux-arm64", 101.0, 104.0, False, "r-linux-arm64-1"),
        Span("package", "", "linux-amd64", 112.0, 113.0),
    ]
    run = RunStarted("kubernetes", "v1.31.0", "5eed", ("h1", "h2"), ("linux/amd64",), "/o", 99.0)
    doc = trace(spans, run)
    complete = [e for e in doc["traceEvents"] if e["ph"] == "X"]
    names = {
        (e["pid"], e["tid"]): e["args"]["name"]
        for e in doc["traceEvents"] if e["ph"] == "M" and e["name"] == "thread_name"
    }  # fmt: skip
    processes = {
        e["pid"]: e["args"]["name"]
        for e in doc["traceEvents"] if e["ph"] == "M" and e["name"] == "process_name"
    }  # fmt: skip
    assert [e["name"] for e in complete] == ["connect", "build", "build", "package"]
    (build,) = [e for e in complete if e["name"] == "build" and e["args"]["host"] == "h1"]
    assert (build["ts"], build["dur"]) == (2_000_000, 10_000_000)
    assert processes[build["pid"]] == "h1"
    assert names[(build["pid"], build["tid"])] == "linux-amd64"
    assert names[(complete[0]["pid"], complete[0]["tid"])] == "host"
    assert processes[complete[3]["pid"]] == "this machine (head node)"
    assert [e["args"]["ok"] for e in complete if e["args"]["host"] == "h2"] == [False]
    assert doc["otherData"]["run_id"] == "5eed"
    assert set(PHASES) >= {e["name"] for e in complete}


def test_recorder_writes_the_trace_and_passes_events_on(tmp_path: Path) -> None:
    """The recorder keeps spans for the file and forwards every event."""
    inner = RecordingReporter()
    recorder = TimelineRecorder(inner)
    recorder.emit(Span("sync", "h1", "", 1.0, 2.0))
    recorder.close()
    recorder.write(tmp_path / "trace.json")
    doc = json.loads((tmp_path / "trace.json").read_text())
    assert [e["name"] for e in doc["traceEvents"] if e["ph"] == "X"] == ["sync"]
    assert [type(e) for e in inner.events] == [Span]
    assert not list(tmp_path.glob(".*"))  # no temporary file left


def test_null_reporter_takes_spans() -> None:
    """A span into a reporter that drops everything is harmless."""
    with span(NullReporter(), "lock", "h1"):
        pass
