"""rsync's --rsh helper: carry one rsync session over kdist's existing SSH connection.

rsync runs `python3 rsh.py SOCKET HOST rsync --server ...` the way it would run `ssh HOST ...`.
This script sends the remote command line to kdist over the Unix socket SOCKET; kdist opens a
channel on its already-authenticated asyncssh connection, and relays bytes. Frames from kdist
are `type (1 byte) + length (4 bytes) + data`: 1 = stdout, 2 = stderr, 3 = exit status.
Standard library only and no kdist imports, so it starts fast and runs from any directory.
"""

from __future__ import annotations

import json
import os
import select
import socket
import struct
import sys
import threading

HEADER = struct.Struct("!BI")
STDOUT, STDERR, EXIT = 1, 2, 3
CHUNK = 256 * 1024
TRANSFER_ENV = "KDIST_TRANSFER"


def _read(fd: int) -> bytes:
    # rsync may share non-blocking pipe descriptions with us: wait instead of failing on EAGAIN.
    while True:
        try:
            return os.read(fd, CHUNK)
        except BlockingIOError:
            select.select([fd], [], [])


def _pump_stdin(sock: socket.socket) -> None:
    """Copy our stdin to kdist, then half-close so the remote side sees EOF."""
    try:
        while data := _read(0):
            sock.sendall(data)
        sock.shutdown(socket.SHUT_WR)
    except OSError:
        pass  # kdist went away; the reader side reports it


def _read_exact(sock: socket.socket, size: int) -> bytes:
    buf = bytearray()
    while len(buf) < size:
        part = sock.recv(size - len(buf))
        if not part:
            raise EOFError
        buf += part
    return bytes(buf)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        try:
            view = view[os.write(fd, view) :]
        except BlockingIOError:
            select.select([], [fd], [])


def main(argv: list[str]) -> int:
    """Relay one remote command; exit with its exit status."""
    if len(argv) < 3:
        sys.stderr.write("usage: rsh.py SOCKET HOST COMMAND...\n")
        return 255
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.connect(argv[0])
    except OSError as exc:
        sys.stderr.write(f"kdist rsh: cannot reach kdist at {argv[0]}: {exc}\n")
        return 255
    # Like ssh, join the command words with spaces: rsync has already quoted them. The
    # transfer id (set by kdist in rsync's environment) tells kdist whose bytes these are.
    header = {"command": " ".join(argv[2:]), "transfer": os.environ.get(TRANSFER_ENV, "")}
    sock.sendall(json.dumps(header).encode() + b"\n")
    threading.Thread(target=_pump_stdin, args=(sock,), daemon=True).start()
    try:
        while True:
            kind, size = HEADER.unpack(_read_exact(sock, HEADER.size))
            data = _read_exact(sock, size)
            if kind == EXIT:
                return int(data.decode())
            _write_all(1 if kind == STDOUT else 2, data)
    except EOFError:
        sys.stderr.write("kdist rsh: connection to kdist closed before the command ended\n")
        return 255
    except OSError as exc:
        sys.stderr.write(f"kdist rsh: relay failed: {exc}\n")
        return 255


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
