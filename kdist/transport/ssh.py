"""The transport contract over SSH; the only module that imports asyncssh.

One asyncssh connection per host carries every command, and rsync rides on that same
connection: its --rsh helper (`rsh.py`) hands rsync's pipes to this process, which carries
them over a channel (`carrier.py`), so each host authenticates once per run and a transfer
needs no process besides rsync.
"""

from __future__ import annotations

import asyncio
import contextlib
import getpass
import itertools
import re
import shutil
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import asyncssh

from kdist.aio import wait_for
from kdist.errors import (
    CommandTimeout,
    ConfigError,
    ConnectError,
    ConnectionLost,
    OutputTooLarge,
)
from kdist.model import CommandResult, Endpoint, Host, TransferDeadline
from kdist.remote.argv import (
    bounded,
    in_dir,
    mkdir,
    rsync_pull,
    rsync_push,
    to_shell,
)
from kdist.text import HOST_ERRORS, inert
from kdist.transport import (
    READ_CHUNK,
    LineReader,
    LineSink,
    OutputCollector,
    Progress,
    Spawned,
    SshOptions,
    StderrTail,
    names_file,
    rsh,
)
from kdist.transport.carrier import Handoff, Listener, Pipes
from kdist.transport.local import run_rsync

# A transfer's channel gets an 8 MiB window (asyncssh's default is 2 MiB), so a pull never
# waits for a window update on a fast link; OpenSSH sends at most 32 KiB per packet whatever
# the client allows, so the packet size stays asyncssh's.
TRANSFER_WINDOW = 8 << 20
# OpenSSH's default ciphers, AES-GCM first: with AES instructions (x86-64, arm64) it costs a
# third of chacha20-poly1305's CPU per byte here, where chacha20 is two cipher calls and a MAC
# per packet in Python (OpenSSH puts chacha20 first for machines without AES instructions).
# ssh_config's `Ciphers`, when a host has one, wins.
CIPHERS = (
    "aes128-gcm@openssh.com",
    "aes256-gcm@openssh.com",
    "chacha20-poly1305@openssh.com",
    "aes128-ctr",
    "aes192-ctr",
    "aes256-ctr",
)
DEFAULT_KNOWN_HOSTS = Path("~/.ssh/known_hosts")
DEFAULT_CONNECT_TIMEOUT = 10.0
MAX_JUMPS = 8  # a longer ProxyJump chain is a loop in ssh_config


class SshTransport:
    """Runs commands and rsync transfers on one build host over a single SSH connection."""

    def __init__(self, host: Host, options: SshOptions | None = None) -> None:
        self.host = host
        self.host_key = ""  # the fingerprint of the key verified at connect, once connected
        self.options = options or SshOptions()
        self._conn: asyncssh.SSHClientConnection | None = None
        self._hops: list[asyncssh.SSHClientConnection] = []  # jump hosts, then the host
        self._listener: Listener | None = None  # made at the first transfer
        self._rsh = ""
        self._sockdir: str | None = None
        self._forwards: dict[str, str] = {}  # remote socket -> local socket
        self._transfers: dict[str, _Transfer] = {}  # transfer id -> its sessions and bytes

    @property
    def label(self) -> str:
        """`name (address:port)` for messages, with the jump hosts it goes through."""
        via = f" via {', '.join(hop.alias for hop in self.host.jump)}" if self.host.jump else ""
        return f"{self.host.name} ({self.host.address}:{self.host.port}{via})"

    async def connect(self) -> None:
        """Open and authenticate the connection, through each ProxyJump host in turn."""
        tunnel: asyncssh.SSHClientConnection | None = None
        for hop in (*self.host.jump, self.host.endpoint):
            tunnel = await self._open(hop, tunnel)
            self._hops.append(tunnel)
        self._conn = tunnel
        self.host_key = _fingerprint(tunnel)  # the build host's own key (not a jump host's)

    def _where(self, hop: Endpoint) -> str:
        if hop not in self.host.jump:
            return self.label
        return f"{self.label}: jump host {hop.alias} ({hop.address}:{hop.port})"

    def _timeout(self, hop: Endpoint) -> float:
        return self.options.connect_timeout or hop.connect_timeout or DEFAULT_CONNECT_TIMEOUT

    async def _open(
        self, hop: Endpoint, tunnel: asyncssh.SSHClientConnection | None
    ) -> asyncssh.SSHClientConnection:
        """One authenticated connection to `hop`; its host key checked against its known_hosts."""
        files = known_hosts_files(hop)
        present = [str(path) for path in files if path.is_file()]
        if self.options.accept_new_host_keys and not _is_known(files, hop):
            conn = await self._attempt(hop, tunnel, None)
            self._record(hop, conn, files[0])
            return conn
        if not present:
            names = ", ".join(map(str, files))
            msg = (
                f"{self._where(hop)}: known_hosts file {names} does not exist, "
                "so the host key cannot be verified"
            )
            raise ConnectError(msg)
        try:
            return await self._attempt(hop, tunnel, present)
        except asyncssh.HostKeyNotVerifiable as exc:
            raise ConnectError(await self._refused(hop, tunnel, files)) from exc

    async def _attempt(
        self,
        hop: Endpoint,
        tunnel: asyncssh.SSHClientConnection | None,
        known_hosts: list[str] | None,
    ) -> asyncssh.SSHClientConnection:
        where, limit = self._where(hop), self._timeout(hop)
        try:
            return await wait_for(
                asyncssh.connect(hop.alias, **self._connect_args(hop, tunnel, known_hosts)), limit
            )
        except asyncssh.HostKeyNotVerifiable:
            raise
        except asyncssh.PermissionDenied as exc:
            msg = f"{where}: authentication failed ({inert(exc.reason)})"
            raise ConnectError(msg) from exc
        except (asyncio.TimeoutError, TimeoutError) as exc:
            msg = f"{where}: unreachable: no SSH answer within {limit:g}s"
            raise ConnectError(msg) from exc
        except asyncssh.ChannelOpenError as exc:
            msg = (
                f"{where}: the jump host would not open a connection to {hop.address}:{hop.port} "
                f"({inert(exc.reason)}); its sshd needs AllowTcpForwarding yes (or local)"
            )
            raise ConnectError(msg) from exc
        except (OSError, asyncssh.Error) as exc:
            msg = f"{where}: unreachable: {inert(str(exc))}"  # the server's own words
            raise ConnectError(msg) from exc
        except ValueError as exc:  # asyncssh re-reads ssh_config, or cannot load a key file
            msg = f"{where}: {inert(str(exc))}"
            raise ConnectError(msg) from exc

    def _connect_args(
        self,
        hop: Endpoint,
        tunnel: asyncssh.SSHClientConnection | None,
        known_hosts: list[str] | None,
    ) -> dict[str, Any]:
        # The host was resolved (resolve_host) and asyncssh gets exactly those values; it still
        # reads the same ssh_config for the keys kdist does not resolve (IdentitiesOnly,
        # CertificateFile, IdentityAgent, Ciphers...). The jump chain and the known_hosts files
        # are kdist's own, so host keys are checked (and recorded) hop by hop.
        timeout = self._timeout(hop)
        args: dict[str, Any] = {
            "config": list(self.options.ssh_config),
            "port": hop.port,
            "tunnel": tunnel,
            "known_hosts": known_hosts,
            "agent_forwarding": False,
            "x11_forwarding": False,
            "request_pty": False,
            "send_env": None,  # the build's environment is what kdist sets, not SendEnv
            "connect_timeout": timeout,
            "login_timeout": timeout,
            "keepalive_interval": self.options.keepalive_interval,
            "keepalive_count_max": self.options.keepalive_count_max,
        }
        if hop.ciphers is None:  # ssh_config's Ciphers, when set, is applied by asyncssh itself
            args["encryption_algs"] = list(CIPHERS)
        if tunnel is not None:
            args["proxy_command"] = None  # ProxyJump was chosen; asyncssh would prefer a command
        if hop.user:
            args["username"] = hop.user
        if hop.identity_files:
            args["client_keys"] = [str(path) for path in hop.identity_files]
            # Keys from ssh_config may be encrypted and served by the agent, as with ssh.
            args["ignore_encrypted"] = "identity_file" not in hop.written
        return args

    def _record(self, hop: Endpoint, conn: asyncssh.SSHClientConnection, path: Path) -> None:
        """accept-new: a host with no key on record is trusted once and its key written down."""
        key = conn.get_server_host_key()
        assert key is not None
        pattern = _known_hosts_name(hop)
        files = known_hosts_files(hop)
        if _is_known(files, hop):  # another connection of this run recorded it meanwhile
            held = {line.fingerprint for line in known_hosts_lines(files, hop)}
            if key.get_fingerprint("sha256") in held:
                return
            conn.close()
            msg = f"{self._where(hop)}: host key changed while it was being recorded"
            raise ConnectError(msg)
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("a", encoding="utf-8") as handle:
            handle.write(f"{pattern} {key.export_public_key().decode().strip()}\n")
        if self.options.on_new_key is not None:
            self.options.on_new_key(
                f"{self._where(hop)}: recorded host key {key.get_algorithm()} "
                f"{key.get_fingerprint('sha256')} for {pattern} in {path}"
            )

    async def _refused(
        self,
        hop: Endpoint,
        tunnel: asyncssh.SSHClientConnection | None,
        files: Sequence[Path],
    ) -> str:
        """Why a host key was refused: the key offered, and the known_hosts lines it contradicts."""
        lines = known_hosts_lines(files, hop)
        offered = await self._offered_key(hop, tunnel, [line.algorithm for line in lines])
        pattern = _known_hosts_name(hop)
        where = self._where(hop)
        if not lines:
            names = ", ".join(map(str, files))
            return (
                f"{where}: host key unknown: it offered {offered}, and {names} has no key for "
                f"{pattern}; check that fingerprint, then run again with --accept-new-host-keys "
                "to record it"
            )
        held = "; ".join(str(line) for line in lines[:3])
        first = lines[0]
        return (
            f"{where}: host key refused: it offered {offered}, but {held}. If the host "
            f"was reinstalled, remove the old key (ssh-keygen -R '{pattern}' -f {first.path}) "
            "and run again with --accept-new-host-keys"
        )

    async def _offered_key(
        self, hop: Endpoint, tunnel: asyncssh.SSHClientConnection | None, algorithms: list[str]
    ) -> str:
        """The key the host offers for the algorithms on record (a second, unauthenticated look)."""
        try:
            key = await wait_for(
                asyncssh.get_server_host_key(
                    hop.address,
                    hop.port,
                    tunnel=tunnel,
                    proxy_command=None,
                    server_host_key_algs=list(dict.fromkeys(algorithms)) or (),
                    config=None,
                ),
                self._timeout(hop),
            )
        except (asyncio.TimeoutError, TimeoutError, OSError, asyncssh.Error, ValueError) as exc:
            return f"a key kdist could not fetch again ({inert(str(exc)) or 'timeout'})"
        if key is None:
            return "no host key"
        return f"{key.get_algorithm()} {key.get_fingerprint('sha256')}"

    def _private_dir(self) -> str:
        if self._sockdir is None:
            self._sockdir = tempfile.mkdtemp(prefix="kdist-rsh-")  # mode 0700: only we connect
        return self._sockdir

    def _rsh_command(self) -> str:
        """rsync's --rsh: the helper that hands its session to this connection's listener."""
        self._connection()
        if self._listener is None:
            path = str(Path(self._private_dir()) / "s")
            helper = [sys.executable, "-I", rsh.__file__, path]
            if any("'" in word or '"' in word for word in helper):
                msg = f"{self.label}: cannot build an rsync --rsh command from paths with quotes"
                raise ConnectError(msg)
            self._listener = Listener(path, self._carry)
            self._listener.start()
            self._rsh = to_shell(helper)
        return self._rsh

    async def _carry(self, handoff: Handoff) -> None:
        """Carry one rsync session handed over by the helper on a channel of this connection."""
        transfer = self._transfers.get(handoff.transfer)
        if transfer is None:  # not a transfer of this connection (a helper outliving its rsync)
            handoff.close()
            return
        pipes = Pipes(handoff, transfer.meter.add)
        transfer.sessions.append(pipes)
        channel: asyncssh.SSHClientChannel[bytes] | None = None
        try:
            await pipes.open()
            channel, _ = await self._connection().create_session(
                lambda: _Carried(pipes),
                handoff.command,
                encoding=None,
                window=TRANSFER_WINDOW,
            )
            pipes.attach(channel)
            await pipes.done
        except (OSError, asyncssh.Error, ConnectError) as exc:
            pipes.received_stderr(f"kdist: cannot carry rsync to {self.label}: {exc}\n".encode())
        finally:
            if channel is not None:
                channel.close()
            pipes.finish()

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
        max_output: int | None = None,
        stdout_only: bool = False,
    ) -> CommandResult:
        """Run argv on the host (quoted once, here), streaming merged output to `sink`."""
        conn = self._connection()
        start = time.monotonic()
        collector = OutputCollector(sink, max_output=max_output)
        wrapped = in_dir(argv, cwd, env or {})
        if timeout is not None and not hold_stdin:  # a guarded build has its own watchdog
            wrapped = bounded(wrapped, timeout)
        command = to_shell(wrapped)
        proc: asyncssh.SSHClientProcess[str] | None = None
        try:
            # surrogateescape keeps bytes that are not UTF-8: the log gets them back as sent,
            # and kdist.text shows each one as \xNN.
            # The deadline covers opening the channel too: a hostile sshd may answer
            # keepalives and never the channel open.
            stderr = asyncssh.PIPE if stdout_only else asyncssh.STDOUT
            opening = conn.create_process(
                command, stderr=stderr, encoding="utf-8", errors=HOST_ERRORS
            )
            proc = opened = await wait_for(opening, timeout)
            left = None if timeout is None else max(timeout - (time.monotonic() - start), 0.0)
            apart = StderrTail() if stdout_only else None
            returncode = await wait_for(
                _communicate(opened, stdin, collector, hold_stdin, apart), left
            )
        except asyncio.TimeoutError as exc:
            if timeout is not None and time.monotonic() - start >= timeout:
                msg = f"{self.label}: {argv[0]} did not finish within {timeout:g}s; stopped"
                raise CommandTimeout(msg) from exc
            raise self._lost(f"running {argv[0]}", exc) from exc  # a socket timed out
        except OutputTooLarge as exc:  # closing the channel below stops it
            msg = f"{self.label}: {argv[0]} printed more than {exc.limit} characters; stopped"
            raise OutputTooLarge(exc.limit, msg) from exc
        except (OSError, asyncssh.Error) as exc:
            raise self._lost(f"running {argv[0]}", exc) from exc
        finally:
            if proc is not None:
                proc.close()  # on timeout or cancel, this is what tells a guard to stop
        kept = apart.text() if apart is not None else ""
        return CommandResult(
            tuple(argv), returncode, collector.text(), kept, time.monotonic() - start
        )

    async def spawn(self, argv: Sequence[str]) -> Spawned:
        """Start argv on the host with stdin held open (closed by `close()`)."""
        conn = self._connection()
        try:
            proc = await conn.create_process(
                to_shell(argv), stderr=asyncssh.STDOUT, encoding="utf-8", errors=HOST_ERRORS
            )
        except (OSError, asyncssh.Error) as exc:
            raise self._lost(f"starting {argv[0]}", exc) from exc
        return _SshSpawned(proc)

    def _lost(self, doing: str, exc: BaseException) -> ConnectionLost:
        # A disconnect carries the server's reason text: a hostile host chooses it.
        return ConnectionLost(f"{self.label}: connection lost while {doing}: {inert(str(exc))}")

    async def push(
        self,
        src: Path,
        dest: str,
        *,
        progress: Progress | None = None,
        deadline: TransferDeadline | None = None,
    ) -> CommandResult:
        """Rsync `src` to `dest` on the host over this connection."""
        await self.run(mkdir(dest), timeout=deadline.idle if deadline else None)
        argv = rsync_push(
            self._rsh_command(), src, dest, compress=self.options.compress, deadline=deadline
        )
        return await self._rsync(argv, progress, None, deadline)

    async def pull(
        self,
        src: str,
        dest: Path,
        *,
        progress: Progress | None = None,
        deadline: TransferDeadline | None = None,
        only: Sequence[str] | None = None,
    ) -> CommandResult:
        """Rsync the regular files under `src` (or just `only` of them) on the host into `dest`."""
        with contextlib.ExitStack() as stack:
            listed = None if only is None else stack.enter_context(names_file(only))
            argv = rsync_pull(
                self._rsh_command(), src, dest, compress=self.options.compress,
                deadline=deadline, files_from=listed,
            )  # fmt: skip
            return await self._rsync(argv, progress, dest, deadline)

    async def _rsync(
        self,
        argv: list[str],
        progress: Progress | None,
        receiving: Path | None,
        deadline: TransferDeadline | None,
    ) -> CommandResult:
        """Run the local rsync; its carried sessions count their bytes into `progress`."""
        name = f"t{next(_TRANSFERS)}"
        transfer = self._transfers[name] = _Transfer(_Meter(progress))
        total = deadline.total if deadline else None
        try:
            env = {rsh.TRANSFER_ENV: name}
            result = await run_rsync(argv, receiving, env=env, timeout=total)
        except CommandTimeout as exc:  # the host's side is stopped by its own wall-clock limit
            msg = f"{self.label}: rsync did not finish within {total:g}s; stopped"
            raise CommandTimeout(msg) from exc
        finally:
            del self._transfers[name]
            for pipes in transfer.sessions:  # rsync has ended (or was stopped): so have they
                pipes.gone()
        remote = b"".join(pipes.stderr_text() for pipes in transfer.sessions)
        return replace(result, stderr=remote.decode("utf-8", HOST_ERRORS)) if remote else result

    async def forward_socket(self, remote_path: str) -> str:
        """A private local socket reaching `remote_path` on the host through this connection.

        Every client connection to it becomes a channel of the one SSH connection
        (direct-streamlocal, like `ssh -L local:remote`), so a docker client that uses it
        never logs in again.
        """
        conn = self._connection()
        if remote_path in self._forwards:
            return self._forwards[remote_path]
        local = str(Path(self._private_dir()) / f"fwd{len(self._forwards)}")
        limit = self._timeout(self.host.endpoint)  # a channel open the sshd never answers
        try:
            _, probe = await wait_for(conn.open_unix_connection(remote_path), limit)
            probe.close()
        except (asyncio.TimeoutError, TimeoutError) as exc:
            msg = f"{self.label}: no answer to opening {remote_path} over SSH within {limit:g}s"
            raise ConnectError(msg) from exc
        except asyncssh.ChannelOpenError as exc:
            msg = (
                f"{self.label}: cannot reach {remote_path} over SSH ({inert(exc.reason)}): nothing "
                "listens there, or sshd forbids forwarding (AllowTcpForwarding no)"
            )
            raise ConnectError(msg) from exc
        try:
            await conn.forward_local_path(local, remote_path)
        except (OSError, asyncssh.Error) as exc:
            msg = f"{self.label}: cannot forward {remote_path}: {inert(str(exc))}"
            raise ConnectError(msg) from exc
        self._forwards[remote_path] = local
        return local

    async def close(self) -> None:
        """Close the relay, the forwarded sockets and the connection."""
        self._forwards.clear()
        if self._listener is not None:
            await self._listener.close()
            self._listener = None
        if self._sockdir is not None:
            shutil.rmtree(self._sockdir, ignore_errors=True)
            self._sockdir = None
        self._conn = None
        for conn in reversed(self._hops):  # the host first, then the jump hosts it went through
            conn.close()
            with contextlib.suppress(Exception):
                await conn.wait_closed()
        self._hops.clear()

    def _connection(self) -> asyncssh.SSHClientConnection:
        if self._conn is None:
            msg = f"{self.label}: not connected"
            raise ConnectError(msg)
        return self._conn


async def _communicate(
    proc: asyncssh.SSHClientProcess[str],
    stdin: str | None,
    collector: OutputCollector,
    hold_stdin: bool,
    apart: StderrTail | None = None,
) -> int:
    if stdin is not None:
        proc.stdin.write(stdin)
    if not hold_stdin:
        proc.stdin.write_eof()
    errors = asyncio.ensure_future(apart.drain(proc.stderr.read)) if apart else None
    try:
        while chunk := await proc.stdout.read(READ_CHUNK):
            collector.feed_text(chunk)
        if errors is not None:
            await errors
    finally:
        if errors is not None:
            errors.cancel()
    collector.close()
    done = await proc.wait()
    if done.exit_status is not None:
        return done.exit_status
    return 128 + 9 if done.exit_signal else 255  # killed by a signal, or the channel dropped


class _SshSpawned:
    """A remote command whose stdin we hold open."""

    def __init__(self, proc: asyncssh.SSHClientProcess[str]) -> None:
        self._proc = proc
        self._lines = LineReader(proc.stdout.read)

    async def readline(self) -> str:
        """The next output line, cut at the line limit ('' at EOF)."""
        try:
            return await self._lines.readline()
        except (OSError, asyncssh.Error):
            return ""

    async def close(self) -> None:
        """End its stdin and close the channel."""
        with contextlib.suppress(OSError, asyncssh.Error):
            self._proc.stdin.write_eof()
        self._proc.close()


class _Meter:
    """Counts the bytes of one transfer (all its relay sessions) and tells `progress`."""

    def __init__(self, progress: Progress | None) -> None:
        self.progress = progress
        self.bytes = 0

    def add(self, count: int) -> None:
        self.bytes += count
        if self.progress is not None:
            self.progress(self.bytes)


_TRANSFERS = itertools.count(1)


@dataclass
class _Transfer:
    """One rsync run: its byte count and the sessions carried for it."""

    meter: _Meter
    sessions: list[Pipes] = field(default_factory=list)


class _Carried(asyncssh.SSHClientSession[bytes]):
    """The channel side of a carried rsync session: output to rsync's pipe, flow both ways."""

    def __init__(self, pipes: Pipes) -> None:
        self._pipes = pipes

    def data_received(self, data: bytes, datatype: asyncssh.DataType) -> None:
        if datatype == asyncssh.EXTENDED_DATA_STDERR:
            self._pipes.received_stderr(data)
        else:
            self._pipes.received(data)

    def eof_received(self) -> bool:
        return True  # half open until the channel closes, as ssh keeps it for rsync

    def pause_writing(self) -> None:
        self._pipes.pause_sending()

    def resume_writing(self) -> None:
        self._pipes.resume_sending()

    def connection_lost(self, exc: Exception | None) -> None:
        self._pipes.finish()


@dataclass(frozen=True)
class KnownHostsLine:
    """A known_hosts line that names a host: where it is and which key it holds."""

    path: Path
    number: int
    marker: str  # "", "cert-authority" or "revoked"
    algorithm: str
    fingerprint: str

    def __str__(self) -> str:
        marker = f"@{self.marker} " if self.marker else ""
        return f"{self.path}:{self.number} holds {marker}{self.algorithm} {self.fingerprint}"


def known_hosts_files(hop: Endpoint) -> tuple[Path, ...]:
    """Where the host's key is looked up: the resolved files, else ~/.ssh/known_hosts."""
    return hop.known_hosts or (DEFAULT_KNOWN_HOSTS.expanduser(),)


def known_hosts_lines(files: Sequence[Path], hop: Endpoint) -> list[KnownHostsLine]:
    """Every line of `files` with a key for the host (asyncssh matches patterns and hashes)."""
    found = []
    for path in files:
        try:
            text = path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            continue
        for number, line in enumerate(text.splitlines(), 1):
            if line.strip() and not line.lstrip().startswith("#"):
                found += _line_keys(path, number, line, hop)
    return found


def _line_keys(path: Path, number: int, line: str, hop: Endpoint) -> list[KnownHostsLine]:
    try:
        matched = asyncssh.import_known_hosts(line).match(hop.address, "", hop.port)
    except (ValueError, asyncssh.Error):
        return []  # a line asyncssh cannot read is not evidence either way
    keys, cas, revoked = matched[:3]
    marked = [("", k) for k in keys] + [("cert-authority", k) for k in cas]
    marked += [("revoked", k) for k in revoked]
    return [
        KnownHostsLine(path, number, m, k.get_algorithm(), k.get_fingerprint("sha256"))
        for m, k in marked
    ]


def _is_known(files: Sequence[Path], hop: Endpoint) -> bool:
    """True when a known_hosts file has a key (or CA) for the host: then only that is accepted."""
    existing = [path for path in files if path.is_file()]
    try:
        table = asyncssh.read_known_hosts([str(path) for path in existing])
    except (OSError, ValueError, asyncssh.Error):
        return bool(existing)  # unreadable: fail closed, strict checking will report it
    matched = table.match(hop.address, "", hop.port)
    return any(matched[:2])


def _known_hosts_name(hop: Endpoint) -> str:
    """How OpenSSH writes the host in known_hosts: `addr`, or `[addr]:port` off port 22."""
    return hop.address if hop.port == 22 else f"[{hop.address}]:{hop.port}"


# --------------------------------------------------------------------------- ssh_config


class _ClientConfig(asyncssh.config.SSHClientConfig):
    """asyncssh's ssh_config reader; like ssh it also expands %-tokens in UserKnownHostsFile."""

    _percent_expand = asyncssh.config.SSHClientConfig._percent_expand | {"UserKnownHostsFile"}


_JUMP = re.compile(
    r"^(?:ssh://)?(?:(?P<user>[^@/]+)@)?(?:\[(?P<v6>[^\]]+)\]|(?P<host>[^:@/\[\]]+))"
    r"(?::(?P<port>\d{1,5}))?/?$"
)


def resolve_host(host: Host, files: Sequence[Path]) -> Host:
    """`host` with ssh_config's value for each connection key the inventory did not write."""
    hop, jump = resolve_endpoint(host.endpoint, files, host.name)
    return host.reached_as(hop, _jumps(jump, files, host.name) if jump else ())


def resolve_endpoint(
    given: Endpoint, files: Sequence[Path], who: str
) -> tuple[Endpoint, str | None]:
    """What `ssh -G` says of the alias (written keys given as -p/-l/-i), and its ProxyJump."""
    written = given.written
    user = given.user if "user" in written and given.user else ()
    port = given.port if "port" in written else ()
    config = _load(given.alias, user, port, files, who)
    identity = config.get("IdentityFile", [])
    known = config.get("UserKnownHostsFile", None)
    if known == []:
        msg = f"host {who}: ssh_config says UserKnownHostsFile none; kdist always checks host keys"
        raise ConfigError(msg)
    timeout = config.get("ConnectTimeout")
    jump = config.get("ProxyJump")
    resolved = Endpoint(
        alias=given.alias,
        address=str(config.get("Hostname", given.alias)),
        port=int(str(config.get("Port", 22))),
        user=str(config.get("User") or _local_user(who)),
        identity_files=(given.identity_files if "identity_file" in written else _paths(identity)),
        known_hosts=(
            given.known_hosts
            if "known_hosts" in written
            else _paths(known) or (DEFAULT_KNOWN_HOSTS.expanduser(),)
        ),
        connect_timeout=float(timeout) if isinstance(timeout, int) and timeout > 0 else None,
        written=written,
        ciphers=str(config.get("Ciphers")) if config.get("Ciphers") else None,
    )
    return resolved, jump if isinstance(jump, str) else None


def _load(
    alias: str, user: object, port: object, files: Sequence[Path], who: str
) -> asyncssh.config.SSHClientConfig:
    args = (_local_user(who), user, alias, port)
    try:
        config = _ClientConfig.load(None, list(files), False, False, False, *args)
        if config.has_match_final():
            assert isinstance(config, asyncssh.config.SSHClientConfig)
            config = _final_pass(config, files, args, who)
    except (OSError, ValueError) as exc:  # asyncssh's ConfigParseError is a ValueError
        msg = f"host {who}: ssh_config: {exc}"
        raise ConfigError(msg) from exc
    assert isinstance(config, asyncssh.config.SSHClientConfig)
    return config


def _final_pass(
    first: asyncssh.config.SSHClientConfig,
    files: Sequence[Path],
    args: tuple[object, ...],
    who: str,
) -> asyncssh.config.SSHConfig:
    # ssh re-reads the files on top of the first pass (first value still wins); asyncssh's
    # connect starts the second pass afresh. kdist follows ssh, and refuses a config where the
    # two would reach different servers.
    final = _ClientConfig.load(first, list(files), False, False, True, *args)
    afresh = _ClientConfig.load(first, list(files), True, False, True, *args)
    if final.get("Hostname") != afresh.get("Hostname"):
        msg = f"host {who}: ssh_config sets HostName under `Match final`, which kdist cannot follow"
        raise ConfigError(msg)
    return final


def _local_user(who: str) -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError) as exc:
        msg = f"host {who}: no local user name to log in as (set USER, or the inventory's user)"
        raise ConfigError(msg) from exc


def _paths(values: object) -> tuple[Path, ...]:
    words = values if isinstance(values, list) else []
    # ssh keeps one of each (a `Match final` pass reads IdentityFile lines twice).
    return tuple(dict.fromkeys(Path(str(word)).expanduser() for word in words))


def _jumps(spec: str, files: Sequence[Path], who: str, depth: int = 0) -> tuple[Endpoint, ...]:
    """The ProxyJump chain in connection order; the first hop's own ProxyJump comes before it."""
    hops: list[Endpoint] = []
    for index, item in enumerate(spec.split(",")):
        hop, own = resolve_endpoint(_jump_spec(item.strip(), who), files, who)
        if index == 0 and own and depth < MAX_JUMPS:
            hops += _jumps(own, files, who, depth + 1)
        hops.append(hop)
    if len(hops) > MAX_JUMPS or (depth >= MAX_JUMPS):
        msg = f"host {who}: ProxyJump goes through more than {MAX_JUMPS} hosts (a loop?)"
        raise ConfigError(msg)
    return tuple(hops)


def _jump_spec(item: str, who: str) -> Endpoint:
    """`[ssh://][user@]host[:port]`, the user and port taken as written (like -l and -p)."""
    match = _JUMP.fullmatch(item)
    if not match:
        msg = f"host {who}: ProxyJump {item!r} is not [user@]host[:port]"
        raise ConfigError(msg)
    alias = match["v6"] or match["host"]
    written = {key for key in ("user", "port") if match[key]}
    port = int(match["port"]) if match["port"] else 22
    return Endpoint(alias, alias, port, match["user"], written=frozenset(written))


def _fingerprint(conn: asyncssh.SSHClientConnection | None) -> str:
    """SHA256 fingerprint of the host key a connection verified (for the provenance)."""
    key = conn.get_server_host_key() if conn is not None else None
    return key.get_fingerprint("sha256") if key is not None else ""
