"""A private Docker daemon for tests and demos: own socket, data root, exec root and pid file.

``Dockerd(DIR)`` runs Debian's ``dockerd`` with everything under ``DIR``: the API socket
``DIR/docker.sock``, images and volumes in ``DIR/data``, containerd's state in ``DIR/exec``,
the pid file and the log. No iptables, no bridge, no IP forwarding: containers get
``--network none`` (or the host network), which is all a build container needs.

``stop()`` removes every container, stops the daemon by its pid (then whatever it left
running under its exec root: containerd, shims), unmounts anything left under ``DIR`` and
removes the data and exec roots, so nothing of it outlives the test session::

    python -m kdist.testing.dockerd start /tmp/d    # prints DOCKER_HOST=unix:///tmp/d/docker.sock
    python -m kdist.testing.dockerd stop /tmp/d

It talks to the daemon with plain HTTP over the socket (only kdist/stages/container.py
imports the docker SDK).
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

__all__ = ["Dockerd", "DockerdError", "main"]

READY_TIMEOUT = 30.0
STOP_TIMEOUT = 15.0
API_TIMEOUT = 30.0


class DockerdError(RuntimeError):
    """The private daemon could not be started, reached or stopped."""


class _UnixHTTPConnection(http.client.HTTPConnection):
    """HTTP/1.1 over a Unix socket (the Docker API)."""

    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self._path = path

    def connect(self) -> None:
        """Connect to the socket instead of a TCP address."""
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        sock.connect(self._path)
        self.sock = sock


def _alive(pid: int) -> bool:
    """True when `pid` exists and is not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rfind(")") + 2 :].split(" ", 1)[0] not in ("Z", "X")


def _cmdline(pid: int) -> str:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return ""
    return raw.replace(b"\0", b" ").decode("utf-8", "replace")


def _pids_mentioning(text: str) -> list[int]:
    """Processes whose command line contains `text` (containerd and shims of one daemon)."""
    pids = (int(e.name) for e in Path("/proc").iterdir() if e.name.isdigit())
    return [pid for pid in pids if pid != os.getpid() and text in _cmdline(pid)]


def _terminate(pids: Sequence[int], timeout: float) -> None:
    """SIGTERM, wait up to `timeout`, then SIGKILL whatever is left."""
    for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 5.0)):
        for pid in pids:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, sig)
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline and any(_alive(p) for p in pids):
            time.sleep(0.05)
        if not any(_alive(p) for p in pids):
            return


def _mounts_under(root: Path) -> list[str]:
    """Mount points at or below `root`, deepest first."""
    prefix = str(root)
    points = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        point = line.split()[4].encode().decode("unicode_escape")
        if point == prefix or point.startswith(prefix + "/"):
            points.append(point)
    return sorted(points, key=len, reverse=True)


class Dockerd:
    """One private dockerd rooted at a directory; a context manager."""

    def __init__(self, root: Path, *, binary: str = "dockerd") -> None:
        self.root = Path(root).resolve()
        self.binary = binary
        self.socket = self.root / "docker.sock"
        self.data_root = self.root / "data"
        self.exec_root = self.root / "exec"
        self.pidfile = self.root / "docker.pid"
        self.log = self.root / "dockerd.log"
        self._proc: subprocess.Popen[bytes] | None = None  # when this process started it
        if len(str(self.socket)) > 100:  # sun_path is 108 bytes; containerd's are longer still
            msg = f"{self.root}: path too long for a Unix socket; use a shorter directory"
            raise DockerdError(msg)

    @property
    def url(self) -> str:
        """The DOCKER_HOST value that reaches this daemon."""
        return f"unix://{self.socket}"

    def env(self) -> dict[str, str]:
        """Environment that points docker clients (CLI and SDK) at this daemon."""
        return {"DOCKER_HOST": self.url}

    def argv(self) -> list[str]:
        """The dockerd command line."""
        return [
            self.binary,
            "--storage-driver", "overlay2",
            "--iptables=false",
            "--ip-forward=false",
            "--ip-masq=false",
            "--bridge=none",
            "--host", self.url,
            "--data-root", str(self.data_root),
            "--exec-root", str(self.exec_root),
            "--pidfile", str(self.pidfile),
            "--log-level", "warn",
        ]  # fmt: skip

    def pid(self) -> int | None:
        """The live daemon's pid, if the pid file names a dockerd of this root."""
        try:
            pid = int(self.pidfile.read_text().strip())
        except (OSError, ValueError):
            return None
        return pid if _alive(pid) and str(self.data_root) in _cmdline(pid) else None

    def api(self, method: str, path: str, timeout: float = API_TIMEOUT) -> Any:  # noqa: ANN401
        """One Docker API call; the decoded JSON answer (None when empty)."""
        conn = _UnixHTTPConnection(str(self.socket), timeout)
        try:
            conn.request(method, path)
            response = conn.getresponse()
            body = response.read()
        finally:
            conn.close()
        if response.status >= 400:
            msg = f"docker API {method} {path}: {response.status} {body.decode(errors='replace')}"
            raise DockerdError(msg)
        return json.loads(body) if body.strip() and body.strip()[:1] in b"{[" else None

    def ready(self) -> bool:
        """True when the daemon answers /_ping."""
        try:
            conn = _UnixHTTPConnection(str(self.socket), 2.0)
            conn.request("GET", "/_ping")
            ok = conn.getresponse().status == 200
            conn.close()
        except OSError:
            return False
        return ok

    def start(self) -> None:
        """Start the daemon (stopping a stale one of this root first) and wait for its API."""
        if shutil.which(self.binary) is None and not Path(f"/usr/sbin/{self.binary}").exists():
            msg = f"{self.binary} not found (install docker.io: scripts/setup does)"
            raise DockerdError(msg)
        self.stop()
        self.root.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, "PATH": f"{os.environ.get('PATH', '')}:/usr/sbin:/sbin"}
        with self.log.open("ab") as log:
            self._proc = subprocess.Popen(
                self.argv(),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                env=env,
                start_new_session=True,  # a Ctrl-C of the test run must not hit it first
            )
        deadline = time.monotonic() + READY_TIMEOUT
        while not (self.ready() and self.pid() is not None):
            if time.monotonic() > deadline:
                tail = "\n".join(self.log.read_text(errors="replace").splitlines()[-15:])
                self.stop()
                msg = f"dockerd did not answer on {self.socket} in {READY_TIMEOUT:g}s:\n{tail}"
                raise DockerdError(msg)
            time.sleep(0.05)

    def remove_containers(self) -> int:
        """Force-remove every container (and its anonymous volumes); how many there were."""
        containers = self.api("GET", "/containers/json?all=1") or []
        for container in containers:
            with contextlib.suppress(DockerdError):
                self.api("DELETE", f"/containers/{container['Id']}?force=1&v=1")
        return len(containers)

    def stop(self) -> None:
        """Remove every container, stop the daemon by pid, leave no process and no mount."""
        pid = self.pid()
        if pid is not None and self.ready():
            with contextlib.suppress(DockerdError, OSError):
                self.remove_containers()
        if pid is not None:
            _terminate([pid], STOP_TIMEOUT)
        if self._proc is not None:  # reap it, so no zombie is left behind
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._proc.wait(5)
            self._proc = None
        leftovers = _pids_mentioning(str(self.exec_root)) + _pids_mentioning(str(self.data_root))
        if leftovers:
            _terminate(leftovers, 5.0)
        for point in _mounts_under(self.root):
            subprocess.run(["umount", "-l", point], check=False, capture_output=True)
        for path in (self.data_root, self.exec_root):
            shutil.rmtree(path, ignore_errors=True)
        self.socket.unlink(missing_ok=True)
        self.pidfile.unlink(missing_ok=True)

    def __enter__(self) -> Dockerd:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m kdist.testing.dockerd start|stop|status DIR`."""
    parser = argparse.ArgumentParser(
        prog="python -m kdist.testing.dockerd", description="A private dockerd for tests."
    )
    parser.add_argument("command", choices=("start", "stop", "status"))
    parser.add_argument("root", type=Path)
    args = parser.parse_args(argv)
    daemon = Dockerd(args.root)
    try:
        if args.command == "start":
            began = time.monotonic()
            daemon.start()
            print(f"dockerd {daemon.pid()} ready in {time.monotonic() - began:.2f}s")
            print(f"DOCKER_HOST={daemon.url}")
        elif args.command == "stop":
            daemon.stop()
        else:
            state = "up" if daemon.pid() is not None and daemon.ready() else "down"
            print(f"{state} {daemon.url}")
            return 0 if state == "up" else 1
    except DockerdError as exc:
        print(f"dockerd: error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
