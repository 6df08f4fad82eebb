"""Faults made for real on the sshd farm: dead hosts, silent hosts, hostile outputs, no-op reruns."""

from __future__ import annotations

import json
import os
import socket
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from kdist.testing.devfarm import DEFAULT_PORT, Farm
from tests.helpers import SCRATCH_IMAGES, kdist, make_project, release

pytestmark = pytest.mark.e2e

FOUR = "linux/amd64,linux/arm64,linux/s390x,windows/amd64"


@pytest.fixture
def fault_farm(tmp_path: Path, gocache: Path) -> Iterator[Farm]:
    """A private 3-host farm a test may break (h1 amd64, h2 arm64, h3 s390x)."""
    with Farm(tmp_path / "farm", 3, first_address=61, gocache=gocache) as running:
        yield running


def _no_leftovers(out: Path) -> None:
    """Invariant: no staging folder, temp file or partial release is left in the output."""
    leftovers = [
        p
        for p in out.rglob("*")
        if p.name.startswith((".kdist-", ".release-tars")) or p.name.endswith((".tmp", ".old"))
    ]
    assert leftovers == []


def _host_processes(farm: Farm, name: str) -> list[str]:
    """Command lines of live processes working in a farm host's workdir."""
    workdir = str(farm.host(name).workdir)
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmd = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            cwd = os.readlink(proc / "cwd")
        except OSError:
            continue
        if workdir in cmd or cwd.startswith(workdir):
            found.append(cmd)
    return found


def _wait_for(predicate, timeout: float, what: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def test_host_killed_mid_build_release_still_completes(
    fault_farm: Farm, k8s_source: Path, tmp_path: Path
) -> None:
    """With one of 3 hosts killed mid-build, a 4-platform release completes and publishes all 4."""
    out = tmp_path / "out"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "kdist",
            "release",
            "--hosts",
            str(fault_farm.inventory_path),
            "--source",
            str(k8s_source),
            "--output",
            str(out),
            "--platforms",
            FOUR,
            "--skip-tests",
            "--json",
            "--rebuild",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    log = out / "logs" / "linux-arm64.log"
    _wait_for(lambda: log.exists() and "$ make" in log.read_text(), 120, "h2 to start building")
    time.sleep(1.0)
    fault_farm.stop_host("h2")
    stdout, stderr = proc.communicate(timeout=600)
    assert proc.returncode == 0, stderr + stdout[-3000:]
    doc = json.loads(stdout)
    slices = {s["platform"]: s for s in doc["slices"]}
    assert all(s["status"] == "ok" for s in slices.values())
    assert slices["linux/arm64"]["host"] != "h2"
    assert slices["linux/arm64"]["attempts"] == 2
    names = {t["name"] for t in doc["tarballs"]}
    for platform in ("linux-amd64", "linux-arm64", "linux-s390x", "windows-amd64"):
        assert f"kubernetes-client-{platform}.tar.gz" in names
    assert any("h2 left out" in n for n in stderr.splitlines() + doc["notes"]) or "h2" in stderr
    _no_leftovers(out)
    assert _host_processes(fault_farm, "h2") == []


def test_second_release_of_unchanged_tree_builds_nothing(
    farm: Farm, k8s_source: Path, tmp_path: Path
) -> None:
    """A release of an unchanged tree reuses the journal: no SSH login, no build, no re-packing."""
    out = tmp_path / "out"
    args = (
        "release",
        "--hosts",
        farm.inventory_path,
        "--source",
        k8s_source,
        "--output",
        out,
        "--platforms",
        "linux/amd64,linux/arm64,linux/s390x",
        "--skip-tests",
        "--json",
    )
    start = time.monotonic()
    first = kdist(*args)
    first_took = time.monotonic() - start
    assert first.code == 0, first.stderr
    logins = {h.name: farm.accepted_logins(h.name) for h in farm.hosts}
    start = time.monotonic()
    second = kdist(*args)
    second_took = time.monotonic() - start
    assert second.code == 0, second.stderr
    assert all(s["reused"] for s in second.json["slices"])
    assert {h.name: farm.accepted_logins(h.name) for h in farm.hosts} == logins
    assert (out / "release-tars/SHA256SUMS").read_text() == (
        out / "release-tars/SHA256SUMS"
    ).read_text()
    assert [t["sha256"] for t in second.json["tarballs"]] == [
        t["sha256"] for t in first.json["tarballs"]
    ]
    # The speed target (< 1/5 of the first run) is measured by scripts/bench-noop; here the
    # structural facts that make it true: nothing rebuilt, nothing connected, nothing re-packed.
    print(f"first release {first_took:.1f}s, unchanged re-release {second_took:.1f}s")
    assert "nothing changed since the last release" in " ".join(second.json["notes"])


def test_changed_source_rebuilds_and_resume_fills_only_the_gap(farm: Farm, tmp_path: Path) -> None:
    """After a failed slice, a re-release rebuilds only that slice; a source change rebuilds all."""
    source = make_project("kubernetes", tmp_path / "kubernetes")
    out = tmp_path / "out"
    broken = tmp_path / "inventory.yaml"
    broken.write_text(
        farm.inventory_path.read_text().replace("  h2:\n", '  h2:\n    env: {GOFLAGS: "-nope"}\n')
    )
    args = (
        "--source",
        source,
        "--output",
        out,
        "--platforms",
        "linux/amd64,linux/arm64",
        "--skip-tests",
        "--json",
    )
    failed = kdist("release", "--hosts", broken, *args)
    assert failed.code == 1
    resumed = kdist("release", "--hosts", farm.inventory_path, "--resume", *args)
    assert resumed.code == 0, resumed.stderr
    reused = {s["platform"]: s["reused"] for s in resumed.json["slices"]}
    assert reused == {"linux/amd64": True, "linux/arm64": False}
    (source / "cmd/kubectl/extra.go").write_text("package main\n")
    changed = kdist("release", "--hosts", farm.inventory_path, *args)
    assert changed.code == 0, changed.stderr
    assert not any(s["reused"] for s in changed.json["slices"])


def _with_ppc64le_host(farm: Farm, tmp_path: Path, name: str, address: str) -> Path:
    """The farm's inventory plus one more host, the only native linux/ppc64le one."""
    inventory = tmp_path / "inventory.yaml"
    inventory.write_text(
        farm.inventory_path.read_text()
        + f'  {name}:\n    address: "{address}"\n    platforms: ["linux/ppc64le"]\n'
        + f'    workdir: "{tmp_path}/{name}"\n'
    )
    return inventory


class SilentListener:
    """A TCP listener that accepts connections and never says a word (no SSH banner)."""

    def __init__(self, address: str, port: int) -> None:
        self.sock = socket.create_server((address, port))
        self.conns: list[socket.socket] = []
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.conns.append(conn)

    def close(self) -> None:
        """Stop listening and drop every accepted connection."""
        self.sock.close()
        for conn in self.conns:
            conn.close()


def test_silent_host_is_left_out_within_the_connect_timeout(
    farm: Farm, k8s_source: Path, tmp_path: Path
) -> None:
    """A host that accepts TCP but never speaks SSH is left out after the connect timeout; others build."""
    listener = SilentListener("127.0.0.58", DEFAULT_PORT)
    try:
        inventory = _with_ppc64le_host(farm, tmp_path, "silent", "127.0.0.58")
        start = time.monotonic()
        ran = release(
            k8s_source,
            "--connect-timeout",
            "3",
            hosts=inventory,
            out=tmp_path / "out",
            platforms="linux/ppc64le,linux/amd64",
        )
        took = time.monotonic() - start
    finally:
        listener.close()
    assert ran.code == 0, ran.stderr + ran.stdout[-2000:]
    ppc = next(s for s in ran.json["slices"] if s["platform"] == "linux/ppc64le")
    assert ppc["host"] != "silent" and ppc["attempts"] == 2
    assert took < 120
    assert "no SSH answer within 3s" in ran.stderr + json.dumps(ran.json)


def _hostile_profile(tmp_path: Path, action: str) -> Path:
    # The real build runs, then `action` tampers with the output the way a hostile host could.
    profile = tmp_path / "hostile.yaml"
    profile.write_text(
        "layout: kubernetes\n"
        f"build: sh -c 'make cross KUBE_BUILD_PLATFORMS=$0 && cd _output/local/bin/$0 && {action}' {{platform}}\n"
        + SCRATCH_IMAGES
    )
    return profile


@pytest.mark.parametrize(
    ("action", "code", "needle"),
    [
        ("rm kubectl && ln -s /etc/passwd kubectl", 4, "'kubectl' is a symlink; refused"),
        ("rm kubectl && mkfifo kubectl", 4, "'kubectl' is not a regular file; refused"),
        ("ln -s ../../../../../../../../etc ../escape", 0, ""),
        ("cp /bin/ls kubectl", 4, "kubectl is a linux/amd64 binary"),
        ("touch -d 2001-01-01 kubectl", 4, "'kubectl' was not rebuilt by this attempt"),
    ],
)
def test_hostile_outputs_are_refused(
    farm: Farm, k8s_source: Path, tmp_path: Path, action: str, code: int, needle: str
) -> None:
    """A symlink to /etc/passwd, a FIFO or a wrong-architecture binary never reaches the output."""
    out = tmp_path / "out"
    ran = release(
        k8s_source,
        "--profile",
        _hostile_profile(tmp_path, action),
        hosts=farm.inventory_path,
        out=out,
        platforms="linux/386",  # client binaries only: the cheapest platform that has a kubectl
    )
    assert ran.code == code, ran.stderr
    slc = ran.json["slices"][0]
    assert needle in slc["error"]
    if code == 0:  # a link outside the artifacts folder is never followed or pulled
        assert not (out / "escape").exists() and not (out / "dockerized/bin/escape").exists()
        assert sorted(p.name for p in (out / "dockerized/bin/linux").iterdir()) == ["386"]
    else:
        assert not (out / "dockerized/bin/linux/386").exists()
        assert not (out / "release-tars").exists()
    passwd = Path("/etc/passwd").read_bytes()
    for path in out.rglob("*"):
        if path.is_file() and not path.is_symlink():
            assert passwd not in path.read_bytes(), path
    _no_leftovers(out)


def test_setuid_artifacts_are_refused_and_the_honest_platform_kept(
    farm: Farm, k8s_source: Path, tmp_path: Path
) -> None:
    """A host that sets setuid/setgid bits is refused (exit 4); no such bit lands anywhere."""
    out = tmp_path / "out"
    tamper = "case $0 in linux/386) chmod 4755 kubectl && chmod 2755 kubectl-convert;; esac"
    ran = release(
        k8s_source,
        "--profile",
        _hostile_profile(tmp_path, tamper),
        hosts=farm.inventory_path,
        out=out,
        platforms="linux/386,windows/386",
    )
    assert ran.code == 4, ran.stderr
    by_platform = {s["platform"]: s for s in ran.json["slices"]}
    hostile, honest = by_platform["linux/386"], by_platform["windows/386"]
    assert hostile["status"] == "integrity"
    assert f"{hostile['host']}: linux/386: 'kubectl' has mode -rwsr-xr-x" in hostile["error"]
    assert honest["status"] == "ok"
    kept = out / "dockerized/bin/windows/386"
    assert sorted(p.name for p in kept.iterdir()) == ["kubectl-convert.exe", "kubectl.exe"]
    assert {stat.S_IMODE(p.stat().st_mode) for p in kept.iterdir()} == {0o755}
    special = stat.S_ISUID | stat.S_ISGID | stat.S_ISVTX
    flagged = [p for p in out.rglob("*") if p.lstat().st_mode & special]
    assert flagged == []
    assert not (out / "dockerized/bin/linux/386").exists()
    assert not (out / "release-tars").exists()
    _no_leftovers(out)


def test_changed_host_key_is_refused_and_the_host_left_out(
    tmp_path: Path, gocache: Path, k8s_source: Path
) -> None:
    """A host whose key changed is never used (rsync included); its platform moves to another host."""
    with Farm(tmp_path / "farm", 2, first_address=66, gocache=gocache) as farm:
        farm.rekey_host("h2")
        ran = release(
            k8s_source, hosts=farm.inventory_path, out=tmp_path / "out", platforms="linux/arm64"
        )
        assert ran.code == 0, ran.stderr
        slc = ran.json["slices"][0]
        assert slc["host"] == "h1" and slc["attempts"] == 2
        assert farm.accepted_logins("h2") == 0
        assert "host key refused: it offered ssh-ed25519 SHA256:" in json.dumps(ran.json)


def _hang_profile(tmp_path: Path, marker: str, trap_term: bool = False) -> Path:
    # A build that prints one line and then hangs; `marker` finds its processes in /proc.
    trap = "trap '' TERM; " if trap_term else ""
    profile = tmp_path / "hang.yaml"
    profile.write_text(
        "layout: kubernetes\n"
        f"build: sh -c '{trap}echo started {marker}; sleep 600; echo {marker}' {{platform}}\n"
        + SCRATCH_IMAGES
    )
    return profile


def _processes_with(marker: str) -> list[str]:
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmd = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            state = (proc / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            continue
        if marker in cmd and state != "Z" and str(os.getpid()) != proc.name:
            found.append(cmd)
    return found


def test_silent_build_is_stopped_by_the_idle_timeout(
    farm: Farm, k8s_source: Path, tmp_path: Path
) -> None:
    """A build that prints one line then hangs is stopped after --idle-timeout; nothing is left running."""
    marker = f"kdist-hang-{os.getpid()}-idle"
    start = time.monotonic()
    ran = release(
        k8s_source,
        "--profile",
        _hang_profile(tmp_path, marker),
        "--idle-timeout",
        "4",
        "--attempts",
        "2",
        hosts=farm.inventory_path,
        out=tmp_path / "out",
        platforms="linux/arm64",
    )
    took = time.monotonic() - start
    assert ran.code == 3, ran.stderr
    slc = ran.json["slices"][0]
    assert "no output for 4s" in slc["error"] and slc["attempts"] == 2
    assert took < 60
    _wait_for(lambda: not _processes_with(marker), 15, "the hung builds to be gone")
    _no_leftovers(tmp_path / "out")


def _start_release(
    farm: Farm, source: Path, out: Path, *extra: str | Path
) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "kdist",
            "release",
            "--hosts",
            str(farm.inventory_path),
            "--source",
            str(source),
            "--output",
            str(out),
            "--skip-tests",
            *map(str, extra),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


@pytest.mark.parametrize("twice", [False, True])
def test_interrupt_stops_every_remote_build(
    farm: Farm, k8s_source: Path, tmp_path: Path, twice: bool
) -> None:
    """SIGINT to kdist kills the builds on the hosts (a second one without grace) and exits 130."""
    marker = f"kdist-hang-{os.getpid()}-int-{twice}"
    out = tmp_path / "out"
    (out / "release-tars").mkdir(parents=True)
    (out / "release-tars/previous").write_text("kept")
    proc = _start_release(
        farm,
        k8s_source,
        out,
        "--profile",
        _hang_profile(tmp_path, marker, twice),
        "--platforms",
        "linux/amd64,linux/arm64",
    )
    _wait_for(lambda: len(_processes_with(marker)) >= 2, 60, "both builds to start")
    start = time.monotonic()
    proc.send_signal(2)
    if twice:
        time.sleep(1)
        proc.send_signal(2)
    _, stderr = proc.communicate(timeout=60)
    took = time.monotonic() - start
    assert proc.returncode == 130, stderr
    assert _processes_with(marker) == []
    assert took < (8 if twice else 20)  # the TERM-ignoring build needed the second Ctrl-C
    assert sorted(p.name for p in (out / "release-tars").iterdir()) == ["previous"]
    _no_leftovers(out)


def test_two_releases_at_once_on_one_host(farm: Farm, k8s_source: Path, tmp_path: Path) -> None:
    """While one run builds in a host's workdir, a second run waits --lock-wait and reports it busy."""
    marker = f"kdist-hang-{os.getpid()}-lock"
    first = _start_release(
        farm,
        k8s_source,
        tmp_path / "one",
        "--profile",
        _hang_profile(tmp_path, marker),
        "--platforms",
        "linux/s390x",
        "--host",
        "h3",
    )
    try:
        _wait_for(lambda: _processes_with(marker), 60, "the first build to start")
        start = time.monotonic()
        second = release(
            k8s_source,
            "--host",
            "h3",
            "--lock-wait",
            "2",
            hosts=farm.inventory_path,
            out=tmp_path / "two",
            platforms="linux/s390x",
        )
        took = time.monotonic() - start
        assert second.code == 3, second.stderr
        assert "busy" in second.json["slices"][0]["error"]
        assert took < 30
    finally:
        first.send_signal(2)
        first.communicate(timeout=60)
    after = kdist(
        "build",
        "--hosts",
        farm.inventory_path,
        "--source",
        k8s_source,
        "--platform",
        "linux/s390x",
        "--host",
        "h3",
        "cmd/kubectl",
        "--lock-wait",
        "5",
    )
    assert after.code == 0, after.stderr  # the lock of the interrupted run was released


def test_disk_full_host_moves_its_slice(farm: Farm, k8s_source: Path, tmp_path: Path) -> None:
    """A host whose workdir hits ENOSPC is an infrastructure failure: the slice moves to another host."""
    small = tmp_path / "small"
    small.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(small)], check=True)
    try:
        text = farm.inventory_path.read_text()
        text = text.replace(f'workdir: "{farm.host("h2").workdir}"', f'workdir: "{small}"')
        inventory = tmp_path / "inventory.yaml"
        inventory.write_text(text)
        ran = release(
            k8s_source, "--rebuild", hosts=inventory, out=tmp_path / "out", platforms="linux/arm64"
        )
    finally:
        subprocess.run(["umount", "-l", str(small)], check=False)
    assert ran.code == 0, ran.stderr + ran.stdout[-2000:]
    slc = ran.json["slices"][0]
    assert slc["host"] != "h2" and slc["attempts"] == 2
    assert any(
        "h2" in n and ("ENOSPC" in n or "disk" in n or "sync" in n) for n in ran.json["notes"]
    ), ran.json["notes"]


def test_read_only_output_fails_before_any_login(
    farm: Farm, k8s_source: Path, tmp_path: Path
) -> None:
    """A read-only --output is one preflight error (exit 2) naming it, before any SSH login."""
    out = tmp_path / "out"
    out.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(out)], check=True)
    before = {h.name: farm.accepted_logins(h.name) for h in farm.hosts}
    try:
        ran = release(
            k8s_source, hosts=farm.inventory_path, out=out, platforms="linux/386", json=False
        )
    finally:
        subprocess.run(["umount", "-l", str(out)], check=False)
    assert ran.code == 2, ran.stderr + ran.stdout[-2000:]
    assert f"--output {out}: {out} is on a read-only file system" in ran.stderr
    assert ran.stderr.count("kdist: error:") == 1
    assert {h.name: farm.accepted_logins(h.name) for h in farm.hosts} == before


@pytest.fixture
def blackhole() -> Iterator[str]:
    """An address in a network namespace behind a veth link that drops every packet."""
    ns, a, b = f"kdist-bh{os.getpid()}", f"kbh{os.getpid() % 10000}a", f"kbh{os.getpid() % 10000}b"
    steps = [
        ["ip", "netns", "add", ns],
        ["ip", "link", "add", a, "type", "veth", "peer", "name", b],
        ["ip", "link", "set", b, "netns", ns],
        ["ip", "addr", "add", "10.213.77.1/30", "dev", a],
        ["ip", "link", "set", a, "up"],
        ["ip", "netns", "exec", ns, "ip", "addr", "add", "10.213.77.2/30", "dev", b],
        ["ip", "netns", "exec", ns, "ip", "link", "set", b, "up"],
        # Frames go to a MAC address nobody has: every packet is silently dropped on the link.
        # (tc netem loss 100% does the same where the kernel has sch_netem; this one may not.)
        [
            "ip",
            "neigh",
            "replace",
            "10.213.77.2",
            "lladdr",
            "02:00:5e:00:53:01",
            "dev",
            a,
            "nud",
            "permanent",
        ],
    ]
    try:
        for step in steps:
            subprocess.run(step, check=True, capture_output=True)
        yield "10.213.77.2"
    finally:
        subprocess.run(["ip", "link", "del", a], check=False, capture_output=True)
        subprocess.run(["ip", "netns", "del", ns], check=False, capture_output=True)


def test_host_behind_a_dropping_link_is_left_out(
    farm: Farm, k8s_source: Path, tmp_path: Path, blackhole: str
) -> None:
    """A host whose link drops everything is given up after the connect timeout; the others build."""
    inventory = _with_ppc64le_host(farm, tmp_path, "dropped", blackhole)
    start = time.monotonic()
    ran = release(
        k8s_source,
        "--connect-timeout",
        "3",
        hosts=inventory,
        out=tmp_path / "out",
        platforms="linux/ppc64le",
    )
    took = time.monotonic() - start
    assert ran.code == 0, ran.stderr + ran.stdout[-2000:]
    slc = ran.json["slices"][0]
    assert slc["host"] != "dropped" and slc["attempts"] == 2
    assert "dropped" in json.dumps(ran.json["notes"])
    assert "no SSH answer within 3s" in json.dumps(ran.json["notes"])
    assert took < 90
