"""Local SSH build farm: real OpenSSH ``sshd`` daemons, one per loopback address.

Used by kdist's integration/e2e tests and the demo.  Every host ``hN`` is a separate
``sshd`` listening on ``127.0.0.{first_address + N - 1}:{port}`` with its own host key,
config, pid file, log and work directory under ``ROOT/hosts/hN/``.  One client key pair
(``ROOT/id_ed25519``) is authorised on every host, logins are as ``root``.

Every farm host is this one machine, so ``hostname`` would name the same machine on all of
them. Real hosts have names of their own, and a build that embeds one is exactly what the
reproducibility gate must catch; so each sshd sets ``KDIST_FARM_HOST=hN`` for its sessions
(``SetEnv``) and the inventory's PATH starts with ``ROOT/bin``, whose ``hostname`` prints
that name (and runs the real ``hostname`` for anything else, or outside the farm).

``start`` writes ``ROOT/inventory.yaml`` (kdist inventory format), ``ROOT/known_hosts``,
``ROOT/ssh_config`` (one alias per host) and ``ROOT/farm.json`` (the farm spec, so
``stop``/``status`` can reload it later)::

    python -m kdist.testing.devfarm start /tmp/farm --hosts 3
    python -m kdist.testing.devfarm status /tmp/farm
    python -m kdist.testing.devfarm stop-host /tmp/farm h2
    python -m kdist.testing.devfarm stop /tmp/farm
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

__all__ = ["DEFAULT_PLATFORMS", "Farm", "FarmError", "FarmHost", "main"]

DEFAULT_PLATFORMS: tuple[tuple[str, ...], ...] = (
    ("linux/amd64",),
    ("linux/arm64",),
    ("linux/s390x",),
    ("linux/ppc64le",),
)
READY_TIMEOUT = 10.0
STOP_TIMEOUT = 5.0
_STARTERS = 8  # processes started at once while a farm starts
FARM_SPEC = "farm.json"
_BANNER = b"SSH-2.0-"
_BASE_PATH = "/usr/local/bin:/usr/bin:/bin"


# One port for every sshd of a farm; $KDIST_FARM_PORT moves all farms of a test run, so two
# checkouts can run their suites side by side on one machine.
DEFAULT_PORT = int(os.environ.get("KDIST_FARM_PORT", "2222"))


class FarmError(RuntimeError):
    """Raised when the local farm cannot be set up, started or stopped."""


@dataclass(frozen=True)
class FarmHost:
    """One farm host: an sshd bound to ``address:port`` with its own files."""

    name: str
    address: str
    port: int
    platforms: tuple[str, ...]
    workdir: Path
    log: Path
    pidfile: Path

    @property
    def directory(self) -> Path:
        """Return the host's private directory ``ROOT/hosts/<name>``."""
        return self.pidfile.parent

    @property
    def config(self) -> Path:
        """Return the path of the host's sshd_config."""
        return self.directory / "sshd_config"

    @property
    def host_key(self) -> Path:
        """Return the path of the host's private ed25519 host key."""
        return self.directory / "ssh_host_ed25519_key"

    @property
    def known_hosts_pattern(self) -> str:
        """Return the ``[address]:port`` pattern used in known_hosts."""
        return f"[{self.address}]:{self.port}"


# --------------------------------------------------------------------------- helpers


def _sshd_binary() -> str:
    """Return the absolute path of sshd (it refuses to re-exec from a relative path)."""
    found = shutil.which(
        "sshd", path=f"/usr/sbin:/usr/local/sbin:/sbin:{os.environ.get('PATH', '')}"
    )
    if found is None:
        raise FarmError("sshd not found (install openssh-server)")
    return str(Path(found).resolve())


def _sshd_version() -> tuple[int, int]:
    """Return the (major, minor) OpenSSH version of sshd, or (0, 0) if unknown."""
    proc = subprocess.run(
        [_sshd_binary(), "-V"], capture_output=True, text=True, check=False, timeout=10
    )
    match = re.search(r"OpenSSH_(\d+)\.(\d+)", proc.stderr + proc.stdout)
    return (int(match.group(1)), int(match.group(2))) if match else (0, 0)


def _goroot() -> str | None:
    """Return the real GOROOT (``go`` on PATH may be a pyenv shim), or None without Go."""
    go = shutil.which("go")
    if go is None:
        return None
    try:
        proc = subprocess.run(
            [go, "env", "GOROOT"], capture_output=True, text=True, check=False, timeout=30
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    goroot = proc.stdout.strip()
    if proc.returncode != 0 or not goroot or not (Path(goroot) / "bin" / "go").exists():
        return None
    return goroot


def _remote_path() -> str:
    """Return the PATH the inventory sets for remote commands (real Go first)."""
    goroot = _goroot()
    return f"{goroot}/bin:{_BASE_PATH}" if goroot else _BASE_PATH


def _q(value: str) -> str:
    """Quote a string JSON-style, which is also a valid YAML double-quoted scalar."""
    return json.dumps(value)


def _conf_value(value: str) -> str:
    """Quote an sshd_config argument if it contains whitespace."""
    if any(ch.isspace() for ch in value) or '"' in value:
        if '"' in value:
            raise FarmError(f"path with a double quote is not supported by sshd_config: {value}")
        return f'"{value}"'
    return value


def _keygen(path: Path, comment: str) -> None:
    """Generate an unencrypted ed25519 key pair at ``path`` / ``path.pub``."""
    path.unlink(missing_ok=True)
    Path(f"{path}.pub").unlink(missing_ok=True)
    proc = subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)],
        capture_output=True,
        text=True,
        check=False,
        stdin=subprocess.DEVNULL,
    )
    if proc.returncode != 0:
        raise FarmError(f"ssh-keygen failed for {path}: {proc.stderr.strip()}")
    path.chmod(0o600)


def _read_pid(pidfile: Path) -> int | None:
    """Return the pid stored in ``pidfile``, or None if missing or garbage."""
    try:
        text = pidfile.read_text().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


def _proc_state(pid: int) -> str | None:
    """Return the /proc state letter of ``pid`` or None if it does not exist."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat[stat.rfind(")") + 2 :].split(" ", 1)[0]


def _alive(pid: int) -> bool:
    """Return True if ``pid`` exists and is not a zombie (PID 1 may not reap daemons)."""
    state = _proc_state(pid)
    return state is not None and state not in ("Z", "X")


def _cmdline(pid: int) -> str:
    """Return the command line of ``pid`` (sshd's proctitle keeps its arguments)."""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return ""
    return raw.replace(b"\0", b" ").decode(errors="replace")


def _children_map() -> dict[int, list[int]]:
    """Return a map ppid -> child pids for every process in /proc."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rfind(")") + 2 :].split()
        if len(fields) > 1 and fields[1].isdigit():
            children.setdefault(int(fields[1]), []).append(int(entry.name))
    return children


def _descendants(pid: int) -> list[int]:
    """Return all descendants of ``pid`` (sshd session processes and user commands)."""
    children = _children_map()
    found: list[int] = []
    todo = list(children.get(pid, []))
    while todo:
        child = todo.pop()
        found.append(child)
        todo.extend(children.get(child, []))
    return found


def _signal(pids: Sequence[int], sig: signal.Signals) -> None:
    """Send ``sig`` to every pid, ignoring ones that are already gone."""
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, sig)


def _terminate(pids: Sequence[int], timeout: float = STOP_TIMEOUT) -> None:
    """SIGTERM ``pids``, wait up to ``timeout`` seconds, then SIGKILL survivors."""
    _signal(pids, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not any(_alive(pid) for pid in pids):
            return
        time.sleep(0.02)
    survivors = [pid for pid in pids if _alive(pid)]
    _signal(survivors, signal.SIGKILL)
    deadline = time.monotonic() + 2.0
    while time.monotonic() < deadline and any(_alive(pid) for pid in survivors):
        time.sleep(0.02)


def _read_banner(address: str, port: int, timeout: float) -> bytes | None:
    """Connect to ``address:port`` and return the first line it sends, or None."""
    try:
        with socket.create_connection((address, port), timeout=timeout) as sock:
            sock.settimeout(timeout)
            data = b""
            while b"\n" not in data and len(data) < 256:
                chunk = sock.recv(256)
                if not chunk:
                    break
                data += chunk
            return data
    except OSError:
        return None


def _tail(path: Path, lines: int = 15) -> str:
    """Return the last ``lines`` lines of ``path`` (empty if unreadable)."""
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


# --------------------------------------------------------------------------- farm


class Farm:
    """A set of local sshd daemons (``h1..hN``) on loopback addresses, plus inventory."""

    def __init__(
        self,
        root: Path,
        count: int = 3,
        *,
        first_address: int = 11,
        port: int = DEFAULT_PORT,
        platforms: Sequence[Sequence[str]] | None = None,
        capacity: int = 1,
        gocache: Path | None = None,
        docker_socket: Path | None = None,
        no_forwarding: Sequence[str] = (),
        login_rc: bool = True,
        extra_config: Mapping[str, Sequence[str]] | None = None,
    ) -> None:
        if count < 1:
            raise ValueError("count must be >= 1")
        if first_address < 1 or first_address + count - 1 > 254:
            raise ValueError("addresses 127.0.0.{first_address..first_address+count-1} invalid")
        if not 1 <= port <= 65535:
            raise ValueError(f"invalid port {port}")
        if capacity < 1:
            raise ValueError("capacity must be >= 1")
        if platforms is not None and any(isinstance(p, str) for p in platforms):
            raise TypeError("platforms is a list of per-host lists, e.g. [['linux/amd64']]")
        self.root = Path(root).resolve()
        # Hosts whose sshd forwards no TCP: neither docker sockets nor ProxyJump go through them.
        self.no_forwarding = frozenset(no_forwarding)
        # sshd_config lines added per host, e.g. a ForceCommand that plays a compromised host.
        self.extra_config = {name: tuple(lines) for name, lines in (extra_config or {}).items()}
        # False: login shells skip the user's rc files (Debian's bash reads ~/.bashrc for a
        # command run by sshd only below SHLVL 2), so a benchmark of many hosts on one machine
        # measures the head node, not 200 copies of this machine's ~/.bashrc.
        self.login_rc = login_rc
        self._gocache = Path(gocache).resolve() if gocache else None
        self.docker_socket = docker_socket  # every host's docker_socket (one daemon for all)
        self.count = count
        self.first_address = first_address
        self.port = port
        self.capacity = capacity
        cycle: Sequence[Sequence[str]] = DEFAULT_PLATFORMS if platforms is None else platforms
        self.hosts: list[FarmHost] = []
        for i in range(count):
            name = f"h{i + 1}"
            hostdir = self.root / "hosts" / name
            self.hosts.append(
                FarmHost(
                    name=name,
                    address=f"127.0.0.{first_address + i}",
                    port=port,
                    platforms=tuple(cycle[i % len(cycle)]) if cycle else (),
                    workdir=hostdir / "work",
                    log=hostdir / "sshd.log",
                    pidfile=hostdir / "sshd.pid",
                )
            )
        self.inventory_path = self.root / "inventory.yaml"
        self.ssh_config_path = self.root / "ssh_config"
        self.known_hosts_path = self.root / "known_hosts"
        self.identity_path = self.root / "id_ed25519"
        self.authorized_keys_path = self.root / "authorized_keys"
        self.spec_path = self.root / FARM_SPEC
        self._sshd: str | None = None
        self._extra_config: list[str] | None = None

    # ------------------------------------------------------------------ persistence

    @classmethod
    def load(cls, root: Path) -> Farm:
        """Recreate a farm from the ``farm.json`` written by a previous ``start``."""
        spec_path = Path(root).resolve() / FARM_SPEC
        try:
            spec = json.loads(spec_path.read_text())
        except OSError as exc:
            raise FarmError(f"no farm at {root} ({spec_path} missing; run start first)") from exc
        return cls(
            Path(root),
            int(spec["count"]),
            first_address=int(spec["first_address"]),
            port=int(spec["port"]),
            platforms=[list(p) for p in spec["platforms"]],
            capacity=int(spec["capacity"]),
            no_forwarding=spec.get("no_forwarding", []),
            login_rc=spec.get("login_rc", True),
        )

    def _write_spec(self) -> None:
        """Persist the farm spec so the CLI can reload it."""
        spec = {
            "count": self.count,
            "first_address": self.first_address,
            "port": self.port,
            "platforms": [list(h.platforms) for h in self.hosts if h.platforms],
            "capacity": self.capacity,
            "no_forwarding": sorted(self.no_forwarding),
            "login_rc": self.login_rc,
        }
        self.spec_path.write_text(json.dumps(spec, indent=2) + "\n")

    # ------------------------------------------------------------------ lookup

    def host(self, name: str) -> FarmHost:
        """Return the host called ``name`` (``h1`` .. ``hN``)."""
        for host in self.hosts:
            if host.name == name:
                return host
        raise KeyError(f"no host {name!r} in farm {self.root} (have h1..h{self.count})")

    def __iter__(self) -> Iterator[FarmHost]:
        return iter(self.hosts)

    # ------------------------------------------------------------------ setup

    def _sshd_path(self) -> str:
        """Return (and cache) the absolute sshd path."""
        if self._sshd is None:
            self._sshd = _sshd_binary()
        return self._sshd

    def _version_specific_config(self) -> list[str]:
        """Return config lines only valid on some OpenSSH versions."""
        if self._extra_config is None:
            # OpenSSH >= 9.8 penalises sources that fail auth or just probe the
            # banner; every farm client is 127.0.0.1, so switch that off.
            self._extra_config = ["PerSourcePenalties no"] if _sshd_version() >= (9, 8) else []
        return self._extra_config

    def _ensure_client_key(self) -> None:
        """Create the client key pair (once) and the shared authorized_keys."""
        if not (self.identity_path.exists() and Path(f"{self.identity_path}.pub").exists()):
            _keygen(self.identity_path, "kdist-devfarm-client")
        pub = Path(f"{self.identity_path}.pub").read_text().strip()
        self.authorized_keys_path.write_text(pub + "\n")
        self.authorized_keys_path.chmod(0o600)

    def _ensure_host_files(self, host: FarmHost) -> None:
        """Create the host's directories, host key (once) and sshd_config."""
        host.workdir.mkdir(parents=True, exist_ok=True)
        if not (host.host_key.exists() and Path(f"{host.host_key}.pub").exists()):
            _keygen(host.host_key, f"kdist-devfarm-{host.name}")
        host.config.write_text(self._sshd_config(host))

    def _sshd_config(self, host: FarmHost) -> str:
        """Return the sshd_config text for ``host``."""
        lines = [
            f"# kdist devfarm host {host.name}, written by kdist.testing.devfarm",
            f"ListenAddress {host.address}:{host.port}",
            f"HostKey {_conf_value(str(host.host_key))}",
            f"PidFile {_conf_value(str(host.pidfile))}",
            f"AuthorizedKeysFile {_conf_value(str(self.authorized_keys_path))}",
            "StrictModes no",
            "UsePAM no",
            "PubkeyAuthentication yes",
            "PasswordAuthentication no",
            "KbdInteractiveAuthentication no",
            "PermitRootLogin prohibit-password",
            "AllowAgentForwarding no",
            # Docker sockets are forwarded (container builds), and any host can be a ProxyJump,
            # except the ones told not to forward (to test what kdist says then).
            f"AllowTcpForwarding {'no' if host.name in self.no_forwarding else 'local'}",
            "X11Forwarding no",
            "PrintMotd no",
            "PrintLastLog no",
            "UseDNS no",
            "LogLevel INFO",
            "MaxSessions 100",
            "MaxStartups 100:30:200",
            "MaxAuthTries 10",
            "LoginGraceTime 30",
            "ClientAliveInterval 15",
            "Subsystem sftp internal-sftp",
            f"SetEnv KDIST_FARM_HOST={host.name}{'' if self.login_rc else ' SHLVL=1'}",
            *self._version_specific_config(),
            *self.extra_config.get(host.name, ()),
        ]
        return "\n".join(lines) + "\n"

    def _validate(self, host: FarmHost) -> None:
        """Run ``sshd -t`` on the host's config and raise FarmError if it is rejected."""
        # sshd (also -t) insists on its privilege separation directory.
        Path("/run/sshd").mkdir(mode=0o755, parents=True, exist_ok=True)
        proc = self._run_sshd("-t", "-f", str(host.config))
        if proc.returncode != 0:
            raise FarmError(
                f"sshd rejected {host.config} (exit {proc.returncode}):\n"
                f"{(proc.stderr + proc.stdout).strip()}"
            )

    def _write_known_hosts(self) -> None:
        """Write known_hosts with every host's current key, ``[addr]:port`` form."""
        lines = []
        for host in self.hosts:
            keytype, blob = Path(f"{host.host_key}.pub").read_text().split()[:2]
            lines.append(f"{host.known_hosts_pattern} {keytype} {blob}")
        self.known_hosts_path.write_text("\n".join(lines) + "\n")

    @property
    def gocache_path(self) -> Path:
        """The Go build cache shared by this farm's hosts (and other farms given the same)."""
        return self._gocache or self.root / "gocache"

    @property
    def bin_dir(self) -> Path:
        """``ROOT/bin``: first on the farm hosts' PATH; holds the ``hostname`` of each host."""
        return self.root / "bin"

    def _write_hostname(self) -> None:
        """``ROOT/bin/hostname``: the farm host's name for a bare ``hostname`` (see above)."""
        real = shutil.which("hostname", path=_BASE_PATH) or "/bin/hostname"
        self.bin_dir.mkdir(parents=True, exist_ok=True)
        script = self.bin_dir / "hostname"
        script.write_text(
            "#!/bin/sh\n"
            "# kdist devfarm: each farm host answers with its own name, as separate machines do.\n"
            'if [ "$#" -eq 0 ] && [ -n "${KDIST_FARM_HOST:-}" ]; then\n'
            '  echo "$KDIST_FARM_HOST"\n'
            "  exit 0\n"
            "fi\n"
            f'exec {real} "$@"\n'
        )
        script.chmod(0o755)

    def inventory_text(self) -> str:
        """Return the kdist inventory YAML describing this farm."""
        out = [
            (
                f"# Local kdist farm: {self.count} sshd daemons on loopback,"
                " written by kdist.testing.devfarm"
            ),
            "defaults:",
            "  user: root",
            f"  port: {self.port}",
            f"  identity_file: {_q(str(self.identity_path))}",
            f"  known_hosts: {_q(str(self.known_hosts_path))}",
            f"  capacity: {self.capacity}",
            # The hosts share one machine, so they share one Go build cache (hosts of a real
            # farm each keep their own); without it every host would compile Go's std cold.
            f"  env: {{PATH: {_q(f'{self.bin_dir}:{_remote_path()}')}, "
            f"GOCACHE: {_q(str(self.gocache_path))}}}",
            *([f"  docker_socket: {_q(str(self.docker_socket))}"] if self.docker_socket else []),
            "hosts:",
        ]
        for host in self.hosts:
            out += [f"  {host.name}:", f"    address: {_q(host.address)}"]
            if host.platforms:
                out.append(f"    platforms: [{', '.join(_q(p) for p in host.platforms)}]")
            out.append(f"    workdir: {_q(str(host.workdir))}")
        return "\n".join(out) + "\n"

    def ssh_config_text(self) -> str:
        """An ssh_config with one alias per host, so `ssh h1` (and kdist) need nothing else."""
        out = [f"# Local kdist farm {self.root}, written by kdist.testing.devfarm"]
        for host in self.hosts:
            out += [
                f"Host {host.name}",
                f"  HostName {host.address}",
                f"  Port {host.port}",
                "  User root",
                f"  IdentityFile {_conf_value(str(self.identity_path))}",
                "  IdentitiesOnly yes",
                f"  UserKnownHostsFile {_conf_value(str(self.known_hosts_path))}",
            ]
        return "\n".join(out) + "\n"

    # ------------------------------------------------------------------ processes

    def _owned_pid(self, host: FarmHost) -> int | None:
        """Return the live sshd pid from the host's pidfile if it is really ours."""
        pid = _read_pid(host.pidfile)
        if pid is None or not _alive(pid) or str(host.config) not in _cmdline(pid):
            return None
        return pid

    def _kill_pidfile(self, pidfile: Path, config: Path) -> None:
        """Terminate the sshd named by ``pidfile`` (and its sessions), remove the file."""
        pid = _read_pid(pidfile)
        if pid is not None and _alive(pid) and str(config) in _cmdline(pid):
            _terminate([pid, *_descendants(pid)])
        pidfile.unlink(missing_ok=True)

    def _cleanup_stale(self) -> None:
        """Stop any sshd left by a previous run of this root (any host count)."""
        hosts_dir = self.root / "hosts"
        if not hosts_dir.is_dir():
            return
        for hostdir in sorted(hosts_dir.iterdir()):
            self._kill_pidfile(hostdir / "sshd.pid", hostdir / "sshd_config")

    def _check_free(self, host: FarmHost) -> None:
        """Raise FarmError if something already listens on the host's address."""
        banner = _read_banner(host.address, host.port, 0.5)
        if banner is not None:
            holders = subprocess.run(
                ["pgrep", "-af", "sshd"], capture_output=True, text=True, check=False
            ).stdout.strip()
            raise FarmError(
                f"{host.address}:{host.port} is already in use (banner {banner[:40]!r}); "
                f"another farm may be running - stop it with "
                f"`python -m kdist.testing.devfarm stop OTHER_ROOT`.\nsshd processes:\n{holders}"
            )

    def _run_sshd(self, *args: str) -> subprocess.CompletedProcess[str]:
        """Run sshd with `args`, its output captured (it daemonizes when serving)."""
        return subprocess.run(
            [self._sshd_path(), *args],
            capture_output=True,
            text=True,
            check=False,
            stdin=subprocess.DEVNULL,
            timeout=30,
        )

    def _launch(self, host: FarmHost) -> None:
        """Validate the config and start the host's sshd (it daemonizes itself)."""
        self._validate(host)
        proc = self._run_sshd("-f", str(host.config), "-E", str(host.log))
        if proc.returncode != 0:
            raise FarmError(
                f"sshd for {host.name} exited {proc.returncode}: "
                f"{(proc.stderr + proc.stdout).strip()}\n{_tail(host.log)}"
            )

    def _wait_ready(self, hosts: Sequence[FarmHost], timeout: float = READY_TIMEOUT) -> None:
        """Wait until every host has its pidfile and answers with an SSH banner."""
        deadline = time.monotonic() + timeout
        pending = list(hosts)
        while pending:
            host = pending[0]
            if self._owned_pid(host) is not None:
                banner = _read_banner(host.address, host.port, 1.0)
                if banner is not None and banner.startswith(_BANNER):
                    pending.pop(0)
                    continue
            if time.monotonic() > deadline:
                raise FarmError(
                    f"sshd for {host.name} ({host.address}:{host.port}) not ready after "
                    f"{timeout:.0f}s; log {host.log}:\n{_tail(host.log)}"
                )
            time.sleep(0.02)

    # ------------------------------------------------------------------ public API

    def start(self) -> None:
        """Create keys/configs, start every sshd, wait for banners, write inventory."""
        self.root.mkdir(parents=True, exist_ok=True)
        self._cleanup_stale()
        self._ensure_client_key()
        self._version_specific_config()  # asked once, before the threads below share it
        # ssh-keygen, `sshd -t` and sshd's own start are each a process: a 200-host farm
        # starts in seconds when they run side by side.
        with ThreadPoolExecutor(max_workers=_STARTERS) as pool:
            list(pool.map(self._ensure_host_files, self.hosts))
            list(pool.map(self._check_free, self.hosts))
        self._write_known_hosts()
        self._write_hostname()
        self.inventory_path.write_text(self.inventory_text())
        self.ssh_config_path.write_text(self.ssh_config_text())
        self._write_spec()
        try:
            for host in self.hosts:
                host.log.write_text("")  # a fresh farm counts logins from zero
            with ThreadPoolExecutor(max_workers=_STARTERS) as pool:
                list(pool.map(self._launch, self.hosts))
            self._wait_ready(self.hosts, READY_TIMEOUT + self.count * 0.05)
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        """Stop every sshd of this farm and its sessions; safe to call repeatedly."""
        with ThreadPoolExecutor(max_workers=_STARTERS) as pool:
            list(pool.map(self.stop_host, [host.name for host in self.hosts]))

    def stop_host(self, name: str) -> None:
        """Stop one host's sshd and kill its open sessions (simulates the host going down)."""
        host = self.host(name)
        self._kill_pidfile(host.pidfile, host.config)

    def start_host(self, name: str) -> None:
        """Start one host's sshd again (no-op if it is already running)."""
        host = self.host(name)
        if self._owned_pid(host) is not None:
            return
        self._ensure_client_key()
        self._ensure_host_files(host)
        self._check_free(host)
        self._launch(host)
        self._wait_ready([host])

    def rekey_host(self, name: str) -> None:
        """Give one host a NEW host key and restart it, leaving known_hosts stale."""
        host = self.host(name)
        self.stop_host(name)
        _keygen(host.host_key, f"kdist-devfarm-{host.name}-rekeyed")
        self.start_host(name)

    def is_up(self, name: str) -> bool:
        """Return True if the host's sshd is running and answers with an SSH banner."""
        host = self.host(name)
        if self._owned_pid(host) is None:
            return False
        banner = _read_banner(host.address, host.port, 1.0)
        return banner is not None and banner.startswith(_BANNER)

    def accepted_logins(self, name: str) -> int:
        """Return how many "Accepted publickey" lines the host's sshd log holds."""
        host = self.host(name)
        try:
            text = host.log.read_text(errors="replace")
        except FileNotFoundError:
            return 0
        return sum(1 for line in text.splitlines() if "Accepted publickey" in line)

    def ssh_command(self, name: str) -> list[str]:
        """Return an ``ssh`` argv (without the remote command) that logs into host ``name``."""
        host = self.host(name)
        return [
            "ssh",
            "-F",
            "/dev/null",
            "-i",
            str(self.identity_path),
            "-o",
            "IdentitiesOnly=yes",
            "-o",
            f"UserKnownHostsFile={self.known_hosts_path}",
            "-o",
            "GlobalKnownHostsFile=/dev/null",
            "-o",
            "StrictHostKeyChecking=yes",
            "-o",
            "BatchMode=yes",
            "-p",
            str(host.port),
            f"root@{host.address}",
        ]

    def __enter__(self) -> Farm:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


# --------------------------------------------------------------------------- CLI


def _parser() -> argparse.ArgumentParser:
    """Build the argument parser for ``python -m kdist.testing.devfarm``."""
    parser = argparse.ArgumentParser(
        prog="python -m kdist.testing.devfarm", description="Local sshd build farm for kdist."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    start = sub.add_parser("start", help="start (or restart) a farm in ROOT")
    start.add_argument("root", type=Path)
    start.add_argument("--hosts", type=int, default=3, help="number of hosts (default 3)")
    start.add_argument(
        "--port", type=int, default=DEFAULT_PORT, help=f"sshd port (default {DEFAULT_PORT})"
    )
    start.add_argument(
        "--first-address", type=int, default=11, help="first host is 127.0.0.N (default 11)"
    )
    start.add_argument("--capacity", type=int, default=1, help="per-host capacity (default 1)")
    start.add_argument(
        "--no-login-rc",
        action="store_true",
        help="login shells skip ~/.bashrc (many hosts on one machine: measure the head node)",
    )
    start.add_argument(
        "--detect-platforms",
        action="store_true",
        help="omit platforms from the inventory so kdist detects them (uname -m)",
    )
    for name, help_text in (("stop", "stop the farm"), ("status", "show host status")):
        sub.add_parser(name, help=help_text).add_argument("root", type=Path)
    for name, help_text in (
        ("stop-host", "stop one host"),
        ("start-host", "start one host"),
        ("rekey-host", "give one host a new host key (known_hosts left stale)"),
    ):
        cmd = sub.add_parser(name, help=help_text)
        cmd.add_argument("root", type=Path)
        cmd.add_argument("name")
    return parser


def _print_status(farm: Farm) -> None:
    """Print ``name address up|down accepted-logins`` for every host."""
    for host in farm.hosts:
        state = "up" if farm.is_up(host.name) else "down"
        print(f"{host.name} {host.address} {state} {farm.accepted_logins(host.name)}")


def main(argv: Sequence[str] | None = None) -> int:
    """Run the devfarm command line; return the process exit status."""
    args = _parser().parse_args(argv)
    try:
        if args.command == "start":
            farm = Farm(
                args.root,
                args.hosts,
                first_address=args.first_address,
                port=args.port,
                platforms=[] if args.detect_platforms else None,
                capacity=args.capacity,
                login_rc=not args.no_login_rc,
            )
            began = time.monotonic()
            farm.start()
            print(f"started {farm.count} hosts in {time.monotonic() - began:.2f}s")
            _print_status(farm)
            print(f"inventory:   {farm.inventory_path}")
            print(f"known_hosts: {farm.known_hosts_path}")
            print(f"ssh_config:  {farm.ssh_config_path}")
            print(f"try:         {' '.join(farm.ssh_command('h1'))} uname -m")
            return 0
        farm = Farm.load(args.root)
        if args.command == "stop":
            farm.stop()
        elif args.command == "status":
            _print_status(farm)
        elif args.command == "stop-host":
            farm.stop_host(args.name)
        elif args.command == "start-host":
            farm.start_host(args.name)
        elif args.command == "rekey-host":
            farm.rekey_host(args.name)
    except (FarmError, KeyError, ValueError) as exc:
        print(f"devfarm: error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
