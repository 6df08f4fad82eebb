"""A compromised build host on the sshd farm: its words stay inert, its waits end, its files stay out.

Each test has a hostile host and an honest one: h2 (planned for linux/arm64) runs a hostile
script after its build, h1 (linux/amd64) builds honestly and its binaries must be kept.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from kdist.testing.devfarm import Farm
from tests.helpers import git, make_project, release

pytestmark = pytest.mark.e2e

# A build log line from a host that wants the operator's terminal: the window title (OSC 0),
# the clipboard (OSC 52), a hyperlink (OSC 8), a byte that is not UTF-8, and a cleared
# screen with a green "release ok" on it.
TAKEOVER = (
    r"printf '\033]0;pwned-title\007\033]52;c;cm0gLXJmIH4K\007\n'"
    r" && printf 'see \033]8;;https://evil.example/\033\\here\033]8;;\033\\\n'"
    r" && printf 'bad byte \377\376\n'"
    r" && printf '\033[2J\033[H\033[1;32mrelease ok\033[0m\n'"
)
RAW = (b"\x1b]0;", b"\x1b]52;", b"\x1b]8;", b"\x1b[2J", b"\x07", b"\xff\xfe")
HONEST = "linux/amd64"
HOSTILE = "linux/arm64"


def hostile_project(root: Path, script: str) -> tuple[Path, Path]:
    """The generic example with `hostile.sh OS ARCH`: builds, then on h2 runs `script` too.

    Returns the source and a profile that builds with it.
    """
    source = make_project("generic", root / "cri-tools", "v0.9.1")
    (source / "hostile.sh").write_text(
        "#!/bin/sh\n"
        "# The build, then what a compromised h2 does on top (farm hosts answer hostname).\n"
        'make binaries GOOS="$1" GOARCH="$2" || exit\n'
        '[ "$(hostname)" = h2 ] || exit 0\n'
        'cd "build/bin/$1/$2" || exit\n'
        f"{script}\n"
    )
    git(source, "add", "hostile.sh")
    git(source, "commit", "-q", "-m", "hostile")
    git(source, "tag", "-f", "v0.9.1")
    profile = root / "hostile.yaml"
    profile.write_text(
        "name: cri-tools\nlayout: generic\nplatforms: [linux/amd64, linux/arm64]\n"
        "build: sh hostile.sh {os} {arch}\n"
        "artifacts: build/bin/{os}/{arch}\n"
        'env: {CGO_ENABLED: "0"}\n'
    )
    return source, profile


def _release_argv(source: Path, profile: Path, farm: Farm, out: Path, *extra: str) -> list[str]:
    return [
        sys.executable, "-m", "kdist", "release", "--source", str(source),
        "--profile", str(profile), "--hosts", str(farm.inventory_path), "--output", str(out),
        "--platforms", f"{HONEST},{HOSTILE}", "--skip-tests", *extra,
    ]  # fmt: skip


def _assert_honest_kept(out: Path) -> None:
    kept = out / "bin/linux/amd64"
    assert sorted(p.name for p in kept.iterdir()) == ["crictl", "critest"]


def _assert_inert(shown: bytes) -> None:
    for raw in RAW:
        assert raw not in shown, raw
    assert b"\xc2\x9b" not in shown  # nor the 8-bit CSI


def test_build_output_cannot_drive_the_terminal_plain_json_and_pty(
    farm: Farm, tmp_path: Path
) -> None:
    """OSC 0/8/52, ESC[2J and bad bytes from a host appear escaped: piped, --json and on a pty."""
    source, profile = hostile_project(tmp_path, f"{TAKEOVER} && exit 2")
    out = tmp_path / "out"
    piped = subprocess.run(
        _release_argv(source, profile, farm, out), capture_output=True, timeout=900, check=False
    )
    assert piped.returncode == 1, piped.stderr.decode(errors="replace")
    _assert_inert(piped.stdout + piped.stderr)
    shown = piped.stdout.decode()
    assert "\\x1b]0;pwned-title\\x07" in shown and "bad byte \\xff\\xfe" in shown
    _assert_honest_kept(out)
    log = (out / "logs/linux-arm64.log").read_bytes()
    assert b"\x1b]52;c;" in log and b"bad byte \xff\xfe" in log  # the evidence is kept as sent

    as_json = subprocess.run(
        _release_argv(source, profile, farm, tmp_path / "out-json", "--json"),
        capture_output=True, timeout=900, check=False,
    )  # fmt: skip
    assert as_json.returncode == 1
    _assert_inert(as_json.stdout)
    doc = json.loads(as_json.stdout.decode("utf-8"))  # strict UTF-8: no lone surrogates
    tail = next(s for s in doc["slices"] if s["platform"] == HOSTILE)["log_tail"]
    assert "bad byte \\xff\\xfe" in tail
    assert "\\u001b" not in as_json.stdout.decode()  # no ESC, not even JSON-escaped

    command = shlex.join(_release_argv(source, profile, farm, tmp_path / "out-pty"))
    on_pty = subprocess.run(
        ["script", "-qec", command, "/dev/null"],
        capture_output=True, timeout=900, check=False,
        env={**os.environ, "TERM": "xterm-256color", "COLUMNS": "160", "LINES": "50"},
    )  # fmt: skip
    assert on_pty.returncode == 1, on_pty.stdout.decode(errors="replace")[-3000:]
    assert b"\x1b[" in on_pty.stdout  # it was drawn by rich, on a terminal
    _assert_inert(on_pty.stdout)
    assert b"\\x1b]0;pwned-title" in on_pty.stdout
    _assert_honest_kept(tmp_path / "out-pty")


def test_wrong_architecture_file_with_a_non_utf8_name_is_refused_with_exit_4(
    farm: Farm, tmp_path: Path
) -> None:
    """A wrong-arch file named with bytes that are not UTF-8: exit 4 (not 70), h1's kept."""
    name = r"$(printf 'evil-\377\033]0;t\007')"
    source, profile = hostile_project(tmp_path, f'cp /bin/ls "{name}"')
    out = tmp_path / "out"
    ran = release(
        source, "--profile", profile, hosts=farm.inventory_path, out=out,
        platforms=f"{HONEST},{HOSTILE}",
    )  # fmt: skip
    assert ran.code == 4, ran.stderr
    by_platform = {s["platform"]: s for s in ran.json["slices"]}
    assert by_platform[HONEST]["status"] == "ok"
    moved = by_platform[HOSTILE]  # h2 was left out; an honest host built the slice again
    assert moved["status"] == "ok" and moved["host"] != "h2" and moved["attempts"] == 2
    (violation,) = moved["violations"]
    assert violation.startswith("h2: linux/arm64: ") and "evil-\\xff\\x1b]0;t\\x07" in violation
    assert "h2 left out" in json.dumps(ran.json["notes"])
    assert ran.json["title"].startswith("FAILED: integrity violation, nothing published: h2")
    _assert_inert(ran.stdout.encode() + ran.stderr.encode())
    _assert_honest_kept(out)
    assert sorted(p.name for p in (out / "bin/linux/arm64").iterdir()) == ["crictl", "critest"]
    assert not (out / "release-tars").exists()
    assert all(b"evil" not in os.fsencode(p.name) for p in out.rglob("*"))
