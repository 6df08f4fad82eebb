"""The transport contract (run, push, pull) shared by the SSH and the local implementation.

Every implementation raises the same classes for the same faults, so callers never guess
from a bare OSError whose fault it was:

- a host that cannot be reached, does not answer within the connect timeout, refuses the
  login or offers a host key that is not accepted: `ConnectError` (from `connect`);
- a connection that breaks while a command, a lock holder or a transfer uses it:
  `ConnectionLost`;
- a command that outlives the `timeout` given to `run`, or a transfer its `deadline`:
  `CommandTimeout`, once the transport gave up on it (here: its process group is killed; over
  SSH: its channel is closed, which a host-side guard takes as the order to stop, and a bare
  command runs under the host's `timeout`, which stops it a moment later);
- this machine failing its own part (no rsync here, a local process that cannot start):
  `HeadNodeError`;
- a command that prints more than the `max_output` given to `run`: `OutputTooLarge`, once
  the command is stopped (an integrity failure: kdist's own helpers never print that much);
- a command that runs and exits non-zero is not an error: its CommandResult says so.

Cancelling a call stops the command first, then raises CancelledError. Nothing else leaves a
transport.

Every caller passes a deadline (`timeout`, or a transfer's `deadline`), except for a guarded
build (`hold_stdin`), whose idle and total limits the build stage watches: no remote wait is
unbounded. tests/unit/test_deadlines.py checks that for a whole release on fake hosts.
"""

from __future__ import annotations

import contextlib
import os
import resource
import tempfile
from collections import deque
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from kdist.errors import ConfigError, OutputTooLarge
from kdist.model import CommandResult, Host, Limits, TransferDeadline
from kdist.text import HOST_ERRORS

LineSink = Callable[[str], None]
Progress = Callable[[int], None]  # bytes a transfer has moved so far, on the wire
TAIL_LINES = 200
LINE_LIMIT = Limits.line_limit  # characters of one output line kept (the default, once)
READ_CHUNK = 64 * 1024  # what a transport reads of a command's output at a time
STDERR_KEPT = 64 * 1024  # characters of a stdout_only command's stderr kept (its end)


class StderrTail:
    """The last STDERR_KEPT characters of a stream, fed in chunks (memory stays bounded)."""

    def __init__(self) -> None:
        self._text = ""

    def feed(self, chunk: str) -> None:
        """Add a chunk; only the end is kept."""
        self._text = (self._text + chunk)[-STDERR_KEPT:]

    def text(self) -> str:
        """What was kept."""
        return self._text

    async def drain(self, read: Callable[[int], Awaitable[str]]) -> None:
        """Read a stream to its end (`read(n)` gives '' there), keeping its last characters."""
        while chunk := await read(READ_CHUNK):
            self.feed(chunk)


class Spawned(Protocol):
    """A command left running on a host until `close()` ends its stdin."""

    async def readline(self) -> str:
        """The next line of its output, cut at LINE_LIMIT characters ('' at EOF)."""

    async def close(self) -> None:
        """Close its stdin and the channel; it is expected to exit."""


class Transport(Protocol):
    """Runs commands on one host and moves files to and from it."""

    host: Host
    host_key: str  # SHA256 fingerprint of the host key verified at connect ('' for no SSH)

    async def connect(self) -> None:
        """Open the connection (once per run); raise ConnectError when the host is unusable."""

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
        """Run argv in `cwd` with `env` added, streaming lines to `sink`; exit codes are data.

        Past `timeout` seconds CommandTimeout is raised (see the module docstring). Output is
        never held whole: lines are cut at LINE_LIMIT characters and only the last TAIL_LINES
        are kept, unless `max_output` is given: then all of it is kept, and a command printing
        more than `max_output` characters is stopped and OutputTooLarge raised.
        With `hold_stdin` the command's stdin stays open until it exits: host-side guards take
        its EOF (the channel closing, the head node gone) as the order to stop the build.
        Output is stdout and stderr merged, as a terminal shows them; with `stdout_only` (for
        output kdist parses) stderr is kept apart, in the result's `stderr` (its last
        STDERR_KEPT characters): what a host's shell start-up writes there is no data.
        """

    async def spawn(self, argv: Sequence[str]) -> Spawned:
        """Start a long-lived command (a lock holder) whose stdin stays open until closed."""

    async def push(
        self,
        src: Path,
        dest: str,
        *,
        progress: Progress | None = None,
        deadline: TransferDeadline | None = None,
    ) -> CommandResult:
        """Mirror the local tree `src` into `dest` on the host (rsync, incremental).

        rsync's exit code is data (exit 30: nothing moved for `deadline.idle`); HeadNodeError
        when rsync cannot run on this machine; CommandTimeout past `deadline.total`.
        `progress` hears, as data flows, how many bytes moved so far (not on the head node).
        """

    async def pull(
        self,
        src: str,
        dest: Path,
        *,
        progress: Progress | None = None,
        deadline: TransferDeadline | None = None,
        only: Sequence[str] | None = None,
    ) -> CommandResult:
        """Copy the regular files under `src` on the host into the local folder `dest`.

        With `only`, just those names are asked for (what the host listed before): a file the
        host adds to the folder after its listing never comes.

        rsync's exit code is data, unless rsync says this machine could not write `dest`
        (disk full, read-only, ...): then HeadNodeError, naming the path. `progress` and
        `deadline` as in push.
        """

    async def forward_socket(self, remote_path: str) -> str:
        """A local Unix socket path that reaches the socket `remote_path` on the host."""

    async def close(self) -> None:
        """Release the connection; safe to call twice."""


@contextlib.contextmanager
def names_file(names: Sequence[str]) -> Iterator[Path]:
    """A temporary file of `names`, NUL-separated, for rsync's --files-from --from0."""
    handle, path = tempfile.mkstemp(prefix="kdist-pull-")
    try:
        with os.fdopen(handle, "wb") as out:
            out.write(b"".join(n.encode("utf-8", HOST_ERRORS) + b"\0" for n in names))
        yield Path(path)
    finally:
        Path(path).unlink(missing_ok=True)


class OutputCollector:
    """Splits a command's output into lines for a sink, and keeps its tail (or all of it).

    What a host prints is bounded here, whatever it sends: a line longer than `line_limit`
    characters keeps its start and says how much was cut; without `max_output` only the last
    TAIL_LINES lines are kept; with it every line is kept, and output past `max_output`
    characters raises OutputTooLarge (the transport then stops the command).
    """

    def __init__(
        self,
        sink: LineSink | None,
        *,
        max_output: int | None = None,
        line_limit: int = LINE_LIMIT,
    ) -> None:
        self._sink = sink
        self._tail: deque[str] = deque(maxlen=None if max_output is not None else TAIL_LINES)
        self._max_output = max_output
        self._line_limit = line_limit
        self._partial = ""  # the start of a line whose end has not arrived yet
        self._cut = 0  # characters of the partial line dropped past line_limit
        self.received = 0  # characters seen in all

    def feed(self, line: str) -> None:
        """Take one whole line (with or without its newline)."""
        self._count(len(line))
        self._emit(line.rstrip("\r\n"), 0)

    def feed_text(self, chunk: str) -> None:
        """Take a piece of a stream, cut anywhere; whole lines go on, the rest waits."""
        self._count(len(chunk))
        *whole, rest = chunk.split("\n")
        for line in whole:
            self._emit(self._partial + line, self._cut)
            self._partial, self._cut = "", 0
        room = self._line_limit - len(self._partial)
        self._partial += rest[: max(room, 0)]
        self._cut += max(len(rest) - max(room, 0), 0)

    def close(self) -> None:
        """The stream ended: an unterminated last line counts as a line."""
        if self._partial or self._cut:
            self._emit(self._partial, self._cut)
            self._partial, self._cut = "", 0

    def _count(self, size: int) -> None:
        self.received += size
        if self._max_output is not None and self.received > self._max_output:
            raise OutputTooLarge(self._max_output)

    def _emit(self, line: str, cut: int) -> None:
        line = line.rstrip("\r")
        cut += max(len(line) - self._line_limit, 0)
        if cut:
            line = f"{line[: self._line_limit]} [kdist: {cut} more characters of this line dropped]"
        self._tail.append(line)
        if self._sink is not None:
            self._sink(line)

    def text(self) -> str:
        """The kept lines as text."""
        return "\n".join(self._tail)


class LineReader:
    """Reads a stream line by line through `read(n)`, holding at most one bounded line."""

    def __init__(self, read: Callable[[int], Awaitable[str]], line_limit: int = LINE_LIMIT) -> None:
        self._read = read
        self._limit = line_limit
        self._buffer = ""

    async def readline(self) -> str:
        """The next line with its newline, cut to the limit ('' at EOF)."""
        kept, cut = "", 0
        while True:
            if not self._buffer:
                self._buffer = await self._read(READ_CHUNK)
                if not self._buffer:
                    return kept + (f" [kdist: {cut} characters dropped]" if cut else "")
            index = self._buffer.find("\n")
            end = len(self._buffer) if index < 0 else index
            part, self._buffer = self._buffer[:end], self._buffer[end + 1 :]
            room = max(self._limit - len(kept), 0)
            kept, cut = kept + part[:room], cut + max(len(part) - room, 0)
            if index >= 0:
                return (f"{kept} [kdist: {cut} characters dropped]" if cut else kept) + "\n"


DEFAULT_SSH_CONFIGS = (Path("~/.ssh/config"), Path("/etc/ssh/ssh_config"))
FD_LIMIT_UNBOUNDED = 1 << 16  # the soft limit kdist asks for when the hard one is unlimited


@dataclass(frozen=True)
class SshOptions:
    """Connection settings that are not per host."""

    connect_timeout: float | None = None  # None: the host's ConnectTimeout, else 10 s
    keepalive_interval: float = 15.0
    keepalive_count_max: int = 3
    accept_new_host_keys: bool = False  # trust on first use (OpenSSH accept-new); never a change
    compress: bool = False  # rsync compresses on the wire (slow links; costs CPU on fast ones)
    ssh_config: tuple[Path, ...] = ()  # the ssh_config files hosts were resolved with
    on_new_key: Callable[[str], None] | None = None  # told about every key accept-new records


def raise_fd_limit() -> int:
    """Lift the soft limit on open files to the hard one; return the limit now in force.

    A connected host holds a descriptor for the whole run (and a running transfer two more),
    so a common soft limit of 1024 would cap a farm near a thousand hosts for no reason.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = hard if hard != resource.RLIM_INFINITY else max(soft, FD_LIMIT_UNBOUNDED)
    if soft < wanted:
        with contextlib.suppress(ValueError, OSError):  # a sandbox may refuse; keep the soft one
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def ssh_config_files(path: Path | None) -> tuple[Path, ...]:
    """`--ssh-config FILE` alone (as `ssh -F`), else ~/.ssh/config and /etc/ssh/ssh_config."""
    if path is not None:
        if not path.exists() or path.is_dir():  # /dev/null is fine: no config at all
            msg = f"--ssh-config {path}: no such file"
            raise ConfigError(msg)
        return (path,)
    found = (p.expanduser() for p in DEFAULT_SSH_CONFIGS)
    return tuple(p for p in found if p.is_file() and os.access(p, os.R_OK))


def resolve_hosts(hosts: Sequence[Host], ssh_config: Sequence[Path]) -> tuple[Host, ...]:
    """Fill what the inventory did not write from ssh_config, as `ssh -G` would."""
    from kdist.transport.ssh import resolve_host

    return tuple(host if host.local else resolve_host(host, ssh_config) for host in hosts)


def open_transport(host: Host, options: SshOptions | None = None) -> Transport:
    """The transport for `host`: local for the head node, SSH otherwise."""
    if host.local:
        from kdist.transport.local import LocalTransport

        return LocalTransport(host)
    from kdist.transport.ssh import SshTransport

    return SshTransport(host, options or SshOptions())
