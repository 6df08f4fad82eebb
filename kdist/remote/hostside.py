"""Host-side fault tolerance: the POSIX `sh` scripts in scripts/ and pure argv builders for them.

Nothing is installed on build hosts: every helper is `sh -c SCRIPT NAME ARGS...`, quoted once
by the caller (`argv.to_shell`), and Python passes values only as positional arguments. The
scripts need a POSIX shell (dash or bash), coreutils, `find` and `od`; `setsid` and `flock`
come from util-linux and fall back to `perl` (macOS and other hosts without util-linux),
`sha256sum` falls back to `shasum -a 256`.

Per attempt, under `<workdir>/.kdist/attempts/`, `guarded` keeps:

- `<attempt>.start`: touched before the build starts; `manifest` calls newer files fresh.
- `<attempt>.pgid`: the build's process group id while it runs (written by the group leader
  itself, so the group exists whenever the file does); removed when the build is over.
- `<attempt>.cancel`: created by `kill_attempt` and by the watchdog before they look for the
  pgid file; a build that has not started yet sees it and exits 143 instead of starting.

The build runs with `KDIST_ATTEMPT=<attempt>` in its environment; on Linux `kill_attempt` checks
it in `/proc/<pgid>/environ` so a stale pgid file never makes it signal a reused process id.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from importlib.resources import files
from typing import Literal

EXIT_BUSY = 98  # hold_lock: another run holds the workdir lock
EXIT_NO_ARTIFACTS = 96  # manifest: the artifacts directory does not exist
EXIT_TOO_MANY = 95  # manifest: more entries than it may list
EXIT_CANCELLED = 143  # guarded: cancelled before the build started (as if it got SIGTERM)

_ID = re.compile(r"[A-Za-z0-9._-]+")
_HEX64 = re.compile(r"[0-9a-f]{64}")
_HEXNAME = re.compile(r"(?:[0-9a-f]{2})+")

Kind = Literal["f", "l", "d", "o"]
_KINDS: dict[str, Kind] = {"f": "f", "l": "l", "d": "d", "o": "o"}


def host_script(name: str) -> str:
    """The text of kdist/remote/scripts/NAME (package data)."""
    return (files("kdist.remote") / "scripts" / name).read_text(encoding="utf-8")


# The functions that stop a process group, put in front of the scripts that call them.
STOP_FUNCTIONS = host_script("stop-group.sh")
WATCHDOG_SCRIPT = STOP_FUNCTIONS + host_script("watchdog.sh")
BUILD_WRAPPER = host_script("build-wrapper.sh")
GUARDED_SCRIPT = STOP_FUNCTIONS + host_script("guard.sh")
KILL_ATTEMPT_SCRIPT = STOP_FUNCTIONS + host_script("kill-attempt.sh")
HOLD_LOCK_SCRIPT = host_script("hold-lock.sh")
MANIFEST_SCRIPT = host_script("manifest.sh")
# What `guarded` does before a build starts, for builds that run elsewhere (a container).
MARK_START_SCRIPT = host_script("mark-start.sh")


@dataclass(frozen=True)
class ManifestEntry:
    """One entry directly inside an artifacts directory, as the host reported it."""

    kind: Kind  # f: regular file, l: symlink, d: directory, o: anything else
    size: int | None  # bytes, regular files only
    sha256: str | None  # hex digest; None for non-files, files over max_size or unreadable
    fresh: bool  # modified after the attempt's start marker
    name: str  # the file name (undecodable bytes kept as surrogate escapes)


def guarded(argv: Sequence[str], *, workdir: str, attempt: str, grace: int = 10) -> list[str]:
    """Run argv in workdir in its own process group, stopped when our stdin reaches EOF."""
    _check_id("attempt", attempt)
    _check_grace(grace)
    if not argv:
        msg = "guarded needs a command"
        raise ValueError(msg)
    return [
        "sh",
        "-c",
        GUARDED_SCRIPT,
        "kdist-guarded",
        workdir,
        attempt,
        str(grace),
        WATCHDOG_SCRIPT,
        BUILD_WRAPPER,
        *argv,
    ]


def mark_start(workdir: str, attempt: str) -> list[str]:
    """Touch the attempt's start marker in `workdir` (artifacts newer than it are fresh)."""
    _check_id("attempt", attempt)
    return ["sh", "-c", MARK_START_SCRIPT, "kdist-mark", workdir, attempt]


def kill_attempt(workdir: str, attempt: str, grace: int = 10) -> list[str]:
    """Stop a guarded attempt's process group: TERM, up to `grace` s, KILL (grace 0: KILL)."""
    _check_id("attempt", attempt)
    _check_grace(grace)
    return ["sh", "-c", KILL_ATTEMPT_SCRIPT, "kdist-kill", workdir, attempt, str(grace)]


def hold_lock(workdir: str, run_id: str, wait: float) -> list[str]:
    """Hold the workdir's exclusive lock until stdin EOF, waiting at most `wait` s for it."""
    _check_id("run id", run_id)
    if not math.isfinite(wait) or wait < 0:
        msg = f"lock wait must be a finite number of seconds >= 0, not {wait!r}"
        raise ValueError(msg)
    seconds = f"{wait:.3f}".rstrip("0").rstrip(".")
    return ["sh", "-c", HOLD_LOCK_SCRIPT, "kdist-lock", workdir, run_id, seconds]


def manifest(
    artifacts_dir: str, workdir: str, attempt: str, max_size: int, max_entries: int
) -> list[str]:
    """List the entries of artifacts_dir: kind, size, sha256, freshness and hex-encoded name.

    Files over `max_size` bytes get no digest; more than `max_entries` entries exit
    EXIT_TOO_MANY before anything is hashed.
    """
    _check_id("attempt", attempt)
    for what, value in (("max_size", max_size), ("max_entries", max_entries)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            msg = f"{what} must be a count >= 0, not {value!r}"
            raise ValueError(msg)
    return [
        "sh",
        "-c",
        MANIFEST_SCRIPT,
        "kdist-manifest",
        artifacts_dir,
        workdir,
        attempt,
        str(max_size),
        str(max_entries),
    ]


def parse_manifest(text: str) -> list[ManifestEntry]:
    """Parse `manifest` output; ValueError names the first malformed line."""
    entries: list[ManifestEntry] = []
    seen: set[str] = set()
    for number, line in enumerate(text.splitlines(), 1):
        try:
            entry = _parse_line(line)
        except ValueError as exc:
            msg = f"manifest line {number}: {exc}: {line!r}"
            raise ValueError(msg) from None
        if entry.name in seen:
            msg = f"manifest line {number}: duplicate name {entry.name!r}"
            raise ValueError(msg)
        seen.add(entry.name)
        entries.append(entry)
    return entries


def _parse_line(line: str) -> ManifestEntry:
    fields = line.split("\t")
    if len(fields) != 5:
        msg = f"expected 5 tab-separated fields, got {len(fields)}"
        raise ValueError(msg)
    kind_text, size_text, sha_text, fresh_text, name_hex = fields
    kind = _KINDS.get(kind_text)
    if kind is None:
        msg = f"unknown kind {kind_text!r}"
        raise ValueError(msg)
    if fresh_text not in ("0", "1"):
        msg = f"fresh must be 0 or 1, not {fresh_text!r}"
        raise ValueError(msg)
    size, sha256 = _parse_file_fields(kind, size_text, sha_text)
    return ManifestEntry(kind, size, sha256, fresh_text == "1", _parse_name(name_hex))


def _parse_file_fields(kind: Kind, size_text: str, sha_text: str) -> tuple[int | None, str | None]:
    if kind != "f":
        if size_text != "-" or sha_text != "-":
            msg = "size and sha256 must be '-' for anything but a regular file"
            raise ValueError(msg)
        return None, None
    if not size_text.isascii() or not size_text.isdigit():
        msg = f"bad size {size_text!r}"
        raise ValueError(msg)
    if sha_text == "-":
        return int(size_text), None
    if not _HEX64.fullmatch(sha_text):
        msg = f"bad sha256 {sha_text!r}"
        raise ValueError(msg)
    return int(size_text), sha_text


def _parse_name(name_hex: str) -> str:
    if not _HEXNAME.fullmatch(name_hex):
        msg = f"bad hex name {name_hex!r}"
        raise ValueError(msg)
    name = bytes.fromhex(name_hex).decode("utf-8", "surrogateescape")
    if name in (".", "..") or "/" in name or "\0" in name:
        msg = f"unsafe name {name!r}"
        raise ValueError(msg)
    return name


def _check_id(what: str, value: str) -> None:
    if not _ID.fullmatch(value):
        msg = f"{what} {value!r} may only contain letters, digits, '.', '_' and '-'"
        raise ValueError(msg)


def _check_grace(grace: int) -> None:
    if isinstance(grace, bool) or not isinstance(grace, int) or grace < 0:
        msg = f"grace must be a whole number of seconds >= 0, not {grace!r}"
        raise ValueError(msg)
