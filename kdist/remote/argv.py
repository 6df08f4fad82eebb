"""Pure argv builders: the remote wrapper, rsync push/pull, file helpers; quoting is at the edge."""

from __future__ import annotations

import math
import shlex
from collections.abc import Mapping, Sequence
from pathlib import Path

from kdist.model import Limits, TransferDeadline

# Exit code of the remote wrapper when the working directory is missing.
NO_WORKDIR = 97

# _output/ holds build state, .git/ is the head node's business, .kdist/ holds the host-side
# lock and attempt markers (deleting them under a running build would break the lock).
SYNC_EXCLUDES = ("/_output/", "/.git/", "/.kdist/")

# Removed from every remote command's environment. sshd sets SSH_CLIENT and SSH_CONNECTION, and
# a login bash that execs our command hands it SHLVL=0: Debian's bash then takes any bash the
# build starts (make's SHELL, scripts) for one run by sshd and reads /etc/bash.bashrc and
# ~/.bashrc, under the build's `set -o nounset` too. BASH_ENV and ENV name files a
# non-interactive bash or sh would read. Without them a build sees only what kdist hands it.
SCRUBBED_ENV = ("BASH_ENV", "ENV", "SSH_CLIENT", "SSH2_CLIENT", "SSH_CONNECTION", "SSH_TTY")

# `sh -c SOCKET_SCRIPT kdist-socket PATH`: can the SSH user use the docker socket at PATH?
SOCKET_SCRIPT = (
    'if [ ! -e "$1" ]; then echo missing; elif [ ! -S "$1" ]; then echo not-a-socket; '
    'elif [ -r "$1" ] && [ -w "$1" ]; then echo ok; '
    'else echo "denied $(id -un 2>/dev/null) $(ls -ln "$1" | cut -d" " -f1,3,4)"; fi'
)
# `sh -c OWNER_SCRIPT kdist-owner DIR`: the uid:gid that owns DIR (GNU stat, else BSD stat).
OWNER_SCRIPT = 'stat -c %u:%g -- "$1" 2>/dev/null || stat -f %u:%g -- "$1"'
# `sh -c BOUNDED_SCRIPT SECONDS CMD...`: CMD under coreutils `timeout` when the host has it
# (SIGTERM to its process group, SIGKILL 5 s later). Closing an SSH channel does not stop a
# bare remote command, so a command kdist stopped waiting for is stopped on its host too.
BOUNDED_SCRIPT = (
    'if command -v timeout >/dev/null 2>&1; then exec timeout -k 5 "$0" "$@"; fi; exec "$@"'
)
HOST_GRACE = 2  # seconds the host-side limit runs past the head node's: the head node speaks first


def in_dir(argv: Sequence[str], cwd: str | None, env: Mapping[str, str]) -> list[str]:
    """Wrap argv so it runs in `cwd` with `env` added, as one argv for `sh -c` on the host."""
    script = f'unset {" ".join(SCRUBBED_ENV)}; exec env -- "$@"'
    if cwd is not None:
        script = (
            f'cd "$1" 2>/dev/null || {{ echo "kdist: no directory $1" >&2; exit {NO_WORKDIR}; }}'
            f"; shift; {script}"
        )
    assignments = [f"{k}={v}" for k, v in sorted(env.items())]
    head = ["sh", "-c", script, "kdist"] + ([cwd] if cwd is not None else [])
    # `env NAME=VALUE ... cmd`: a first word containing '=' would be taken as an assignment.
    if argv and "=" in argv[0]:
        msg = f"command word {argv[0]!r} would be read as an assignment"
        raise ValueError(msg)
    return [*head, *assignments, *argv]


def bounded(argv: Sequence[str], seconds: float) -> list[str]:
    """argv stopped on the host a little after `seconds`, where coreutils `timeout` exists."""
    if not argv:
        msg = "bounded needs a command"
        raise ValueError(msg)
    return ["sh", "-c", BOUNDED_SCRIPT, str(math.ceil(seconds) + HOST_GRACE), *argv]


def to_shell(argv: Sequence[str]) -> str:
    """Quote argv once for a remote shell (the only place kdist quotes)."""
    return shlex.join(argv)


def mkdir(path: str) -> list[str]:
    """Create a directory and its parents."""
    return ["mkdir", "-p", "--", path]


def remove(path: str) -> list[str]:
    """Remove a path recursively (used for stale artifacts and `clean --remote`)."""
    return ["rm", "-rf", "--", path]


def remove_tree(path: str) -> list[str]:
    """Remove a build tree, first making Go's read-only module cache writable."""
    return ["sh", "-c", 'chmod -R u+w -- "$1" 2>/dev/null; rm -rf -- "$1"', "kdist-clean", path]


def write_file(path: str) -> list[str]:
    """Write stdin to `path` atomically (temp file + rename in the same directory)."""
    script = 'mkdir -p -- "$(dirname -- "$1")" && cat > "$1.tmp.$$" && mv -f -- "$1.tmp.$$" "$1"'
    return ["sh", "-c", script, "kdist-write", path]


def rsync_push(
    rsh: str | None,
    src: Path,
    dest: str,
    excludes: Sequence[str] = SYNC_EXCLUDES,
    *,
    compress: bool = False,
    deadline: TransferDeadline | None = None,
) -> list[str]:
    """Rsync the tree `src` to `dest` (remote `kdist:dest` when rsh is given), incrementally."""
    argv = ["rsync", "--recursive", "--links", "--perms", "--times", "--delete", "--protect-args"]
    argv += [f"--exclude={pattern}" for pattern in excludes]
    return argv + _rsh(rsh, compress, deadline) + ["--", f"{src}/", _remote(rsh, dest) + "/"]


def rsync_pull(
    rsh: str | None,
    src: str,
    dest: Path,
    max_size: int = Limits.artifact_file_bytes,
    *,
    compress: bool = False,
    deadline: TransferDeadline | None = None,
    files_from: Path | None = None,
) -> list[str]:
    """Rsync the directory `src` into the fresh local folder `dest`: regular files only.

    `files_from` names a local file of NUL-separated names: only those are pulled.
    """
    # No --links and no --devices/--specials: symlinks, devices and FIFOs are skipped by rsync,
    # so a hostile host cannot plant them; the collector re-checks everything anyway.
    # --dirs, not --recursive: only what the host listed (the folder's own entries) can come,
    # never the contents of a subfolder that no limit counted (a subfolder is refused anyway).
    # --exclude=*/: not even an empty folder is made for one (the listing refuses them too).
    argv = ["rsync", "--dirs", "--times", "--perms", "--protect-args", "--exclude=*/"]
    argv += [f"--max-size={max_size}", "--chmod=go-w"]
    if files_from is not None:
        argv += [f"--files-from={files_from}", "--from0"]
    return argv + _rsh(rsh, compress, deadline) + ["--", _remote(rsh, src) + "/", f"{dest}/"]


def _rsh(rsh: str | None, compress: bool, deadline: TransferDeadline | None) -> list[str]:
    # rsync's own --timeout: a transfer that moves nothing for deadline.idle ends (exit 30).
    argv = [f"--timeout={max(1, math.ceil(deadline.idle))}"] if deadline else []
    if not rsh:
        return argv  # a copy on this machine: nothing crosses a wire, nothing to compress
    # rsync 3.2+ negotiates the method (zstd, lz4, zlibx, zlib: the first both ends have), so
    # plain --compress is zstd between current rsyncs and zlib with an old one on either end.
    argv += [f"--rsh={rsh}", *(["--compress"] if compress else [])]
    if deadline is not None:
        # A sender stuck where rsync's --timeout cannot reach it (opening a FIFO swapped in
        # for a listed file blocks for ever) is killed on the host by the wall-clock limit.
        argv.append(f"--rsync-path={to_shell(bounded(['rsync'], deadline.total))}")
    return argv


def _remote(rsh: str | None, path: str) -> str:
    # The host part is a placeholder: the --rsh helper is already bound to one connection.
    return f"kdist:{path}" if rsh else path


def socket_access(path: str) -> list[str]:
    """Probe whether the SSH user may use the socket at `path` (one word, `ok` when it may)."""
    return ["sh", "-c", SOCKET_SCRIPT, "kdist-socket", path]


def owner_of(path: str) -> list[str]:
    """Print the uid:gid that owns `path`."""
    return ["sh", "-c", OWNER_SCRIPT, "kdist-owner", path]
