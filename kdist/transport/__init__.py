"""The transport contract (run, push, pull) shared by the SSH and the local implementation."""

from __future__ import annotations

import dataclasses
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Protocol

from kdist.model import CommandResult, Host

LineSink = Callable[[str], None]
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

        With `hold_stdin` the command's stdin stays open until it exits: host-side guards take
        its EOF (the channel closing, the head node gone) as the order to stop the build.
        """

    async def spawn(self, argv: Sequence[str]) -> Spawned:
        """Start a long-lived command (a lock holder) whose stdin stays open until closed."""

    async def push(self, src: Path, dest: str) -> CommandResult:
        """Mirror the local tree `src` into `dest` on the host (rsync, incremental)."""

    async def pull(self, src: str, dest: Path) -> CommandResult:
        """Copy the regular files under `src` on the host into the local folder `dest`."""

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


def open_transport(
    host: Host, connect_timeout: float | None = None, *, accept_new_host_keys: bool = False
) -> Transport:
    """The transport for `host`: local for the head node, SSH otherwise.

    `connect_timeout` None keeps the SSH transport's own default.
    """
    if host.local:
        from kdist.transport.local import LocalTransport

        return LocalTransport(host)
    from kdist.transport.ssh import SshOptions, SshTransport

    options = SshOptions(accept_new_host_keys=accept_new_host_keys)
    if connect_timeout is not None:
        options = dataclasses.replace(options, connect_timeout=connect_timeout)
    return SshTransport(host, options)
