"""A compromised build host on the sshd farm: its words stay inert, its waits end, its files stay out.

Each test has a hostile host and an honest one: h2 (planned for linux/arm64) runs a hostile
script after its build, h1 (linux/amd64) builds honestly and its binaries must be kept.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from kdist.testing.devfarm import Farm
from tests.e2e.test_faults import _host_processes, _processes_with, _wait_for
from tests.helpers import Ran, git, make_project, release

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


def hostile_project(root: Path, script: str, profile_extra: str = "") -> tuple[Path, Path]:
    """The generic example with `hostile.sh OS ARCH`: builds, then on h2 runs `script` too.

    Returns the source and a profile that builds with it (plus `profile_extra` lines).
    """
    source = make_project("generic", root / "cri-tools", "v0.9.1")
    (source / "hostile.sh").write_text(
        "#!/bin/sh\n"
        "# The build, then what a compromised h2 does on top (farm hosts answer hostname).\n"
        "# A line a second while make runs: the tests' short --idle-timeout is not for builds.\n"
        "(while :; do echo building; sleep 1; done) &\n"
        'make binaries GOOS="$1" GOARCH="$2"; built=$?\n'
        "kill $!\n"
        '[ "$built" -eq 0 ] || exit "$built"\n'
        '[ "$(hostname)" = h2 ] || exit 0\n'
        'cd "build/bin/$1/$2" || exit\n'
        f"{script}\n"
    )
    (source / "forever.sh").write_text(
        "#!/bin/sh\n# Unit tests that say one line, then wait for ever under a name $1 finds.\n"
        'echo "unit tests starting"\n: >"$1"\nexec tail -f "$1"\n'
    )
    git(source, "add", "hostile.sh", "forever.sh")
    git(source, "commit", "-q", "-m", "hostile")
    git(source, "tag", "-f", "v0.9.1")
    profile = root / "hostile.yaml"
    profile.write_text(
        "name: cri-tools\nlayout: generic\nplatforms: [linux/amd64, linux/arm64]\n"
        "build: sh hostile.sh {os} {arch}\n"
        "artifacts: build/bin/{os}/{arch}\n"
        'env: {CGO_ENABLED: "0"}\n' + profile_extra
    )
    return source, profile


def _release_argv(source: Path, profile: Path, farm: Farm, out: Path, *extra: str) -> list[str]:
    return [
        sys.executable, "-m", "kdist", "release", "--source", str(source),
        "--profile", str(profile), "--hosts", str(farm.inventory_path), "--output", str(out),
        "--platforms", f"{HONEST},{HOSTILE}", "--skip-tests", *extra,
    ]  # fmt: skip


def _release_both(farm: Farm, root: Path, script: str) -> tuple[Ran, Path]:
    """A release of both platforms of hostile_project(root, script), and its output folder."""
    source, profile = hostile_project(root, script)
    out = root / "out"
    ran = release(
        source, "--profile", profile, hosts=farm.inventory_path, out=out,
        platforms=f"{HONEST},{HOSTILE}",
    )  # fmt: skip
    return ran, out


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
    ran, out = _release_both(farm, tmp_path, f'cp /bin/ls "{name}"')
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


def test_unit_tests_that_never_end_are_stopped_and_leave_nothing_on_the_host(
    farm: Farm, tmp_path: Path
) -> None:
    """Tests that say one line and wait for ever: stopped after --idle-timeout, on the host too."""
    marker = f"kdist-forever-{os.getpid()}"
    source, profile = hostile_project(tmp_path, "true", f"test: sh forever.sh {marker}\n")
    start = time.monotonic()
    ran = release(
        source, "--profile", profile, "--idle-timeout", "5", hosts=farm.inventory_path,
        out=tmp_path / "out", platforms=f"{HONEST},{HOSTILE}", skip_tests=False,
    )  # fmt: skip
    took = time.monotonic() - start
    assert ran.code == 1, ran.stderr
    assert "no output for 5s; the unit tests were stopped" in ran.json["tests"]["error"]
    assert took < 300  # builds included; the tests alone end in about 5 s, never in 600
    _wait_for(lambda: not _processes_with(marker), 30, "the endless tests to be gone")
    _assert_honest_kept(tmp_path / "out")


# After its build h2 pads crictl (so sending it takes a while) and leaves a watcher outside
# the build's process group: once rsync's sender has crictl open, critest, already listed
# as a regular file, becomes a FIFO, and the sender's open() of it never returns.
FIFO_SWAP = """truncate -s +160M crictl
dir=$PWD
setsid sh -c '
  n=0
  while [ $n -lt 1200 ]; do
    for p in /proc/[0-9]*; do
      read -r comm <"$p/comm" 2>/dev/null || continue
      [ "$comm" = rsync ] || continue
      for fd in "$p"/fd/*; do
        if [ "$(readlink "$fd" 2>/dev/null)" = "$0/crictl" ]; then
          rm -f "$0/critest" && mkfifo "$0/critest"; exit 0
        fi
      done
    done
    n=$((n + 1)); sleep 0.05
  done' "$dir" </dev/null >/dev/null 2>&1 &"""


def test_an_artifact_swapped_for_a_fifo_during_the_pull_is_bounded(
    farm: Farm, tmp_path: Path
) -> None:
    """The pull stalls on a FIFO: stopped at --transfer-timeout, h2 left out, the slice moves."""
    source, profile = hostile_project(tmp_path, FIFO_SWAP)
    out = tmp_path / "out"
    start = time.monotonic()
    ran = release(
        source, "--profile", profile, "--command-timeout", "5", "--transfer-timeout", "20",
        hosts=farm.inventory_path, out=out, platforms=f"{HONEST},{HOSTILE}",
    )  # fmt: skip
    took = time.monotonic() - start
    assert ran.code == 0, ran.stderr + ran.stdout[-2000:]
    moved = {s["platform"]: s for s in ran.json["slices"]}[HOSTILE]
    assert moved["host"] != "h2" and moved["attempts"] == 2
    notes = json.dumps(ran.json["notes"])
    # rsync's own --timeout does not fire here (keep-alives still flow while the sender is
    # stuck in open()); the head node's wall-clock limit does.
    assert "h2 left out" in notes and "rsync did not finish within 20s; stopped" in notes
    assert took < 300
    _assert_honest_kept(out)
    # The sender blocked in open() is killed on h2 by its wall-clock limit (20 s + grace).
    _wait_for(lambda: not _host_processes(farm, "h2"), 60, "h2's stuck rsync to be stopped")


def test_a_host_whose_go_hangs_is_left_out_in_bounded_time(farm: Farm, tmp_path: Path) -> None:
    """h2's `go version` never answers: h2 is left out after --command-timeout, h1 builds."""
    marker = f"kdist-hanging-go-{os.getpid()}"
    fake = tmp_path / marker
    fake.mkdir()
    inventory = farm.inventory_path.read_text()
    quote = inventory.split("PATH: ", 1)[1][0]  # the farm writes PATH: 'ROOT/bin:...'
    path = inventory.split(f"PATH: {quote}", 1)[1].split(quote, 1)[0]
    real = shutil.which("go", path=path)
    (fake / "go").write_text(
        "#!/bin/sh\n# h2's go never answers; every other host gets the real one.\n"
        f'[ "$KDIST_FARM_HOST" = h2 ] || exec {real} "$@"\n'
        "sleep 600\n"
    )
    (fake / "go").chmod(0o755)
    hosts = tmp_path / "inventory.yaml"
    hosts.write_text(inventory.replace(f"PATH: {quote}", f"PATH: {quote}{fake}:", 1))
    source, profile = hostile_project(tmp_path, "true")
    start = time.monotonic()
    ran = release(
        source, "--profile", profile, "--command-timeout", "4", hosts=hosts,
        out=tmp_path / "out", platforms=f"{HONEST},{HOSTILE}",
    )  # fmt: skip
    took = time.monotonic() - start
    assert ran.code == 0, ran.stderr + ran.stdout[-2000:]
    moved = {s["platform"]: s for s in ran.json["slices"]}[HOSTILE]
    assert moved["host"] != "h2"
    assert "h2" in json.dumps(ran.json["notes"])
    assert took < 300
    _wait_for(lambda: not _processes_with(marker), 30, "h2's hanging go to be stopped")


# h2 leaves what a generic release must not take: a folder (with a file in it), a name with a
# newline, a script and a data file; refused one line per entry before anything is pulled.
LITTER = r"""mkdir extra && head -c 100000 /dev/zero >extra/blob
: >"$(printf 'new\nline')"
printf '#!/bin/sh\necho hi\n' >install.sh
echo notes >notes.txt"""


def test_a_generic_release_takes_only_executables_unless_data_is_opted_in(
    farm: Farm, tmp_path: Path
) -> None:
    """Folders and bad names refused (one line each, h2 left out); artifact_data lets data in."""
    ran, out = _release_both(farm, tmp_path / "litter", LITTER)
    assert ran.code == 4, ran.stderr
    moved = {s["platform"]: s for s in ran.json["slices"]}[HOSTILE]
    assert moved["host"] != "h2"
    assert moved["violations"] == [
        "h2: linux/arm64: 'extra' is a directory (never pulled); refused",
        "h2: linux/arm64: 'new\\x0aline' has control characters in its name; refused",
    ]
    shipped = sorted(p.name for p in out.rglob("*") if "bin" in p.parts and p.is_file())
    assert shipped == ["crictl", "crictl", "critest", "critest"]

    data, opted = hostile_project(
        tmp_path / "data", "echo notes >notes.txt", "artifact_data: [notes.txt]\n"
    )
    ran = release(
        data, "--profile", opted, hosts=farm.inventory_path, out=tmp_path / "out-data",
        platforms=HOSTILE,
    )  # fmt: skip
    assert ran.code == 0, ran.stderr
    notes = tmp_path / "out-data/bin/linux/arm64/notes.txt"
    assert notes.read_text() == "notes\n" and (notes.stat().st_mode & 0o777) == 0o644
