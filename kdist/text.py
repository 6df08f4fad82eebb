r"""The one sanitiser for text a build host sent: shown inert, kept raw in the logs.

A build host may be compromised, and whatever it prints (build output, a failing test's
tail, file names, an SSH disconnect reason, tool versions) ends up on the operator's terminal,
in error messages and in `--json`. An escape sequence there could set the window title
(OSC 0), write the clipboard (OSC 52), plant a hyperlink (OSC 8), or clear the screen and
print a fake `release ok` (`ESC[2J`). So every such string goes through `inert` before it is
shown: each control character becomes a visible escape (`\x1b`), and so does every byte
that was not valid UTF-8 (transports decode host output with `surrogateescape`, which keeps
the bytes; `inert` turns each kept byte into `\xNN`).

Where it is applied: at the boundary where host text enters the head node's model (an
output line becomes an event, an exception becomes a slice's error, a log tail is read,
probe output is parsed), and once more as a final guard where text leaves for the operator
(the reporters, the CLI's error lines, the JSON documents). Applying it twice is harmless:
its output contains no character it would change.

Logs on disk are the evidence and keep the bytes the host sent: open them with
`errors=LOG_ERRORS`, which writes surrogate-escaped bytes back as they came and never raises.
"""

from __future__ import annotations

import codecs
import re
from collections.abc import Mapping
from typing import Any

# C0 controls except tab (newline is chosen per use), DEL, C1 controls, the Unicode controls
# that reorder or hide what follows (bidi embeddings, overrides and isolates, as in "Trojan
# source"), the line and paragraph separators, and every lone surrogate.
_UNSAFE = "\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028-\u202e\u2066-\u2069\ud800-\udfff"
_LINE = re.compile(f"[\n{_UNSAFE}]")
_LINES = re.compile(f"[{_UNSAFE}]")
_ESCAPED_BYTE = range(0xDC80, 0xDD00)  # what surrogateescape makes of an undecodable byte

HOST_ERRORS = "surrogateescape"  # how transports decode host output: no byte is lost
LOG_ERRORS = "kdist-raw"  # the error handler for writing logs (registered below)


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    if code in _ESCAPED_BYTE:
        return f"\\x{code - 0xDC00:02x}"  # the byte the host sent
    if code <= 0xFF:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}"


def inert(text: str, *, newlines: bool = False) -> str:
    r"""`text` safe to show: controls and undecodable bytes as escapes (tab kept).

    With `newlines` a newline stays a line break (multi-line messages); without, it becomes
    `\x0a` too, so one host string can never start a line of its own.
    """
    return (_LINES if newlines else _LINE).sub(_escape, text)


def decode(data: bytes, *, newlines: bool = False) -> str:
    r"""Host bytes as inert text (invalid UTF-8 as `\xNN`)."""
    return inert(data.decode("utf-8", "surrogateescape"), newlines=newlines)


def inert_tree(value: Any) -> Any:  # noqa: ANN401 (any JSON value, returned in the same shape)
    """A JSON-ready value with every string in it (keys too) made inert, newlines kept.

    The final guard of the JSON documents: what it returns always encodes as UTF-8.
    """
    if isinstance(value, str):
        return inert(value, newlines=True)
    if isinstance(value, Mapping):
        return {inert_tree(k): inert_tree(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [inert_tree(v) for v in value]
    return value


def _write_raw(exc: UnicodeError) -> tuple[bytes, int]:
    r"""Encode error handler: escaped bytes go back out as the host sent them, else `\uXXXX`."""
    if not isinstance(exc, UnicodeEncodeError):
        raise exc
    chunk = exc.object[exc.start : exc.end]
    out = b"".join(
        bytes([ord(ch) - 0xDC00]) if ord(ch) in _ESCAPED_BYTE else f"\\u{ord(ch):04x}".encode()
        for ch in chunk
    )
    return out, exc.end


codecs.register_error(LOG_ERRORS, _write_raw)
