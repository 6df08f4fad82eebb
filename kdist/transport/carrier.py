"""rsync sessions carried in kdist's own event loop, from the pipes rsync's --rsh helper hands over.

rsync starts its --rsh (`rsh.py`) with a pipe for what it sends and one for what it reads. The
helper passes both descriptors to kdist over a private Unix socket (SCM_RIGHTS) and exits;
kdist opens a channel on the host's connection and moves bytes between the pipes and the
channel with asyncio transports, flow-controlled both ways (a full pipe pauses the channel's
window, a full window pauses reading the pipe). A transfer then costs one process, rsync, and
every byte is copied once less than through a relay process. The remote command's stderr is
kept here (its tail) for the transfer's result.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import stat
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol

from kdist.aio import wait_for

HANDOFF_TIMEOUT = 10.0  # a helper that connects and sends nothing is dropped after this
HEADER_LIMIT = 1 << 20
PIPE_BUFFER = 4 << 20  # bytes kdist holds for rsync before it pauses the channel
STDERR_KEPT = 64 * 1024  # the tail of a remote command's stderr kept for the result


@dataclass(frozen=True)
class Handoff:
    """One rsync session handed over: its remote command and rsync's two pipe ends."""

    command: str
    transfer: str  # the transfer id kdist put in rsync's environment
    sends: int  # the descriptor rsync writes into (bytes for the remote command's stdin)
    reads: int  # the descriptor rsync reads from (the remote command's stdout)

    def close(self) -> None:
        """Close both descriptors (a session that is never carried)."""
        for fd in (self.sends, self.reads):
            with contextlib.suppress(OSError):
                os.close(fd)


class Channel(Protocol):
    """What the carrier needs of an SSH channel."""

    def write(self, data: bytes) -> None:
        """Send bytes to the remote command's stdin."""

    def write_eof(self) -> None:
        """End the remote command's stdin."""

    def pause_reading(self) -> None:
        """Stop delivering the remote command's output (its window stays shut)."""

    def resume_reading(self) -> None:
        """Deliver output again."""

    def close(self) -> None:
        """Close the channel."""


class Pipes:
    """rsync's side of one carried session, wired to a channel once it is open."""

    def __init__(self, handoff: Handoff, count: Callable[[int], None]) -> None:
        self.handoff = handoff
        self.count = count  # told the size of every chunk moved, either way
        self.stderr: deque[bytes] = deque()
        self._stderr_size = 0
        self._channel: Channel | None = None
        self._early: list[bytes] = []  # what rsync sent before the channel was open
        self._early_eof = False
        self._up: asyncio.ReadTransport | None = None
        self._down: asyncio.WriteTransport | None = None
        self.done = asyncio.get_running_loop().create_future()

    async def open(self) -> None:
        """Take over rsync's pipes (non-blocking, in this event loop)."""
        loop = asyncio.get_running_loop()
        _widen(self.handoff.reads)
        sends = os.fdopen(self.handoff.sends, "rb", buffering=0)
        reads = os.fdopen(self.handoff.reads, "wb", buffering=0)
        self._up, _ = await loop.connect_read_pipe(lambda: _FromRsync(self), sends)
        self._down, _ = await loop.connect_write_pipe(lambda: _ToRsync(self), reads)
        self._down.set_write_buffer_limits(high=PIPE_BUFFER)

    def attach(self, channel: Channel) -> None:
        """The channel is open: send what rsync wrote meanwhile."""
        self._channel = channel
        for data in self._early:
            channel.write(data)
        self._early.clear()
        if self._early_eof:
            channel.write_eof()

    # --- from rsync
    def sent(self, data: bytes) -> None:
        """rsync wrote `data` for the remote command."""
        self.count(len(data))
        if self._channel is None:
            self._early.append(data)
        else:
            self._channel.write(data)

    def sent_eof(self) -> None:
        """rsync closed its side: the remote command's stdin ends."""
        if self._channel is None:
            self._early_eof = True
        else:
            self._channel.write_eof()

    def gone(self) -> None:
        """rsync's pipe broke (rsync exited or was killed): close the channel."""
        if self._channel is not None:
            self._channel.close()
        self.finish()

    # --- from the channel
    def received(self, data: bytes) -> None:
        """The remote command printed `data` on stdout: rsync reads it."""
        self.count(len(data))
        if self._down is not None and not self._down.is_closing():
            self._down.write(data)

    def received_stderr(self, data: bytes) -> None:
        """The remote command printed on stderr: keep the tail for the result."""
        self.stderr.append(data)
        self._stderr_size += len(data)
        while self._stderr_size > STDERR_KEPT and len(self.stderr) > 1:
            self._stderr_size -= len(self.stderr.popleft())

    def pause_sending(self) -> None:
        """The channel's window is full: stop reading what rsync sends."""
        if self._up is not None and not self._up.is_closing():
            self._up.pause_reading()

    def resume_sending(self) -> None:
        """The window opened again."""
        if self._up is not None and not self._up.is_closing():
            self._up.resume_reading()

    def pause_receiving(self) -> None:
        """rsync does not keep up: stop taking the remote command's output."""
        if self._channel is not None:
            self._channel.pause_reading()

    def resume_receiving(self) -> None:
        """rsync drained its pipe."""
        if self._channel is not None:
            self._channel.resume_reading()

    def finish(self) -> None:
        """The session is over: rsync reads EOF once what is buffered reached it."""
        for transport in (self._down, self._up):
            if transport is not None:
                transport.close()  # a write pipe sends its buffer first
        if not self.done.done():
            self.done.set_result(None)

    def stderr_text(self) -> bytes:
        """The kept tail of the remote command's stderr."""
        return b"".join(self.stderr)


class _FromRsync(asyncio.Protocol):
    def __init__(self, pipes: Pipes) -> None:
        self._pipes = pipes

    def data_received(self, data: bytes) -> None:
        self._pipes.sent(data)

    def eof_received(self) -> bool:
        self._pipes.sent_eof()
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        if exc is not None:
            self._pipes.gone()


class _ToRsync(asyncio.Protocol):
    def __init__(self, pipes: Pipes) -> None:
        self._pipes = pipes

    def pause_writing(self) -> None:
        self._pipes.pause_receiving()

    def resume_writing(self) -> None:
        self._pipes.resume_receiving()

    def connection_lost(self, exc: Exception | None) -> None:
        if exc is not None:  # EPIPE: rsync is gone
            self._pipes.gone()


class Listener:
    """The private Unix socket where one connection's --rsh helpers hand their sessions over."""

    def __init__(self, path: str, serve: Callable[[Handoff], Awaitable[None]]) -> None:
        self.path = path
        self._serve = serve
        self._sock: socket.socket | None = None
        self._task: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    def start(self) -> None:
        """Listen (the folder of `path` must be private: whoever can connect can hand over)."""
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.bind(self.path)
        sock.listen(128)
        sock.setblocking(False)
        self._sock = sock
        self._task = asyncio.get_running_loop().create_task(self._accept(sock))

    async def _accept(self, sock: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        while True:
            conn, _ = await loop.sock_accept(sock)
            task = loop.create_task(self._take(conn))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _take(self, conn: socket.socket) -> None:
        with conn:
            try:
                handoff = await wait_for(_receive(conn), HANDOFF_TIMEOUT)
            except (OSError, ValueError, KeyError, asyncio.TimeoutError):
                return  # the helper reports that kdist did not take the session
            with contextlib.suppress(OSError):
                await asyncio.get_running_loop().sock_sendall(conn, b"1")
        # A cancelled serve (kdist closing) ends quietly: Python before 3.12 would print a
        # traceback for it.
        with contextlib.suppress(asyncio.CancelledError):
            await self._serve(handoff)

    async def close(self) -> None:
        """Stop listening and end every session still being carried."""
        tasks = [t for t in (self._task, *self._tasks) if t is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._sock is not None:
            self._sock.close()
            self._sock = None


def _widen(fd: int) -> None:
    """A bigger kernel buffer toward rsync: fewer full-pipe stalls, fewer wake-ups per MiB."""
    if not stat.S_ISSOCK(os.fstat(fd).st_mode):
        return  # rsync makes socketpairs; a pipe keeps its size
    with contextlib.suppress(OSError), socket.socket(fileno=os.dup(fd)) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, PIPE_BUFFER)


async def _receive(conn: socket.socket) -> Handoff:
    """Read the helper's header line and the two descriptors that come with it."""
    loop = asyncio.get_running_loop()
    data, fds = b"", []
    try:
        while not data.endswith(b"\n") and len(data) < HEADER_LIMIT:
            await _readable(loop, conn)
            try:
                chunk, got, _, _ = socket.recv_fds(conn, 65536, 2)
            except BlockingIOError:
                continue
            fds += got
            if not chunk:
                break
            data += chunk
        header = json.loads(data)
        if len(fds) != 2 or not data.endswith(b"\n"):
            msg = "a helper handed over no complete session"
            raise ValueError(msg)
        return Handoff(str(header["command"]), str(header.get("transfer", "")), fds[0], fds[1])
    except BaseException:
        for fd in fds:
            os.close(fd)
        raise


async def _readable(loop: asyncio.AbstractEventLoop, conn: socket.socket) -> None:
    ready: asyncio.Future[None] = loop.create_future()

    def wake() -> None:
        if not ready.done():
            ready.set_result(None)

    loop.add_reader(conn.fileno(), wake)
    try:
        await ready
    finally:
        loop.remove_reader(conn.fileno())
