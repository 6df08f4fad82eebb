"""The kdist exception tree and exit codes; imports nothing else from kdist."""

from __future__ import annotations

from enum import IntEnum


class ExitStatus(IntEnum):
    """Process exit codes, documented in the README."""

    OK = 0
    BUILD_FAILED = 1
    CONFIG_ERROR = 2
    INFRA_FAILED = 3
    INTEGRITY_ERROR = 4
    INTERNAL_ERROR = 70
    INTERRUPTED = 130


class KdistError(Exception):
    """Root of every error kdist reports to the user as a message, not a traceback."""

    exit_status = ExitStatus.BUILD_FAILED


class ConfigError(KdistError):
    """Bad user input: inventory, profile, command-line options or plan constraints."""

    exit_status = ExitStatus.CONFIG_ERROR


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
    """A build host could not be reached or authenticated."""


class TransferError(InfraError):
    """rsync failed to move files to or from a host."""


class CommandFailed(KdistError):
    """A command ran and exited non-zero; carries its result as evidence."""

    def __init__(self, message: str, returncode: int, tail: str = "") -> None:
        super().__init__(message + (f"\n{tail}" if tail else ""))
        self.returncode = returncode
        self.tail = tail


class IntegrityError(KdistError):
    """Something received from a build host failed verification."""

    exit_status = ExitStatus.INTEGRITY_ERROR


class PackageError(KdistError):
    """Packaging the release tarballs failed."""
