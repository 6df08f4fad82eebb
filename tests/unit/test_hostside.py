"""Tests for kdist.remote.hostside: the host-side scripts run for real through `sh -c`, no SSH."""

from __future__ import annotations

import hashlib
import os
import random
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import pytest

import kdist.remote
from kdist.remote import hostside
from kdist.remote.argv import NO_WORKDIR
from kdist.remote.hostside import (
    BUILD_WRAPPER,
    EXIT_BUSY,
    EXIT_CANCELLED,
    EXIT_NO_ARTIFACTS,
    WATCHDOG_SCRIPT,
    ManifestEntry,
    guarded,
    hold_lock,
    kill_attempt,
    manifest,
    mark_start,
    parse_manifest,
)

SCRIPTS = Path(kdist.remote.__file__).parent / "scripts"

# Upper time bounds leave room for a badly loaded 2-core machine (seen: load 90, where 5 s was
# not enough); each stays well below the WRONG grace a wrong code path would wait for, so the
# tests still tell right from wrong.
SLACK = 20.0
WRONG = 60  # seconds of grace given to the guard where the test expects another path to act

# Everything the scripts and these tests call, for the PATH without util-linux and sha256sum.
FALLBACK_TOOLS = [
    "mkdir",
    "touch",
    "rm",
    "mv",
    "cat",
    "sleep",
    "perl",
    "shasum",
    "uname",
    "date",
    "find",
    "od",
    "tr",
    "stat",
    "wc",
    "grep",
    "mkfifo",
    "ln",
    "ls",
    "true",
]


def _shell_dir(tmp: Path, shell: str, tools: Sequence[str]) -> Path:
    """A bin folder whose `sh` is `shell`, plus the named tools."""
    folder = tmp / f"bin-{shell}"
    folder.mkdir()
    (folder / "sh").symlink_to(shutil.which(shell) or shell)
    for tool in tools:
        found = shutil.which(tool)
        if found is None:
            pytest.skip(f"{tool} not installed")
        (folder / tool).symlink_to(found)
    return folder


@pytest.fixture(params=["dash", "bash", "fallback"])
def env(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """The environment for a host: sh as dash, sh as bash, or dash with no setsid/flock/sha256sum."""
    tmp = tmp_path_factory.mktemp("bin")
    name = request.param
    if name == "fallback":
        folder = _shell_dir(tmp, "dash", FALLBACK_TOOLS)
        return {**os.environ, "PATH": str(folder)}
    if shutil.which(name) is None:
        pytest.skip(f"{name} not installed")
    folder = _shell_dir(tmp, name, [])
    return {**os.environ, "PATH": f"{folder}{os.pathsep}{os.environ['PATH']}"}



def _as_sshd_starts_it() -> None:
    """In the child: every stop signal at its default, as sshd starts a session's command.

    A test run started in the background inherits SIGINT ignored, and a shell can never undo
    an ignore it was started with; the scripts must be tested as a host runs them.
    """
    for signum in (signal.SIGINT, signal.SIGQUIT, signal.SIGTERM):
        signal.signal(signum, signal.SIG_DFL)

class Procs:
    """Started helpers and build markers; whatever is left is killed at teardown."""

    def __init__(self, env: dict[str, str]) -> None:
        self.env = env
        self.popens: list[subprocess.Popen[str]] = []
        self.markers: list[str] = []

    def marker(self) -> str:
        """A unique `sleep` duration that tags a test's build processes on their command line."""
        mark = f"30.{random.randrange(10**9):09d}"
        self.markers.append(mark)
        return mark

    def start(self, argv: Sequence[str]) -> subprocess.Popen[str]:
        """Start argv the way sshd would: quoted once and run by `sh -c`, stdin kept open."""
        proc = subprocess.Popen(
            ["sh", "-c", shlex.join(argv)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=self.env,
            preexec_fn=_as_sshd_starts_it,
        )
        self.popens.append(proc)
        return proc

    def run(
        self, argv: Sequence[str], timeout: float = 2 * SLACK
    ) -> subprocess.CompletedProcess[str]:
        """Run argv to completion with its stdin held open throughout, as kdist does."""
        read_end, write_end = os.pipe()
        try:
            return subprocess.run(
                ["sh", "-c", shlex.join(argv)],
                stdin=read_end,
                capture_output=True,
                text=True,
                env=self.env,
                preexec_fn=_as_sshd_starts_it,
                timeout=timeout,
                check=False,
            )
        finally:
            os.close(read_end)
            os.close(write_end)

    def cleanup(self) -> None:
        """Kill what a failed test left behind."""
        for proc in self.popens:
            if proc.poll() is None:
                proc.kill()
            proc.wait()
            for pipe in (proc.stdin, proc.stdout, proc.stderr):
                if pipe is not None:
                    pipe.close()
        for mark in self.markers:
            for pid in _marked(mark):
                os.kill(pid, signal.SIGKILL)


@pytest.fixture
def procs(env: dict[str, str]) -> Iterator[Procs]:
    """A Procs registry for one test."""
    registry = Procs(env)
    try:
        yield registry
    finally:
        registry.cleanup()


def _marked(mark: str) -> list[int]:
    """Live processes whose command line contains `mark` (zombies have none)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmdline = (entry / "cmdline").read_bytes()
            except OSError:
                continue
            if mark.encode() in cmdline:
                found.append(int(entry.name))
    return found


def _pgid(pid: int) -> int:
    """The process group of pid, from /proc."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    return int(stat.rsplit(")", 1)[1].split()[2])


def _wait_for(check: Callable[[], bool], timeout: float = SLACK) -> None:
    """Poll check until it holds, or fail after timeout seconds."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout}s waiting for {check}")
        time.sleep(0.02)


def _tree_build(mark: str, prefix: str = "") -> list[str]:
    """A build whose child sleeps in the foreground and whose grandchild sleeps in the background."""
    return ["sh", "-c", f"{prefix}sleep {mark} & sleep {mark}; exit 0"]


def _running(procs: Procs, work: Path, attempt: str, mark: str, **kw: int) -> subprocess.Popen[str]:
    """Start a guarded tree build and wait until its group and all three processes exist."""
    prefix = "trap '' TERM; " if kw.pop("ignore_term", 0) else ""
    proc = procs.start(guarded(_tree_build(mark, prefix), workdir=str(work), attempt=attempt, **kw))
    pgid_file = work / ".kdist" / "attempts" / f"{attempt}.pgid"
    _wait_for(lambda: pgid_file.is_file() and len(_marked(mark)) >= 4)
    return proc


def _finish(proc: subprocess.Popen[str], timeout: float) -> tuple[int, float]:
    """Wait for proc (its stdin left as it is); its exit status and how long that took."""
    start = time.monotonic()
    code = proc.wait(timeout=timeout)
    return code, time.monotonic() - start


# --- guarded ---------------------------------------------------------------------------


@pytest.mark.parametrize("code", [0, 3])
def test_guarded_passes_exit_status_and_output_through(
    procs: Procs, tmp_path: Path, code: int
) -> None:
    """The build's exit status and both output streams come back unchanged."""
    build = ["sh", "-c", f"echo out; echo err >&2; exit {code}"]
    done = procs.run(guarded(build, workdir=str(tmp_path), attempt="r1-1"))
    assert (done.returncode, done.stdout, done.stderr) == (code, "out\n", "err\n")


@pytest.mark.parametrize(("sig", "code"), [("KILL", 137), ("TERM", 143), ("INT", 130)])
def test_guarded_signal_death_exits_128_plus_n(
    procs: Procs, tmp_path: Path, sig: str, code: int
) -> None:
    """A build killed by signal N exits 128+N; SIGINT is not ignored by the build."""
    build = ["sh", "-c", f"kill -s {sig} $$; exit 5"]
    done = procs.run(guarded(build, workdir=str(tmp_path), attempt="r1-1"))
    assert done.returncode == code


def test_guarded_runs_in_workdir_with_attempt_and_cleans_up(procs: Procs, tmp_path: Path) -> None:
    """The build runs in workdir with KDIST_ATTEMPT set; the start marker stays, the pgid goes."""
    build = ["sh", "-c", 'pwd; echo "$KDIST_ATTEMPT"; ls .kdist/attempts']
    done = procs.run(guarded(build, workdir=str(tmp_path), attempt="r1.x_y-2"))
    attempts = tmp_path / ".kdist" / "attempts"
    assert done.returncode == 0
    assert done.stdout.splitlines()[:2] == [str(tmp_path), "r1.x_y-2"]
    assert "r1.x_y-2.pgid" in done.stdout.splitlines()  # existed while the build ran
    assert sorted(p.name for p in attempts.iterdir()) == ["r1.x_y-2.start"]


def test_guarded_streams_output_before_the_build_ends(procs: Procs, tmp_path: Path) -> None:
    """A line the build prints arrives while the build is still running."""
    mark = procs.marker()
    build = ["sh", "-c", f"echo first; sleep {mark}"]
    proc = procs.start(guarded(build, workdir=str(tmp_path), attempt="r1-1", grace=1))
    assert proc.stdout is not None
    assert proc.stdout.readline() == "first\n"
    assert proc.poll() is None
    assert proc.stdin is not None
    proc.stdin.close()
    assert _finish(proc, SLACK + 4)[0] == 143


def test_guarded_stdin_eof_kills_the_whole_group(procs: Procs, tmp_path: Path) -> None:
    """Closing stdin stops the build, its grandchild and the guard itself; the pgid file goes."""
    mark = procs.marker()
    proc = _running(procs, tmp_path, "r1-1", mark, grace=1)
    pgid_file = tmp_path / ".kdist" / "attempts" / "r1-1.pgid"
    pgid = int(pgid_file.read_text())
    assert sum(_pgid(pid) == pgid for pid in _marked(mark)) == 3  # sh, child, grandchild
    assert proc.poll() is None
    assert proc.stdin is not None
    proc.stdin.close()
    code, took = _finish(proc, SLACK + 3)
    assert code == 143
    assert took < 1 + SLACK
    assert _marked(mark) == []
    assert not pgid_file.exists()


def test_guarded_kills_a_term_ignoring_build_after_grace(procs: Procs, tmp_path: Path) -> None:
    """A build that ignores SIGTERM gets SIGKILL once the grace period is over."""
    mark = procs.marker()
    proc = _running(procs, tmp_path, "r1-1", mark, grace=1, ignore_term=1)
    assert proc.stdin is not None
    proc.stdin.close()
    code, took = _finish(proc, SLACK + 4)
    assert code == 137
    assert 0.9 < took < 1 + SLACK
    assert _marked(mark) == []


def test_guarded_stops_what_a_finished_build_left_behind(procs: Procs, tmp_path: Path) -> None:
    """A background process the build leaves in its group is stopped when the build exits."""
    mark = procs.marker()
    build = ["sh", "-c", f"sleep {mark} & exit 0"]
    proc = procs.start(guarded(build, workdir=str(tmp_path), attempt="r1-1", grace=1))
    code, took = _finish(proc, 1 + SLACK)  # a leftover holding stdout would keep it running
    assert code == 0
    assert took < 1 + SLACK
    assert _marked(mark) == []


def test_guarded_missing_workdir_exits_no_workdir(procs: Procs, tmp_path: Path) -> None:
    """A missing workdir is exit 97 with a message, and nothing runs."""
    done = procs.run(
        guarded(["touch", str(tmp_path / "ran")], workdir=str(tmp_path / "no"), attempt="r1-1")
    )
    assert done.returncode == NO_WORKDIR
    assert "no directory" in done.stderr
    assert not (tmp_path / "ran").exists()


def test_guarded_without_new_group_tool_refuses(tmp_path: Path) -> None:
    """Without setsid and perl the guard refuses (127) instead of running an unkillable build."""
    folder = _shell_dir(tmp_path, "dash", ["mkdir", "touch", "rm"])
    argv = guarded(["touch", str(tmp_path / "ran")], workdir=str(tmp_path), attempt="r1-1")
    done = subprocess.run(
        ["sh", "-c", shlex.join(argv)],
        capture_output=True,
        text=True,
        env={**os.environ, "PATH": str(folder)},
        check=False,
    )
    assert done.returncode == 127
    assert "setsid" in done.stderr
    assert not (tmp_path / "ran").exists()


@pytest.mark.parametrize("attempt", ["", "a b", "a/b", "a;b", "$(x)", "a\nb"])
def test_bad_attempt_ids_are_refused(attempt: str) -> None:
    """Attempt ids outside [A-Za-z0-9._-] are refused by every builder."""
    with pytest.raises(ValueError, match="attempt"):
        guarded(["true"], workdir="/w", attempt=attempt)
    with pytest.raises(ValueError, match="attempt"):
        kill_attempt("/w", attempt)
    with pytest.raises(ValueError, match="attempt"):
        manifest("/w/out", "/w", attempt, 10, 10)


def test_bad_numbers_and_empty_argv_are_refused() -> None:
    """Negative or fractional grace, bad waits, run ids and sizes, and an empty command are refused."""
    calls: list[Callable[[], list[str]]] = [
        lambda: guarded([], workdir="/w", attempt="a-1"),
        lambda: guarded(["true"], workdir="/w", attempt="a-1", grace=-1),
        lambda: kill_attempt("/w", "a-1", grace=1.5),  # type: ignore[arg-type]
        lambda: hold_lock("/w", "run 1", 1),
        lambda: hold_lock("/w", "r1", -1),
        lambda: hold_lock("/w", "r1", float("nan")),
        lambda: manifest("/w/o", "/w", "a-1", -1, 10),
    ]
    for call in calls:
        with pytest.raises(ValueError):
            call()


def test_argv_shapes_pass_values_as_arguments() -> None:
    """Builders are `sh -c SCRIPT NAME ARGS...`; the guard gets its helper scripts as arguments."""
    assert guarded(["make", "x"], workdir="/w", attempt="a-1", grace=3)[3:] == [
        "kdist-guarded",
        "/w",
        "a-1",
        "3",
        WATCHDOG_SCRIPT,
        BUILD_WRAPPER,
        "make",
        "x",
    ]
    assert kill_attempt("/w", "a-1")[3:] == ["kdist-kill", "/w", "a-1", "10"]
    assert hold_lock("/w", "r1", 1.5)[3:] == ["kdist-lock", "/w", "r1", "1.5"]
    assert hold_lock("/w", "r1", 2)[-1] == "2"
    assert manifest("/w/o", "/w", "a-1", 99, 7)[3:] == [
        "kdist-manifest",
        "/w/o",
        "/w",
        "a-1",
        "99",
        "7",
    ]


def test_scripts_exit_codes_match_python() -> None:
    """Every `EXIT_NAME=N` a host script defines is the number kdist reads under that name."""
    known = {
        "EXIT_NO_WORKDIR": NO_WORKDIR,
        "EXIT_BUSY": EXIT_BUSY,
        "EXIT_NO_ARTIFACTS": EXIT_NO_ARTIFACTS,
        "EXIT_TOO_MANY": hostside.EXIT_TOO_MANY,
        "EXIT_CANCELLED": EXIT_CANCELLED,
        "EXIT_NO_TOOL": 127,
    }
    found = 0
    for script in sorted(SCRIPTS.glob("*.sh")):
        for name, value in re.findall(r"^(EXIT_[A-Z_]+)=(\d+)", script.read_text(), re.M):
            assert known.get(name) == int(value), f"{script.name}: {name}={value}"
            found += 1
    assert found >= 6


def test_mark_start_touches_the_marker_or_exits_no_workdir(procs: Procs, tmp_path: Path) -> None:
    """mark_start creates the attempt's start marker; a missing workdir is exit 97."""
    done = procs.run(mark_start(str(tmp_path), "r1-1"))
    assert done.returncode == 0, done.stderr
    assert (tmp_path / ".kdist" / "attempts" / "r1-1.start").is_file()
    missing = procs.run(mark_start(str(tmp_path / "no"), "r1-1"))
    assert missing.returncode == NO_WORKDIR
    assert "no directory" in missing.stderr


# --- kill_attempt ----------------------------------------------------------------------


def test_kill_attempt_stops_a_running_build(procs: Procs, tmp_path: Path) -> None:
    """kill_attempt over a fresh channel stops the build and its grandchild, and returns 0."""
    mark = procs.marker()
    proc = _running(procs, tmp_path, "r1-1", mark, grace=WRONG)
    start = time.monotonic()
    done = procs.run(kill_attempt(str(tmp_path), "r1-1", grace=2))
    assert done.returncode == 0, done.stderr
    assert time.monotonic() - start < 2 + SLACK  # the guard's own grace is WRONG
    assert _finish(proc, SLACK + 2)[0] == 143
    assert _marked(mark) == []
    assert not (tmp_path / ".kdist" / "attempts" / "r1-1.pgid").exists()


def test_kill_attempt_grace_zero_kills_at_once(procs: Procs, tmp_path: Path) -> None:
    """grace=0 sends SIGKILL straight away, even to a build that ignores SIGTERM."""
    mark = procs.marker()
    proc = _running(procs, tmp_path, "r1-1", mark, grace=WRONG, ignore_term=1)
    start = time.monotonic()
    done = procs.run(kill_attempt(str(tmp_path), "r1-1", grace=0))
    assert done.returncode == 0, done.stderr
    assert time.monotonic() - start < SLACK  # the build ignores TERM; its guard's grace is WRONG
    assert _finish(proc, SLACK + 2)[0] == 137
    assert _marked(mark) == []


def test_kill_attempt_escalates_after_grace(procs: Procs, tmp_path: Path) -> None:
    """A build that ignores SIGTERM is SIGKILLed by kill_attempt after its grace period."""
    mark = procs.marker()
    proc = _running(procs, tmp_path, "r1-1", mark, grace=WRONG, ignore_term=1)
    start = time.monotonic()
    done = procs.run(kill_attempt(str(tmp_path), "r1-1", grace=1))
    assert done.returncode == 0, done.stderr
    assert 0.9 < time.monotonic() - start < 1 + SLACK
    assert _finish(proc, SLACK + 2)[0] == 137
    assert _marked(mark) == []


def test_kill_attempt_with_nothing_running_returns_0(procs: Procs, tmp_path: Path) -> None:
    """A finished attempt, an unknown attempt and a missing workdir all return 0."""
    assert procs.run(guarded(["true"], workdir=str(tmp_path), attempt="r1-1")).returncode == 0
    assert procs.run(kill_attempt(str(tmp_path), "r1-1")).returncode == 0
    assert procs.run(kill_attempt(str(tmp_path), "r1-9")).returncode == 0
    assert procs.run(kill_attempt(str(tmp_path / "no"), "r1-1")).returncode == 0


def test_kill_attempt_before_start_cancels_the_build(procs: Procs, tmp_path: Path) -> None:
    """An attempt killed before it started exits 143 without running the build."""
    assert procs.run(kill_attempt(str(tmp_path), "r1-1")).returncode == 0
    done = procs.run(
        guarded(["touch", str(tmp_path / "ran")], workdir=str(tmp_path), attempt="r1-1")
    )
    assert done.returncode == 143
    assert not (tmp_path / "ran").exists()


def test_kill_attempt_leaves_a_reused_pgid_alone(procs: Procs, tmp_path: Path) -> None:
    """A stale pgid file naming someone else's process group does not get it killed."""
    mark = procs.marker()
    other = subprocess.Popen(["sleep", mark], start_new_session=True)
    try:
        attempts = tmp_path / ".kdist" / "attempts"
        attempts.mkdir(parents=True)
        (attempts / "r1-1.pgid").write_text(f"{other.pid}\n")
        assert procs.run(kill_attempt(str(tmp_path), "r1-1", grace=0)).returncode == 0
        time.sleep(0.1)
        assert other.poll() is None
    finally:
        other.kill()
        other.wait()


# --- hold_lock -------------------------------------------------------------------------


def _locked(procs: Procs, work: Path, run_id: str, wait: float = 1) -> subprocess.Popen[str]:
    """Start a lock holder and wait for its `locked` line."""
    holder = procs.start(hold_lock(str(work), run_id, wait))
    assert holder.stdout is not None
    assert holder.stdout.readline() == f"locked {run_id}\n"
    return holder


def test_hold_lock_busy_then_free_after_stdin_closes(procs: Procs, tmp_path: Path) -> None:
    """A second run gets `busy <owner>` and 98 after `wait`; once the holder's stdin closes, it's free."""
    first = _locked(procs, tmp_path, "run-a")
    owner = (tmp_path / ".kdist" / "owner").read_text().split()
    assert owner[0] == "run-a"
    assert owner[1] == os.uname().nodename
    assert abs(int(owner[2]) - time.time()) < 5
    start = time.monotonic()
    busy = procs.run(hold_lock(str(tmp_path), "run-b", 1))
    took = time.monotonic() - start
    assert busy.returncode == EXIT_BUSY
    assert busy.stdout.split() == ["busy", *owner]
    assert 0.9 < took < 1 + SLACK
    assert first.stdin is not None
    first.stdin.close()
    assert _finish(first, SLACK + 2)[0] == 0
    second = _locked(procs, tmp_path, "run-c", wait=0)  # free at once, no waiting
    assert (tmp_path / ".kdist" / "owner").read_text().split()[0] == "run-c"
    assert second.stdin is not None
    second.stdin.close()
    assert _finish(second, SLACK + 2)[0] == 0


def test_hold_lock_recovers_when_the_holder_is_killed(procs: Procs, tmp_path: Path) -> None:
    """A lock held by a SIGKILLed holder is free again at once."""
    first = _locked(procs, tmp_path, "run-a")
    first.kill()
    first.communicate()
    start = time.monotonic()
    second = procs.start(hold_lock(str(tmp_path), "run-b", 0))
    assert second.stdout is not None
    assert second.stdout.readline() == "locked run-b\n"
    assert time.monotonic() - start < SLACK
    second.stdin.close()  # type: ignore[union-attr]
    assert _finish(second, SLACK + 2)[0] == 0


def test_hold_lock_zero_wait_fails_at_once(procs: Procs, tmp_path: Path) -> None:
    """With wait=0 a busy lock is reported without waiting."""
    _locked(procs, tmp_path, "run-a")
    start = time.monotonic()
    busy = procs.run(hold_lock(str(tmp_path), "run-b", 0))
    assert busy.returncode == EXIT_BUSY
    assert busy.stdout.startswith("busy run-a ")
    assert time.monotonic() - start < SLACK


def test_hold_lock_unusable_workdir_is_no_workdir(procs: Procs, tmp_path: Path) -> None:
    """A workdir that cannot be created is exit 97, not a lock."""
    (tmp_path / "file").write_text("")
    done = procs.run(hold_lock(str(tmp_path / "file" / "w"), "run-a", 0))
    assert done.returncode == NO_WORKDIR
    assert done.stdout == ""


# --- manifest --------------------------------------------------------------------------

# The build for the manifest test: new files of every kind, made after the start marker.
MAKE_ARTIFACTS = r"""
import os, sys, time
time.sleep(0.05)  # file times move in clock ticks; a real build is seconds past its marker
out = sys.argv[1]
def put(name, data):
    with open(os.path.join(os.fsencode(out), name), "wb") as f:
        f.write(data)
put(b"a b", b"hello\n")
put(b"tab\there", b"x")
put(b"new\nline", b"")
put(b"-dash", b"d")
put(b".hidden", b"h")
put(b"\xffraw", b"r")
put(b"big", b"z" * 2000)
put(b"edge", b"e" * 1000)
os.symlink("a b", os.path.join(out, "link"))
os.symlink("/nowhere", os.path.join(out, "dangling"))
os.mkfifo(os.path.join(out, "fifo"))
os.mkdir(os.path.join(out, "sub"))
"""


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_manifest_reports_kinds_sizes_hashes_and_freshness(procs: Procs, tmp_path: Path) -> None:
    """Every entry of a real build's output is listed with the right kind, size, hash and age."""
    out = tmp_path / "_output" / "bin"
    out.mkdir(parents=True)
    (out / "ancient").write_text("old")
    subprocess.run(["touch", "-d", "2001-01-01", str(out / "ancient")], check=True)
    (out / "stale").write_text("left by an earlier attempt")
    build = [sys.executable, "-c", MAKE_ARTIFACTS, str(out)]
    assert procs.run(guarded(build, workdir=str(tmp_path), attempt="r1-1")).returncode == 0
    done = procs.run(manifest(str(out), str(tmp_path), "r1-1", 1000, 100))
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    got = {e.name: e for e in parse_manifest(done.stdout)}
    files = {
        "a b": b"hello\n",
        "tab\there": b"x",
        "new\nline": b"",
        "-dash": b"d",
        ".hidden": b"h",
        os.fsdecode(b"\xffraw"): b"r",
        "edge": b"e" * 1000,
    }
    for name, data in files.items():
        assert got.pop(name) == ManifestEntry("f", len(data), _sha(data), True, name)
    assert got.pop("big") == ManifestEntry("f", 2000, None, True, "big")
    assert got.pop("ancient") == ManifestEntry("f", 3, _sha(b"old"), False, "ancient")
    assert got.pop("stale").fresh is False
    assert got.pop("link") == ManifestEntry("l", None, None, True, "link")
    assert got.pop("dangling").kind == "l"
    assert got.pop("fifo") == ManifestEntry("o", None, None, True, "fifo")
    assert got.pop("sub") == ManifestEntry("d", None, None, True, "sub")
    assert got == {}


def test_manifest_without_start_marker_marks_nothing_fresh(procs: Procs, tmp_path: Path) -> None:
    """Without the attempt's start marker no entry is called fresh."""
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "bin").write_text("new")
    done = procs.run(manifest(str(tmp_path / "out"), str(tmp_path), "r9-9", 10, 100))
    assert parse_manifest(done.stdout) == [ManifestEntry("f", 3, _sha(b"new"), False, "bin")]


def test_manifest_empty_and_missing_dirs(procs: Procs, tmp_path: Path) -> None:
    """An empty directory lists nothing; a missing one exits 96."""
    (tmp_path / "empty").mkdir()
    done = procs.run(manifest(str(tmp_path / "empty"), str(tmp_path), "r1-1", 10, 100))
    assert (done.returncode, done.stdout) == (0, "")
    missing = procs.run(manifest(str(tmp_path / "nope"), str(tmp_path), "r1-1", 10, 100))
    assert missing.returncode == EXIT_NO_ARTIFACTS
    assert missing.stdout == ""


def test_manifest_relative_paths_resolve_from_the_login_dir(tmp_path: Path) -> None:
    """Relative artifacts and workdir paths are both taken from where the script starts."""
    (tmp_path / "w" / ".kdist" / "attempts").mkdir(parents=True)
    (tmp_path / "w" / ".kdist" / "attempts" / "r1-1.start").write_text("")
    time.sleep(0.05)
    (tmp_path / "w" / "out").mkdir()
    (tmp_path / "w" / "out" / "f").write_text("x")
    done = subprocess.run(
        ["sh", "-c", shlex.join(manifest("w/out", "w", "r1-1", 10, 100))],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=True,
    )
    assert [e.fresh for e in parse_manifest(done.stdout)] == [True]


def _line(entry: ManifestEntry) -> str:
    size = "-" if entry.size is None else str(entry.size)
    fresh = "1" if entry.fresh else "0"
    name = os.fsencode(entry.name).hex()
    return "\t".join([entry.kind, size, entry.sha256 or "-", fresh, name])


def test_parse_manifest_round_trips() -> None:
    """Entries written in the manifest format parse back to the same entries."""
    entries = [
        ManifestEntry("f", 12, _sha(b"x"), True, "kube apiserver"),
        ManifestEntry("f", 0, None, False, "tab\tand\nnewline"),
        ManifestEntry("l", None, None, False, "link"),
        ManifestEntry("d", None, None, True, "sub"),
        ManifestEntry("o", None, None, False, os.fsdecode(b"\xfe\xff")),
    ]
    text = "".join(_line(e) + "\n" for e in entries)
    assert parse_manifest(text) == entries
    assert parse_manifest("") == []


@pytest.mark.parametrize(
    "line",
    [
        "",
        "f\t1\t-\t0",
        "f\t1\t-\t0\t61\textra",
        "x\t-\t-\t0\t61",
        "f\tabc\t-\t0\t61",
        "f\t-1\t-\t0\t61",
        "f\t1\tXYZ\t0\t61",
        "f\t1\t" + "A" * 64 + "\t0\t61",
        "d\t1\t-\t0\t61",
        "l\t-\t" + "a" * 64 + "\t0\t61",
        "f\t1\t-\t2\t61",
        "f\t1\t-\t0\t6",
        "f\t1\t-\t0\tzz",
        "f\t1\t-\t0\t",
        "f\t1\t-\t0\t2f",
        "f\t1\t-\t0\t612f62",
        "f\t1\t-\t0\t2e2e",
        "f\t1\t-\t0\t2e",
        "f\t1\t-\t0\t6100",
        "f 1 - 0 61",
    ],
)
def test_parse_manifest_rejects_garbage(line: str) -> None:
    """A malformed or unsafe line is a ValueError that names the line."""
    with pytest.raises(ValueError, match="manifest line 2"):
        parse_manifest("d\t-\t-\t0\t73\n" + line + "\n")


def test_parse_manifest_rejects_duplicate_names() -> None:
    """The same name twice is a ValueError."""
    with pytest.raises(ValueError, match="duplicate"):
        parse_manifest("d\t-\t-\t0\t61\nf\t1\t-\t0\t61\n")
