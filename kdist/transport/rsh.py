"""rsync's --rsh helper: hand one rsync session to kdist, which carries it over its connection.

rsync runs `python3 -I rsh.py SOCKET HOST rsync --server ...` the way it would run `ssh HOST ...`.
This script sends kdist, over the Unix socket SOCKET, the remote command line and its own
stdin and stdout (the ends of rsync's pipes, as SCM_RIGHTS), then exits: kdist opens a channel
on its already-authenticated asyncssh connection and moves the bytes between those pipes and
the channel itself (`kdist/transport/carrier.py`), keeping the remote command's stderr for the
transfer's result. So no process stays beside rsync for the transfer, and no byte is copied
through one.
Standard library only and no kdist imports, so it starts fast and runs from any directory.
"""

from __future__ import annotations

import json
import os
import socket
import sys

TRANSFER_ENV = "KDIST_TRANSFER"
HANDOFF_TIMEOUT = 60.0
HANDED = (0, 1)  # stdin (what rsync sends) and stdout (what it reads); stderr stays rsync's


def main(argv: list[str]) -> int:
    """Hand the session over; exit 0 once kdist has it, 255 when kdist cannot be reached."""
    if len(argv) < 3:
        sys.stderr.write("usage: rsh.py SOCKET HOST COMMAND...\n")
        return 255
    # Like ssh, join the command words with spaces: rsync has already quoted them. The
    # transfer id (set by kdist in rsync's environment) tells kdist whose bytes these are.
    header = {"command": " ".join(argv[2:]), "transfer": os.environ.get(TRANSFER_ENV, "")}
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(HANDOFF_TIMEOUT)  # a kdist that stops answering fails the transfer
            sock.connect(argv[0])
            socket.send_fds(sock, [json.dumps(header).encode() + b"\n"], list(HANDED))
            # kdist answers once it holds the pipes; only then may rsync see this process end.
            if sock.recv(1) != b"1":
                sys.stderr.write("kdist rsh: kdist did not take the session\n")
                return 255
    except OSError as exc:
        sys.stderr.write(f"kdist rsh: cannot reach kdist at {argv[0]}: {exc}\n")
        return 255
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
