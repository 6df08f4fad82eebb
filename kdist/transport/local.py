"""The transport contract on this machine: asyncio subprocesses and local rsync."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

from kdist.model import CommandResult, Host
from kdist.remote.argv import mkdir, rsync_pull, rsync_push
from kdist.transport import LineSink, OutputCollector, Spawned


class LocalTransport:
    """Runs builds on the head node itself, in place; no SSH involved."""

    def __init__(self, host: Host) -> None:
        self.host = host

    async def connect(self) -> None:
        """Nothing to open for the local machine."""

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
        """Run argv as a subprocess in its own process group, streaming merged output."""
        start = time.monotonic()
        collector = OutputCollector(sink)
        try:
            proc = await asyncio.create_subprocess_exec(
                *argv,
                cwd=cwd,
                env={**os.environ, **(env or {})},
                stdin=asyncio.subprocess.PIPE
                if stdin is not None or hold_stdin
                else asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT,
                start_new_session=True,  # so a timeout or Ctrl-C can kill the whole build tree
            )
        except OSError as exc:
            return CommandResult(tuple(argv), 127, f"kdist: cannot run {argv[0]}: {exc}")
        try:
            returncode = await asyncio.wait_for(
                self._communicate(proc, stdin, collector, hold_stdin), timeout
            )
        except (asyncio.TimeoutError, asyncio.CancelledError):
            _kill_group(proc)
            await proc.wait()
            raise
        return CommandResult(
            tuple(argv), returncode, collector.text(), "", time.monotonic() - start
        )

    @staticmethod
    async def _communicate(
        proc: asyncio.subprocess.Process,
        stdin: str | None,
        collector: OutputCollector,
        hold_stdin: bool,
    ) -> int:
        if stdin is not None and proc.stdin is not None:
            proc.stdin.write(stdin.encode())
            await proc.stdin.drain()
        if proc.stdin is not None and not hold_stdin:
            proc.stdin.close()
        assert proc.stdout is not None
        async for raw in proc.stdout:
            collector.feed(raw.decode("utf-8", "replace"))
        code = await proc.wait()
        if proc.stdin is not None:
            proc.stdin.close()
        return code

    async def spawn(self, argv: Sequence[str]) -> Spawned:
        """Start argv here with stdin held open (closed by `close()`)."""
        proc = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            start_new_session=True,
        )
        return _LocalSpawned(proc)

    async def push(self, src: Path, dest: str) -> CommandResult:
        """Mirror `src` into the local directory `dest` with rsync."""
        await self.run(mkdir(dest))
        return await self.run(rsync_push(None, src, dest))

    async def pull(self, src: str, dest: Path) -> CommandResult:
        """Copy the regular files under `src` into `dest` with rsync."""
        return await self.run(rsync_pull(None, src, dest))

    async def forward_socket(self, remote_path: str) -> str:
        """The head node's own socket: nothing to forward."""
        return remote_path

    async def close(self) -> None:
        """Nothing to release."""


class _LocalSpawned:
    """A local command whose stdin we hold open."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self._proc = proc

    async def readline(self) -> str:
        """The next output line ('' at EOF)."""
        assert self._proc.stdout is not None
        return (await self._proc.stdout.readline()).decode("utf-8", "replace")

    async def close(self) -> None:
        """End its stdin and wait for it (killing it if it lingers)."""
        if self._proc.stdin is not None:
            self._proc.stdin.close()
        try:
            await asyncio.wait_for(self._proc.wait(), 5)
        except asyncio.TimeoutError:
            _kill_group(self._proc)
            await self._proc.wait()


def _kill_group(proc: asyncio.subprocess.Process) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
