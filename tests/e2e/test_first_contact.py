"""First contact end to end: the flows a release engineer tries on day one, through the CLI."""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import stat
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import jsonschema
import pytest
from elftools.elf.elffile import ELFFile

from kdist.cli import documents
from kdist.testing.devfarm import Farm
from tests.helpers import git, kdist, make_project

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def crictl(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A private copy of the generic example (kdist build writes into the source tree)."""
    return make_project("generic", tmp_path_factory.mktemp("first") / "cri-tools", "v0.9.1")


def _machine(path: Path) -> str:
    with path.open("rb") as handle:
        return str(ELFFile(handle)["e_machine"])


def test_generic_build_on_one_named_host(farm: Farm, crictl: Path) -> None:
    """`kdist build --platform linux/arm64 --host h2` puts verified arm64 binaries in artifacts."""
    ran = kdist(
        "build", "--source", crictl, "--hosts", farm.inventory_path,
        "--platform", "linux/arm64", "--host", "h2",
    )  # fmt: skip
    assert ran.code == 0, ran.stderr + ran.stdout
    folder = crictl / "build/bin/linux/arm64"
    assert sorted(p.name for p in folder.iterdir()) == ["crictl", "critest"]
    for binary in folder.iterdir():
        assert _machine(binary) == "EM_AARCH64"
        assert stat.S_IMODE(binary.stat().st_mode) == 0o755
    assert "[h2 linux/arm64] ok" in ran.stdout
    log = (crictl / "_output/logs/linux-arm64.log").read_text()
    assert "Building crictl v0.9.1 for linux/arm64" in log
    assert "bashrc" not in log and "unbound variable" not in log  # a clean remote environment


def test_build_what_builds_only_the_named_target(farm: Farm, crictl: Path) -> None:
    """`kdist build crictl` runs the profile's build_what: only crictl comes back."""
    ran = kdist(
        "build", "crictl", "--source", crictl, "--hosts", farm.inventory_path,
        "--platform", "linux/arm64", "--host", "h2", "--json",
    )  # fmt: skip
    assert ran.code == 0, ran.stderr + ran.stdout
    assert sorted(p.name for p in (crictl / "build/bin/linux/arm64").iterdir()) == ["crictl"]
    (built,) = ran.json["slices"]
    assert [a["path"] for a in built["artifacts"]] == ["build/bin/linux/arm64/crictl"]


def test_build_what_without_build_what_exits_2(farm: Farm, tmp_path: Path) -> None:
    """A profile without build_what refuses WHAT with exit 2, before anything is built."""
    source = make_project("generic", tmp_path / "cri-tools", "v0.9.1")
    profile = source / "kdist.yaml"
    profile.write_text(
        "".join(ln for ln in profile.read_text().splitlines(True) if "build_what" not in ln)
    )
    ran = kdist(
        "build", "crictl", "--source", source, "--hosts", farm.inventory_path,
        "--platform", "linux/arm64", "--host", "h2",
    )  # fmt: skip
    assert ran.code == 2, ran.stderr + ran.stdout
    assert "build_what: not set" in ran.stderr
    assert not (source / "_output").exists()
    assert not (source / "build").exists()


STAMPED = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z ")


def test_compile_error_reaches_stdout_with_the_log_path(farm: Farm, tmp_path: Path) -> None:
    """A compile error shows the compiler's line, the class and the log path on stdout."""
    source = make_project("generic", tmp_path / "cri-tools", "v0.9.1")
    main = source / "cmd/crictl/main.go"
    main.write_text(
        main.read_text().replace("func main() {", 'var broken int = "x"\n\nfunc main() {')
    )
    ran = kdist(
        "build", "crictl", "--source", source, "--hosts", farm.inventory_path,
        "--platform", "linux/amd64", "--host", "h1",
    )  # fmt: skip
    assert ran.code == 1, ran.stderr + ran.stdout
    log = source / "_output/logs/linux-amd64.log"
    assert "FAILED linux/amd64 on h1: build failure in build" in ran.stdout
    assert f"log: {log}" in ran.stdout
    assert re.search(r"\| cmd/crictl/main\.go:\d+:\d+: cannot use \"x\"", ran.stdout), ran.stdout
    lines = log.read_text().splitlines()
    assert lines and all(STAMPED.match(line) for line in lines)


def test_no_rule_to_make_target_reaches_stdout(farm: Farm, tmp_path: Path) -> None:
    """make's "No rule to make target" is on stdout and in --json's log_tail, with the log path."""
    source = make_project("generic", tmp_path / "cri-tools", "v0.9.1")
    ran = kdist(
        "build", "nosuchtool", "--source", source, "--hosts", farm.inventory_path,
        "--platform", "linux/amd64", "--host", "h1",
    )  # fmt: skip
    assert ran.code == 1, ran.stderr + ran.stdout
    assert "No rule to make target 'nosuchtool'" in ran.stdout
    assert f"log: {source / '_output/logs/linux-amd64.log'}" in ran.stdout
    doc = kdist(
        "build", "nosuchtool", "--source", source, "--hosts", farm.inventory_path,
        "--platform", "linux/amd64", "--host", "h1", "--json",
    ).json  # fmt: skip
    (failed,) = doc["slices"]
    assert any("No rule to make target 'nosuchtool'" in ln for ln in failed["log_tail"])


def _schema() -> jsonschema.Draft202012Validator:
    return jsonschema.Draft202012Validator(json.loads(documents.SCHEMA.read_text()))


@dataclass
class Screen:
    """A kdist run in a terminal (tmux): its exit code and what the screen showed as it ran."""

    code: int
    frames: list[str]  # each distinct screen seen while it ran
    final: str  # the whole terminal at the end, scrollback included


def under_tmux(args: list[str | Path], timeout: float = 600) -> Screen:
    """Run the kdist CLI in a private tmux server's 200x50 terminal, capturing as it goes."""
    server = ["tmux", "-L", f"kdist-test-{os.getpid()}", "-f", "/dev/null"]
    command = shlex.join([sys.executable, "-m", "kdist", *map(str, args)])
    script = f"{command}; echo {EXIT_MARK}$?; sleep 3600"
    # The terminal's size, also for programs that read it from the environment (rich does).
    env = {**os.environ, "COLUMNS": "200", "LINES": "50"}
    subprocess.run([*server, "new-session", "-d", "-s", "run", "-x", "200", "-y", "50", script],
                   check=True, env=env)  # fmt: skip
    frames: list[str] = []
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            shown = subprocess.run([*server, "capture-pane", "-p", "-t", "run"],
                                   capture_output=True, text=True, check=True).stdout  # fmt: skip
            if not frames or shown != frames[-1]:
                frames.append(shown)
            if EXIT_MARK in shown:
                break
            time.sleep(0.3)
        final = subprocess.run([*server, "capture-pane", "-p", "-S", "-", "-t", "run"],
                               capture_output=True, text=True, check=True).stdout  # fmt: skip
    finally:
        subprocess.run([*server, "kill-server"], check=False)
    found = re.search(rf"{EXIT_MARK}(\d+)", final)
    return Screen(int(found.group(1)) if found else -1, frames, final)


EXIT_MARK = "KDIST-EXIT="


@pytest.fixture(scope="module")
def traced(farm: Farm, tmp_path_factory: pytest.TempPathFactory) -> tuple[Screen, Path, Path]:
    """A generic release (2 platforms, 2 hosts, unit tests, --timeline) watched in tmux."""
    source = make_project("generic", tmp_path_factory.mktemp("traced") / "cri-tools", "v0.9.1")
    with (source / "kdist.yaml").open("a") as profile:
        profile.write("test: make test\n")
    git(source, "commit", "-q", "-a", "-m", "unit tests")
    git(source, "tag", "v0.9.2")
    timeline = source.parent / "timeline.json"
    screen = under_tmux([
        "release", "--source", source, "--hosts", farm.inventory_path,
        "--platforms", "linux/amd64,linux/arm64", "--timeline", timeline,
    ])  # fmt: skip
    return screen, source, timeline


def test_live_view_orients_from_start_to_end(traced: tuple[Screen, Path, Path]) -> None:
    """Under tmux: header, done/total with elapsed, phases per slice, then where results are."""
    screen, source, timeline = traced
    assert screen.code == 0, screen.final
    head = "kdist release cri-tools v0.9.2 · run "
    hosts = "· 2 hosts: h1 h2 · 2 platforms: linux/amd64 linux/arm64"
    live = [f for f in screen.frames if head in f and hosts in f]
    assert live, screen.frames[-1]
    assert any(re.search(r"0/2 done · elapsed \d:\d\d:\d\d · ETA", f) for f in live)
    assert any(re.search(r"linux/amd64 │ h1 +│ +1 │ (sync|build)", f) for f in live)
    assert re.search(r"2/2 done · elapsed \d:\d\d:\d\d", screen.final)
    out = source / "_output"
    for line in (
        f"tarballs: {out}/release-tars (2 files, SHA256SUMS)",
        f"logs:     {out}/logs",
        f"json:     {out}/logs/run.json",
        f"timeline: {timeline}",
        "release ok: v0.9.2",
    ):
        assert line in screen.final, screen.final
    assert "Traceback" not in screen.final


def test_timeline_has_one_complete_span_per_phase_per_slice(
    traced: tuple[Screen, Path, Path],
) -> None:
    """--timeline: connect/lock/sync per host, build/pull/package per slice, tests, publish."""
    screen, _, timeline = traced
    assert screen.code == 0, screen.final
    doc = json.loads(timeline.read_text())
    spans = [e for e in doc["traceEvents"] if e["ph"] == "X"]
    assert all(e["dur"] > 0 and e["ts"] >= 0 and e["args"]["ok"] for e in spans)
    per_slice = Counter((e["name"], e["args"]["slice"]) for e in spans if e["args"]["slice"])
    assert per_slice == {
        (phase, key): 1
        for phase in ("build", "pull", "package")
        for key in ("linux-amd64", "linux-arm64")
    }
    per_host = Counter((e["name"], e["args"]["host"]) for e in spans if not e["args"]["slice"])
    for phase in ("connect", "lock", "sync"):
        assert per_host[(phase, "h1")] == per_host[(phase, "h2")] == 1
    assert sum(n for (phase, _), n in per_host.items() if phase == "tests") == 1
    assert per_host[("publish", "this machine (head node)")] == 1
    rows = {e["pid"]: e["args"]["name"] for e in doc["traceEvents"] if e["name"] == "process_name"}
    builds = {e["args"]["slice"]: rows[e["pid"]] for e in spans if e["name"] == "build"}
    assert builds == {"linux-amd64": "h1", "linux-arm64": "h2"}


def test_run_documents_follow_the_schema(farm: Farm, traced: tuple[Screen, Path, Path]) -> None:
    """The release's OUTPUT/logs/run.json, a failed build's and a plan's --json are schema-valid."""
    _, source, timeline = traced
    validator = _schema()
    written = json.loads((source / "_output/logs/run.json").read_text())
    validator.validate(written)
    assert written["command"] == "release"
    assert written["timeline"] == str(timeline)
    failed = kdist(
        "build", "nosuchtool", "--source", source, "--hosts", farm.inventory_path,
        "--platform", "linux/amd64", "--host", "h1", "--json",
    )  # fmt: skip
    validator.validate(failed.json)
    assert (failed.json["exit_status"], failed.json["exit_class"]) == (1, "build_failed")
    plan = kdist("release", "-n", "--json", "--source", source, "--hosts", farm.inventory_path)
    validator.validate(plan.json)
    assert plan.json["kind"] == "plan"


def test_ctrl_c_during_sync_says_per_host_what_stopped(farm: Farm, tmp_path: Path) -> None:
    """SIGINT while the tree syncs: one line per host, 'interrupted', exit 130, no traceback."""
    source = make_project("generic", tmp_path / "cri-tools", "v0.9.1")
    (source / "blob.bin").write_bytes(os.urandom(32 << 20))  # keeps rsync busy for a while
    profile = source / "kdist.yaml"  # a build that waits: a host done syncing is not done at all
    profile.write_text(profile.read_text().replace(
        "build: make binaries", "build: sh -c 'sleep 60; exec \"$@\"' build make binaries"
    ))  # fmt: skip
    proc = subprocess.Popen(
        [sys.executable, "-m", "kdist", "release", "--source", str(source), "--hosts",
         str(farm.inventory_path), "--platforms", "linux/amd64,linux/arm64", "--skip-tests"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert proc.stdout is not None
    seen = ""
    while "] sync" not in seen:
        line = proc.stdout.readline()
        assert line, "kdist ended before syncing"
        seen += line
    proc.send_signal(signal.SIGINT)
    rest, err = proc.communicate(timeout=120)
    seen += rest
    assert proc.returncode == 130, err
    lines = err.splitlines()
    assert lines[0].startswith("kdist: stopping remote builds")
    assert sorted(ln.split(":")[1].strip() for ln in lines[1:-1]) == ["h1", "h2"], err + seen
    assert all(": stopped " in ln for ln in lines[1:-1]), err
    assert any("syncing" in ln or "build of" in ln for ln in lines[1:-1]), err
    assert lines[-1] == "kdist: interrupted"


def _bad_inventory(farm: Farm, tmp: Path) -> Path:
    path = tmp / "hosts.yaml"
    path.write_text(farm.inventory_path.read_text().replace("    workdir:", "    wrokdir:", 1))
    return path


def _no_known_hosts(farm: Farm, tmp: Path) -> Path:
    path = tmp / "hosts.yaml"
    text = farm.inventory_path.read_text()
    path.write_text(re.sub(r"known_hosts: .*", f'known_hosts: "{tmp}/none"', text))
    return path


PREFLIGHT = {  # how the project or inventory is broken -> what the one line must say
    "inventory": "hosts.yaml: hosts.h1.wrokdir: unknown key",
    "known_hosts": "none does not exist (needed by h1, h2, h3)",
    "profile": "kdist.yaml: tset: unknown key",
    "makefile": "kdist.yaml: build: `make` needs a Makefile in",
    "version": "version 'v1.2' is not valid semver",
    "output": "--output",
    "timeline": "--timeline",
}


@pytest.mark.parametrize("case", sorted(PREFLIGHT))
def test_each_preflight_problem_is_one_line_exit_2_nothing_written(
    farm: Farm, tmp_path: Path, case: str
) -> None:
    """Before any login, with and without -n: one line naming file/key/host, exit 2, no output."""
    source = make_project(
        "generic", tmp_path / "cri-tools", "v1.2" if case == "version" else "v0.9.1"
    )
    hosts = farm.inventory_path
    extra: list[str | Path] = []
    if case == "inventory":
        hosts = _bad_inventory(farm, tmp_path)
    elif case == "known_hosts":
        hosts = _no_known_hosts(farm, tmp_path)
    elif case == "profile":
        (source / "kdist.yaml").write_text(
            (source / "kdist.yaml").read_text() + "tset: make test\n"
        )
    elif case == "makefile":
        (source / "Makefile").unlink()
    elif case == "output":
        (tmp_path / "out").write_text("a file")
        extra = ["--output", tmp_path / "out"]
    elif case == "timeline":
        extra = ["--timeline", tmp_path / "no/such/folder/trace.json"]
    before = {h.name: farm.accepted_logins(h.name) for h in farm.hosts}
    for dry in ([], ["-n"]):
        ran = kdist("release", *dry, "--source", source, "--hosts", hosts, *extra)
        assert ran.code == 2, ran.stderr + ran.stdout
        lines = ran.stderr.splitlines()
        assert len(lines) == 1 and lines[0].startswith("kdist: error: "), ran.stderr
        assert PREFLIGHT[case] in lines[0]
    assert not (source / "_output").exists()
    assert {h.name: farm.accepted_logins(h.name) for h in farm.hosts} == before


def test_every_preflight_problem_is_reported_at_once(farm: Farm, tmp_path: Path) -> None:
    """Three problems, three lines (and a JSON error document that follows the schema)."""
    source = make_project("generic", tmp_path / "cri-tools", "v1.2")
    (source / "Makefile").unlink()
    hosts = _no_known_hosts(farm, tmp_path)
    ran = kdist("release", "-n", "--json", "--source", source, "--hosts", hosts)
    assert ran.code == 2
    assert len(ran.stderr.splitlines()) == 3, ran.stderr
    _schema().validate(ran.json)
    assert (ran.json["kind"], ran.json["exit_class"]) == ("error", "config_error")
    assert len(ran.json["problems"]) == 3
