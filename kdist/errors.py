"""The kdist exception tree and exit codes; imports nothing else from kdist."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from enum import IntEnum


class ExitStatus(IntEnum):
    """Process exit codes, documented in the README."""

    OK = 0
    BUILD_FAILED = 1
    CONFIG_ERROR = 2
    INFRA_FAILED = 3
    INTEGRITY_ERROR = 4
    HEAD_NODE_FAILED = 5
    INTERNAL_ERROR = 70
    INTERRUPTED = 130
    OUTPUT_CLOSED = 141  # stdout's reader went away (`kdist ... | head`), as SIGPIPE would end it


class KdistError(Exception):
    """Root of every error kdist reports to the user as a message, not a traceback."""

    exit_status = ExitStatus.BUILD_FAILED


class ConfigError(KdistError):
    """Bad user input: inventory, profile, command-line options or plan constraints."""

    exit_status = ExitStatus.CONFIG_ERROR


class PreflightError(ConfigError):
    """Problems found before any connection; each one line naming the file, key or host."""

    def __init__(self, problems: tuple[str, ...]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


class InventoryError(ConfigError):
    """The host inventory is malformed; the message names the file and key path."""


class ProfileError(ConfigError):
    """The project profile is malformed or cannot be chosen."""


class PlanError(ConfigError):
    """No valid plan exists for the requested platforms and hosts."""


class InfraError(KdistError):
    """A host or the network failed (unreachable, auth, lost connection, missing tool)."""

    exit_status = ExitStatus.INFRA_FAILED


class ConnectError(InfraError):
    """A build host could not be reached, did not answer in time, or refused the login or key."""


class ConnectionLost(InfraError):
    """An open connection to a build host broke while a command or a transfer was running."""


class CommandTimeout(InfraError):
    """A command on a build host outlived its deadline and was stopped.

    Deliberately not a TimeoutError: since Python 3.11 that is an OSError, and kdist reads a
    bare OSError as the head node's own failure (see HeadNodeError).
    """


class TransferError(InfraError):
    """rsync failed to move files to or from a host."""


class CommandFailed(KdistError):
    """A command ran and exited non-zero (the build said no); carries the evidence."""

    def __init__(self, message: str, returncode: int, tail: str = "") -> None:
        super().__init__(message + (f"\n{tail}" if tail else ""))
        self.returncode = returncode
        self.tail = tail


class MissingArtifacts(KdistError):
    """A build exited 0 but left out binaries the slice must bring back."""


class Superseded(KdistError):
    """A hedged slice's other build was verified first: these binaries are not moved in."""


class IntegrityError(KdistError):
    """Something received from a build host failed verification."""

    exit_status = ExitStatus.INTEGRITY_ERROR


class OutputTooLarge(IntegrityError):
    """A host printed more than a command may (a manifest, a probe); the command was stopped."""

    def __init__(self, limit: int, message: str = "") -> None:
        super().__init__(message or f"more than {limit} characters of output")
        self.limit = limit


class Interrupted(KdistError):
    """The user stopped the run (Ctrl-C, SIGTERM); `stopped` says what stopped on each host."""

    exit_status = ExitStatus.INTERRUPTED

    def __init__(self, stopped: tuple[str, ...] = ()) -> None:
        super().__init__("interrupted")
        self.stopped = stopped


class PackageError(KdistError):
    """Packaging the release tarballs failed."""


class HeadNodeError(KdistError):
    """The head node failed its own part (its disk, its output folder, a tool it lacks).

    Never a build host's fault: no host is left out for it, and the run stops with one message.
    """

    exit_status = ExitStatus.HEAD_NODE_FAILED

    @classmethod
    def from_os(cls, exc: OSError) -> HeadNodeError:
        """The error for an OSError raised on this machine, naming the path it concerns."""
        path = exc.filename if exc.filename is not None else ""
        reason = exc.strerror or str(exc) or type(exc).__name__
        where = f"{path}: " if path else ""
        return cls(f"this machine (the head node): {where}{reason}")


@contextlib.contextmanager
def head_node_faults() -> Iterator[None]:
    """Turn an OSError raised inside into a HeadNodeError naming its path."""
    try:
        yield
    except OSError as exc:
        raise HeadNodeError.from_os(exc) from exc
