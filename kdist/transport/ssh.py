"""The transport contract over SSH; the only module that imports asyncssh.

One asyncssh connection per host carries every command, and rsync rides on that same
connection through the `rsh.py` relay, so each host authenticates once per run.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncssh

from kdist.errors import ConnectError
from kdist.model import CommandResult, Host
from kdist.remote.argv import in_dir, mkdir, rsync_pull, rsync_push, to_shell
from kdist.transport import LineSink, OutputCollector, Spawned, rsh
from kdist.transport.local import LocalTransport

CHUNK = 256 * 1024


@dataclass(frozen=True)
class SshOptions:
    """Connection settings that are not per host."""

    connect_timeout: float = 10.0
    keepalive_interval: float = 15.0
    keepalive_count_max: int = 3
    accept_new_host_keys: bool = False  # trust on first use (OpenSSH accept-new); never a change


class SshTransport:
    """Runs commands and rsync transfers on one build host over a single SSH connection."""

    def __init__(self, host: Host, options: SshOptions | None = None) -> None:
        self.host = host
        self.options = options or SshOptions()
        self._conn: asyncssh.SSHClientConnection | None = None
        self._server: asyncio.AbstractServer | None = None
        self._sockdir: str | None = None
        self._forwards: dict[str, str] = {}  # remote socket -> local socket
        self._local = LocalTransport(host)  # runs the local rsync client

    @property
    def label(self) -> str:
        """`name (address:port)` for messages."""
        return f"{self.host.name} ({self.host.address}:{self.host.port})"

    async def connect(self) -> None:
        """Open and authenticate the connection; errors name the host and the cause."""
        known_hosts = self.host.known_hosts or Path("~/.ssh/known_hosts").expanduser()
        if self.options.accept_new_host_keys and not _is_known(known_hosts, self.host):
            await self._connect_first_time(known_hosts)
            return
        if not known_hosts.is_file():
            msg = (
                f"{self.label}: known_hosts file {known_hosts} does not exist, "
                "so the host key cannot be verified"
            )
            raise ConnectError(msg)
        try:
            self._conn = await asyncio.wait_for(
                asyncssh.connect(self.host.address, **self._connect_args(known_hosts)),
                self.options.connect_timeout,
            )
        except asyncssh.HostKeyNotVerifiable as exc:
            msg = f"{self.label}: host key not accepted ({exc.reason}); check {known_hosts}"
            raise ConnectError(msg) from exc
        except asyncssh.PermissionDenied as exc:
            msg = f"{self.label}: authentication failed ({exc.reason})"
            raise ConnectError(msg) from exc
        except (asyncio.TimeoutError, TimeoutError) as exc:
            limit = self.options.connect_timeout
            msg = f"{self.label}: unreachable: no SSH answer within {limit:g}s"
            raise ConnectError(msg) from exc
        except (OSError, asyncssh.Error) as exc:
            msg = f"{self.label}: unreachable: {exc}"
            raise ConnectError(msg) from exc
        await self._start_relay()

    async def _connect_first_time(self, known_hosts: Path) -> None:
        """accept-new: a host with no key on record is trusted once and its key recorded."""
        args = {**self._connect_args(known_hosts), "known_hosts": None}
        try:
            self._conn = await asyncio.wait_for(
                asyncssh.connect(self.host.address, **args), self.options.connect_timeout
            )
        except (asyncio.TimeoutError, TimeoutError, OSError, asyncssh.Error) as exc:
            msg = f"{self.label}: unreachable: {exc or 'no SSH answer'}"
            raise ConnectError(msg) from exc
        key = self._conn.get_server_host_key()
        assert key is not None
        line = f"[{self.host.address}]:{self.host.port} {key.export_public_key().decode().strip()}"
        known_hosts.parent.mkdir(parents=True, exist_ok=True)
        with known_hosts.open("a", encoding="utf-8") as handle:
            handle.write(line + "\n")
        await self._start_relay()

    def _connect_args(self, known_hosts: Path) -> dict[str, Any]:
        args: dict[str, Any] = {
            "port": self.host.port,
            "known_hosts": str(known_hosts),
            "agent_forwarding": False,
            "x11_forwarding": False,
            "connect_timeout": self.options.connect_timeout,
            "login_timeout": self.options.connect_timeout,
            "keepalive_interval": self.options.keepalive_interval,
            "keepalive_count_max": self.options.keepalive_count_max,
        }
        if self.host.user:
            args["username"] = self.host.user
        if self.host.identity_file:
            args["client_keys"] = [str(self.host.identity_file)]
        return args

    async def _start_relay(self) -> None:
        self._sockdir = tempfile.mkdtemp(prefix="kdist-rsh-")  # mode 0700: only we can connect
        path = str(Path(self._sockdir) / "s")
        self._server = await asyncio.start_unix_server(self._relay, path=path)
        helper = [sys.executable, "-I", rsh.__file__, path]
        if any("'" in word or '"' in word for word in helper):
            msg = f"{self.label}: cannot build an rsync --rsh command from paths with quotes"
            raise ConnectError(msg)
        self._rsh = to_shell(helper)

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Serve one rsync --rsh session: open a channel and relay bytes and the exit status."""
        try:
            header = json.loads(await reader.readline())
            assert self._conn is not None
            proc = await self._conn.create_process(header["command"], encoding=None)
        except (ValueError, KeyError, OSError, asyncssh.Error) as exc:
            writer.write(_frame(rsh.STDERR, f"kdist relay: {exc}\n".encode()))
            writer.write(_frame(rsh.EXIT, b"255"))
            await _close(writer)
            return
        upload = asyncio.create_task(_copy_up(reader, proc))
        try:
            await asyncio.gather(
                _copy_down(proc.stdout, writer, rsh.STDOUT),
                _copy_down(proc.stderr, writer, rsh.STDERR),
            )
            done = await proc.wait()
            status = done.exit_status if done.exit_status is not None else 255
            writer.write(_frame(rsh.EXIT, str(status).encode()))
        except (OSError, asyncssh.Error):
            proc.close()  # the rsync side went away; rsync itself reports the failure
        finally:
            upload.cancel()
            await _close(writer)

    async def run(
        self,
        argv: Sequence[str],
        *,
        cwd: str | None = None,
        env: Mapping[str, str] | None = None,
        stdin: str | None = None,
        sink: LineSink | None = None,
        timeout: float | None = None,
        hold_stdin: bool = False,
    ) -> CommandResult:
        """Run argv on the host (quoted once, here), streaming merged output to `sink`."""
        conn = self._connection()
        start = time.monotonic()
        collector = OutputCollector(sink)
        command = to_shell(in_dir(argv, cwd, env or {}))
        proc: asyncssh.SSHClientProcess[str] | None = None
        try:
            proc = await conn.create_process(
                command, stderr=asyncssh.STDOUT, encoding="utf-8", errors="replace"
            )
            returncode = await asyncio.wait_for(
                _communicate(proc, stdin, collector, hold_stdin), timeout
            )
        except (OSError, asyncssh.Error) as exc:
            msg = f"{self.label}: connection lost while running {argv[0]}: {exc}"
            raise ConnectError(msg) from exc
        finally:
            if proc is not None:
                proc.close()  # on timeout or cancel, this is what tells a guard to stop
        return CommandResult(
            tuple(argv), returncode, collector.text(), "", time.monotonic() - start
        )

    async def spawn(self, argv: Sequence[str]) -> Spawned:
        """Start argv on the host with stdin held open (closed by `close()`)."""
        conn = self._connection()
        try:
            proc = await conn.create_process(
                to_shell(argv), stderr=asyncssh.STDOUT, encoding="utf-8", errors="replace"
            )
        except (OSError, asyncssh.Error) as exc:
            msg = f"{self.label}: connection lost while starting {argv[0]}: {exc}"
            raise ConnectError(msg) from exc
        return _SshSpawned(proc)

    async def push(self, src: Path, dest: str) -> CommandResult:
        """Rsync `src` to `dest` on the host over this connection."""
        await self.run(mkdir(dest))
        return await self._local.run(rsync_push(self._rsh_command(), src, dest))

    async def pull(self, src: str, dest: Path) -> CommandResult:
        """Rsync the regular files under `src` on the host into `dest`."""
        return await self._local.run(rsync_pull(self._rsh_command(), src, dest))

    async def forward_socket(self, remote_path: str) -> str:
        """A private local socket reaching `remote_path` on the host through this connection.

        Every client connection to it becomes a channel of the one SSH connection
        (direct-streamlocal, like `ssh -L local:remote`), so a docker client that uses it
        never logs in again.
        """
        conn = self._connection()
        if remote_path in self._forwards:
            return self._forwards[remote_path]
        assert self._sockdir is not None
        local = str(Path(self._sockdir) / f"fwd{len(self._forwards)}")
        try:
            _, probe = await conn.open_unix_connection(remote_path)
            probe.close()
        except asyncssh.ChannelOpenError as exc:
            msg = (
                f"{self.label}: cannot reach {remote_path} over SSH ({exc.reason}): nothing "
                "listens there, or sshd forbids forwarding (AllowTcpForwarding no)"
            )
            raise ConnectError(msg) from exc
        try:
            await conn.forward_local_path(local, remote_path)
        except (OSError, asyncssh.Error) as exc:
            msg = f"{self.label}: cannot forward {remote_path}: {exc}"
            raise ConnectError(msg) from exc
        self._forwards[remote_path] = local
        return local

    async def close(self) -> None:
        """Close the relay, the forwarded sockets and the connection."""
        self._forwards.clear()
        if self._server is not None:
            self._server.close()
            self._server = None
        if self._sockdir is not None:
            shutil.rmtree(self._sockdir, ignore_errors=True)
            self._sockdir = None
        if self._conn is not None:
            self._conn.close()
            with contextlib.suppress(Exception):
                await self._conn.wait_closed()
            self._conn = None

    def _connection(self) -> asyncssh.SSHClientConnection:
        if self._conn is None:
            msg = f"{self.label}: not connected"
            raise ConnectError(msg)
        return self._conn

    def _rsh_command(self) -> str:
        self._connection()
        return self._rsh


async def _communicate(
    proc: asyncssh.SSHClientProcess[str],
    stdin: str | None,
    collector: OutputCollector,
    hold_stdin: bool,
) -> int:
    if stdin is not None:
        proc.stdin.write(stdin)
    if not hold_stdin:
        proc.stdin.write_eof()
    async for line in proc.stdout:
        if line:  # asyncssh ends the iteration with an empty read at EOF
            collector.feed(line)
    done = await proc.wait()
    if done.exit_status is not None:
        return done.exit_status
    return 128 + 9 if done.exit_signal else 255  # killed by a signal, or the channel dropped


class _SshSpawned:
    """A remote command whose stdin we hold open."""

    def __init__(self, proc: asyncssh.SSHClientProcess[str]) -> None:
        self._proc = proc

    async def readline(self) -> str:
        """The next output line ('' at EOF)."""
        try:
            return await self._proc.stdout.readline()
        except (OSError, asyncssh.Error):
            return ""

    async def close(self) -> None:
        """End its stdin and close the channel."""
        with contextlib.suppress(OSError, asyncssh.Error):
            self._proc.stdin.write_eof()
        self._proc.close()


async def _copy_up(reader: asyncio.StreamReader, proc: asyncssh.SSHClientProcess[bytes]) -> None:
    with contextlib.suppress(OSError, asyncssh.Error):
        while data := await reader.read(CHUNK):
            proc.stdin.write(data)
            await proc.stdin.drain()
        proc.stdin.write_eof()


async def _copy_down(
    stream: asyncssh.SSHReader[bytes], writer: asyncio.StreamWriter, kind: int
) -> None:
    while data := await stream.read(CHUNK):
        writer.write(_frame(kind, data))
        await writer.drain()


def _is_known(known_hosts: Path, host: Host) -> bool:
    """True when known_hosts has any key (or CA) for the host: then only that key is accepted."""
    if not known_hosts.is_file():
        return False
    try:
        table = asyncssh.read_known_hosts(str(known_hosts))
    except (OSError, ValueError, asyncssh.Error):
        return True  # unreadable: fail closed, strict checking will report it
    matched = table.match(host.address, "", host.port)
    return any(matched[:2])


def _frame(kind: int, data: bytes) -> bytes:
    return rsh.HEADER.pack(kind, len(data)) + data


async def _close(writer: asyncio.StreamWriter) -> None:
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
