"""The transport contract (run, push, pull) shared by the SSH and the local implementation.

Every implementation raises the same classes for the same faults, so callers never guess
from a bare OSError whose fault it was:

- a host that cannot be reached, does not answer within the connect timeout, refuses the
  login or offers a host key that is not accepted: `ConnectError` (from `connect`);
- a connection that breaks while a command, a lock holder or a transfer uses it:
  `ConnectionLost`;
- a command that outlives the `timeout` given to `run`: `CommandTimeout`, once the transport
  gave up on it (here: its process group is killed; over SSH: its channel is closed, which a
  host-side guard takes as the order to stop, while a bare remote command may run on);
- this machine failing its own part (no rsync here, a local process that cannot start):
  `HeadNodeError`;
- a command that runs and exits non-zero is not an error: its CommandResult says so.

Cancelling a call stops the command first, then raises CancelledError. Nothing else leaves a
transport.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from kdist.errors import ConfigError
from kdist.model import CommandResult, Host

LineSink = Callable[[str], None]
Progress = Callable[[int], None]  # bytes a transfer has moved so far, on the wire
TAIL_LINES = 200


class Spawned(Protocol):
    """A command left running on a host until `close()` ends its stdin."""

    async def readline(self) -> str:
        """The next line of its output ('' at EOF)."""

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
    ) -> CommandResult:
        """Run argv in `cwd` with `env` added, streaming lines to `sink`; exit codes are data.

        Past `timeout` seconds CommandTimeout is raised (see the module docstring).
        With `hold_stdin` the command's stdin stays open until it exits: host-side guards take
        its EOF (the channel closing, the head node gone) as the order to stop the build.
        """

    async def spawn(self, argv: Sequence[str]) -> Spawned:
        """Start a long-lived command (a lock holder) whose stdin stays open until closed."""

    async def push(
        self, src: Path, dest: str, *, progress: Progress | None = None
    ) -> CommandResult:
        """Mirror the local tree `src` into `dest` on the host (rsync, incremental).

        rsync's exit code is data; HeadNodeError when rsync cannot run on this machine.
        `progress` hears, as data flows, how many bytes moved so far (not on the head node).
        """

    async def pull(
        self, src: str, dest: Path, *, progress: Progress | None = None
    ) -> CommandResult:
        """Copy the regular files under `src` on the host into the local folder `dest`.

        rsync's exit code is data, unless rsync says this machine could not write `dest`
        (disk full, read-only, ...): then HeadNodeError, naming the path. `progress` as in push.
        """

    async def forward_socket(self, remote_path: str) -> str:
        """A local Unix socket path that reaches the socket `remote_path` on the host."""

    async def close(self) -> None:
        """Release the connection; safe to call twice."""


class OutputCollector:
    """Feeds output lines to a sink and keeps the tail for error messages."""

    def __init__(self, sink: LineSink | None) -> None:
        self._sink = sink
        self._tail: deque[str] = deque(maxlen=TAIL_LINES)

    def feed(self, line: str) -> None:
        """Take one line (with or without its newline)."""
        line = line.rstrip("\r\n")
        self._tail.append(line)
        if self._sink is not None:
            self._sink(line)

    def text(self) -> str:
        """The kept tail as text."""
        return "\n".join(self._tail)


DEFAULT_SSH_CONFIGS = (Path("~/.ssh/config"), Path("/etc/ssh/ssh_config"))


@dataclass(frozen=True)
class SshOptions:
    """Connection settings that are not per host."""

    connect_timeout: float | None = None  # None: the host's ConnectTimeout, else 10 s
    keepalive_interval: float = 15.0
    keepalive_count_max: int = 3
    accept_new_host_keys: bool = False  # trust on first use (OpenSSH accept-new); never a change
    ssh_config: tuple[Path, ...] = ()  # the ssh_config files hosts were resolved with
    on_new_key: Callable[[str], None] | None = None  # told about every key accept-new records


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
