"""Integration tests for kdist.testing.devfarm: real sshd daemons, real ssh/rsync clients."""

from __future__ import annotations

import json
import platform
import shutil
import subprocess
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from kdist.testing.devfarm import Farm, FarmError, FarmHost

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(
        not (Path("/usr/sbin/sshd").exists() and shutil.which("ssh") and shutil.which("rsync")),
        reason="needs openssh-server, openssh-client and rsync",
    ),
]

# Stay clear of the demo farm's default 127.0.0.11.. so tests can run next to it.
FIRST = 111
REPO = Path(__file__).resolve().parents[2]


def ssh_argv(farm: Farm, host: FarmHost) -> list[str]:
    """Build a strict, non-interactive system ssh command line for ``host``."""
    return [
        "ssh",
        "-F",
        "/dev/null",
        "-i",
        str(farm.identity_path),
        "-o",
        "IdentitiesOnly=yes",
        "-o",
        f"UserKnownHostsFile={farm.known_hosts_path}",
        "-o",
        "GlobalKnownHostsFile=/dev/null",
        "-o",
        "StrictHostKeyChecking=yes",
        "-o",
        "BatchMode=yes",
        "-o",
        "ConnectTimeout=5",
        "-p",
        str(host.port),
        f"root@{host.address}",
    ]


def ssh(
    farm: Farm, host: FarmHost, *command: str, timeout: float = 30
) -> subprocess.CompletedProcess[str]:
    """Run ``command`` on ``host`` with the system ssh client."""
    return subprocess.run(
        [*ssh_argv(farm, host), *command],
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
        check=False,
    )


def farm_processes(root: Path) -> list[str]:
    """Return ``pgrep -af ROOT`` lines (sshd keeps its -f/-E paths in its proctitle)."""
    out = subprocess.run(["pgrep", "-af", str(root)], capture_output=True, text=True, check=False)
    return out.stdout.splitlines()


@pytest.fixture
def farm(tmp_path: Path) -> Iterator[Farm]:
    """Start a three-host farm and stop it afterwards."""
    with Farm(tmp_path / "farm", 3, first_address=FIRST) as started:
        yield started
    assert farm_processes(started.root) == []


def test_three_host_farm_answers_with_verified_host_keys(farm: Farm) -> None:
    """Every host of a 3-host farm answers `uname -m` with its host key checked strictly."""
    assert [h.name for h in farm.hosts] == ["h1", "h2", "h3"]
    assert [h.address for h in farm.hosts] == ["127.0.0.111", "127.0.0.112", "127.0.0.113"]
    assert [h.platforms for h in farm.hosts] == [
        ("linux/amd64",),
        ("linux/arm64",),
        ("linux/s390x",),
    ]
    known = farm.known_hosts_path.read_text().splitlines()
    assert [line.split()[:2] for line in known] == [
        [f"[{h.address}]:{farm.port}", "ssh-ed25519"] for h in farm.hosts
    ]
    for host in farm.hosts:
        result = ssh(farm, host, "uname", "-m")
        assert result.returncode == 0, result.stderr
        assert result.stdout.strip() == platform.machine()
        assert farm.is_up(host.name)


def test_rekeyed_host_is_refused_by_known_hosts(farm: Farm) -> None:
    """After rekey_host the stale known_hosts makes ssh fail with 'host identification changed'."""
    h2 = farm.host("h2")
    before = farm.known_hosts_path.read_text()
    farm.rekey_host("h2")
    assert farm.known_hosts_path.read_text() == before
    result = ssh(farm, h2, "true")
    assert result.returncode == 255
    assert "REMOTE HOST IDENTIFICATION HAS CHANGED" in result.stderr
    assert "Host key verification failed" in result.stderr
    assert farm.accepted_logins("h2") == 0
    assert ssh(farm, farm.host("h1"), "true").returncode == 0


def test_accepted_logins_counts_each_login(farm: Farm) -> None:
    """accepted_logins grows by exactly one per ssh login, per host."""
    assert [farm.accepted_logins(h.name) for h in farm.hosts] == [0, 0, 0]
    for _ in range(3):
        assert ssh(farm, farm.host("h1"), "true").returncode == 0
    assert ssh(farm, farm.host("h3"), "true").returncode == 0
    assert [farm.accepted_logins(h.name) for h in farm.hosts] == [3, 0, 1]


def test_stop_host_refuses_connections_while_others_keep_working(farm: Farm) -> None:
    """Stopping a host kills its sshd and sessions, others keep working, start_host revives it."""
    h1, h2 = farm.host("h1"), farm.host("h2")
    session = subprocess.Popen(
        [*ssh_argv(farm, h2), "sleep", "60"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 10
        while farm.accepted_logins("h2") == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        farm.stop_host("h2")
        assert session.wait(timeout=10) != 0
    finally:
        session.kill()
        session.wait()
    assert not farm.is_up("h2")
    assert not h2.pidfile.exists()
    refused = ssh(farm, h2, "true")
    assert refused.returncode == 255
    assert "Connection refused" in refused.stderr
    assert ssh(farm, h1, "true").returncode == 0
    assert ssh(farm, farm.host("h3"), "true").returncode == 0
    farm.stop_host("h2")  # idempotent
    farm.start_host("h2")
    assert ssh(farm, h2, "true").returncode == 0


def test_many_concurrent_logins_to_one_host(farm: Farm) -> None:
    """Twenty simultaneous ssh logins to one host all succeed (MaxStartups is raised)."""
    host = farm.host("h1")
    with ThreadPoolExecutor(max_workers=20) as pool:
        results = list(pool.map(lambda i: ssh(farm, host, "echo", str(i)), range(20)))
    assert [r.returncode for r in results] == [0] * 20
    assert sorted(int(r.stdout) for r in results) == list(range(20))
    assert farm.accepted_logins("h1") == 20


def test_rsync_roundtrip_through_farm(farm: Farm, tmp_path: Path) -> None:
    """Rsync via the farm's ssh copies a directory to a host's workdir and back intact."""
    host = farm.host("h3")
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    (src / "a.txt").write_text("hello farm\n")
    (src / "sub" / "b.bin").write_bytes(bytes(range(256)) * 64)
    rsh = " ".join(ssh_argv(farm, host)[:-1])  # everything but user@address
    remote = f"root@{host.address}:{host.workdir}/payload/"
    up = subprocess.run(
        ["rsync", "-a", "-e", rsh, f"{src}/", remote], capture_output=True, text=True, check=False
    )
    assert up.returncode == 0, up.stderr
    assert (host.workdir / "payload" / "sub" / "b.bin").read_bytes() == (
        src / "sub" / "b.bin"
    ).read_bytes()
    back = tmp_path / "back"
    down = subprocess.run(
        ["rsync", "-a", "-e", rsh, remote, f"{back}/"], capture_output=True, text=True, check=False
    )
    assert down.returncode == 0, down.stderr
    assert (back / "a.txt").read_text() == "hello farm\n"
    assert (back / "sub" / "b.bin").read_bytes() == (src / "sub" / "b.bin").read_bytes()


def test_inventory_is_valid_kdist_yaml(farm: Farm) -> None:
    """The inventory parses as YAML with the defaults and per-host fields kdist expects."""
    yaml = pytest.importorskip("yaml")
    inv = yaml.safe_load(farm.inventory_path.read_text())
    defaults = inv["defaults"]
    assert defaults["user"] == "root"
    assert defaults["port"] == farm.port
    assert defaults["identity_file"] == str(farm.identity_path)
    assert defaults["known_hosts"] == str(farm.known_hosts_path)
    assert defaults["capacity"] == 1
    assert defaults["env"]["PATH"].endswith("/usr/local/bin:/usr/bin:/bin")
    assert inv["hosts"]["h2"] == {
        "address": "127.0.0.112",
        "platforms": ["linux/arm64"],
        "workdir": str(farm.host("h2").workdir),
    }


def test_detect_platforms_omits_platforms(tmp_path: Path) -> None:
    """platforms=[] leaves platforms out of the inventory so kdist detects them with uname -m."""
    yaml = pytest.importorskip("yaml")
    with Farm(tmp_path / "farm", 2, first_address=FIRST, platforms=[], capacity=4) as farm:
        inv = yaml.safe_load(farm.inventory_path.read_text())
        assert inv["defaults"]["capacity"] == 4
        assert all("platforms" not in h for h in inv["hosts"].values())
        assert all(h.platforms == () for h in farm.hosts)
        reloaded = Farm.load(farm.root)
        assert reloaded.hosts == farm.hosts


def test_sixteen_host_farm_starts_fast_and_stops_cleanly(tmp_path: Path) -> None:
    """A 16-host farm starts in well under 20 s, every host answers, and stop leaves no sshd."""
    root = tmp_path / "farm16"
    farm = Farm(root, 16, first_address=FIRST)
    began = time.monotonic()
    try:
        farm.start()
        elapsed = time.monotonic() - began
        assert elapsed < 20, f"16-host start took {elapsed:.1f}s"
        assert [h.platforms[0] for h in farm.hosts[:5]] == [
            "linux/amd64",
            "linux/arm64",
            "linux/s390x",
            "linux/ppc64le",
            "linux/amd64",
        ]
        assert len(farm_processes(root)) == 16
        with ThreadPoolExecutor(max_workers=16) as pool:
            results = list(pool.map(lambda h: ssh(farm, h, "true"), farm.hosts))
        assert [r.returncode for r in results] == [0] * 16, [r.stderr for r in results]
    finally:
        farm.stop()
    assert farm_processes(root) == []
    assert not any(h.pidfile.exists() for h in farm.hosts)
    farm.stop()  # idempotent


def test_start_replaces_stale_daemons_of_same_root(tmp_path: Path) -> None:
    """Starting a farm again on the same root kills the previous run's sshd first."""
    root = tmp_path / "farm"
    first = Farm(root, 2, first_address=FIRST)
    first.start()
    try:
        old_pids = [h.pidfile.read_text().strip() for h in first.hosts]
        second = Farm(root, 2, first_address=FIRST)
        second.start()
        new_pids = [h.pidfile.read_text().strip() for h in second.hosts]
        assert set(old_pids).isdisjoint(new_pids)
        assert len(farm_processes(root)) == 2
        assert ssh(second, second.host("h2"), "true").returncode == 0
    finally:
        first.stop()
    assert farm_processes(root) == []


def test_cli_start_status_stop(tmp_path: Path) -> None:
    """scripts/farm start/status/stop-host/stop drive a farm persisted in farm.json."""
    root = tmp_path / "clifarm"
    script = str(REPO / "scripts" / "farm")

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [script, *args], capture_output=True, text=True, check=False, timeout=60
        )

    started = run("start", str(root), "--hosts", "2", "--first-address", str(FIRST))
    try:
        assert started.returncode == 0, started.stderr
        assert json.loads((root / "farm.json").read_text())["count"] == 2
        assert run("stop-host", str(root), "h1").returncode == 0
        status = run("status", str(root))
        assert status.stdout.splitlines() == [
            f"h1 127.0.0.{FIRST} down 0",
            f"h2 127.0.0.{FIRST + 1} up 0",
        ]
    finally:
        stopped = run("stop", str(root))
    assert stopped.returncode == 0, stopped.stderr
    assert farm_processes(root) == []
    missing = run("status", str(tmp_path / "nothing"))
    assert missing.returncode == 1
    assert "run start first" in missing.stderr


def test_second_farm_on_same_addresses_fails_clearly(farm: Farm, tmp_path: Path) -> None:
    """A farm with another root on busy addresses raises FarmError and leaves the first intact."""
    other = Farm(tmp_path / "other", 1, first_address=FIRST)
    with pytest.raises(FarmError, match="already in use"):
        other.start()
    assert farm_processes(other.root) == []
    assert ssh(farm, farm.host("h1"), "true").returncode == 0


def test_farm_without_login_rc_sets_the_shell_level(tmp_path: Path) -> None:
    """login_rc=False: sessions start at SHLVL=1, so Debian's bash skips ~/.bashrc; reloads keep it."""
    with Farm(tmp_path / "farm", 1, first_address=FIRST, login_rc=False) as farm:
        shown = ssh(farm, farm.host("h1"), "env")
        assert shown.returncode == 0, shown.stderr
        assert "KDIST_FARM_HOST=h1" in shown.stdout
        assert Farm.load(farm.root).login_rc is False
        assert "SetEnv KDIST_FARM_HOST=h1 SHLVL=1" in farm.host("h1").config.read_text()
