"""Collect stage: pull a slice's binaries into fresh staging, verify them, then move them in."""

from __future__ import annotations

import hashlib
import os
import shutil
import stat
import tempfile
from collections.abc import Callable
from pathlib import Path

from kdist.errors import (
    HeadNodeError,
    IntegrityError,
    MissingArtifacts,
    OutputTooLarge,
    Superseded,
    TransferError,
    head_node_faults,
)
from kdist.model import Artifact, Limits, Platform, Slice, format_size
from kdist.remote import hostside
from kdist.stages import artifacts, binfmt
from kdist.stages.artifacts import Expected, rules_of
from kdist.text import inert
from kdist.transport import Progress, Transport

LIMITS = Limits()
MAX_ARTIFACT_BYTES = LIMITS.artifact_file_bytes

# A pulled file never keeps the mode its host gave it: kdist runs as whoever runs the release
# (often root), so a setuid bit from a build host would hand that user's rights to anyone who
# can run the file. Such bits are refused as evidence of tampering; everything else is reset.
SPECIAL_BITS = stat.S_ISUID | stat.S_ISGID | stat.S_ISVTX
EXECUTABLE_MODE = 0o755
DATA_MODE = 0o644


async def collect_slice(
    transport: Transport,
    slc: Slice,
    dest: Path,
    expected: Expected,
    relative_to: Path,
    attempt: str = "",
    progress: Progress | None = None,
    claim: Callable[[], bool] | None = None,
    limits: Limits = LIMITS,
) -> tuple[Artifact, ...]:
    """Pull `slc.artifacts` into `dest` (replacing it whole); only verified files arrive.

    `claim` (hedged slices) is asked once the files are verified; only if it says yes do
    they replace `dest`, so a twin that lost never touches the output.

    A remote host first lists what it built (kind, size, sha256, built in this attempt or
    not); symlinks, FIFOs, devices, stale files and more files or bytes than `limits` allow
    are refused before anything moves, a pull that would not fit on this machine's disk is
    not started, and every pulled file is re-hashed here and must match that list.
    """
    listed = None
    if not transport.host.local:
        listed = await remote_manifest(transport, slc, attempt, limits)
        check_manifest(listed, slc, expected, limits)
    dest.parent.mkdir(parents=True, exist_ok=True)
    if listed is not None:
        check_room(dest.parent, listed, limits.packaging_room)
    staging = Path(tempfile.mkdtemp(prefix=f".kdist-{slc.key}-", dir=dest.parent))
    try:
        # Only what the host listed (and was checked against the limits) is asked for.
        only = None if listed is None else sorted(n for n, e in listed.items() if e.kind == "f")
        result = await transport.pull(
            slc.artifacts, staging, progress=progress, deadline=limits.transfer, only=only
        )
        if not result.ok:
            msg = f"{slc.host}: pull of {slc.artifacts} failed (rsync exit {result.returncode})"
            raise TransferError(msg + (f"\n{result.tail(5)}" if result.stdout else ""))
        names = verify_staging(staging, slc.platform, expected, slc.host)
        if listed is not None:
            _match_manifest(staging, names, listed, slc)
        set_modes(staging, names)
        staging.chmod(0o755)  # mkdtemp made it private, which kept any tampered file unreachable
        if claim is not None and not claim():
            msg = f"{slc.host}: {slc.platform}: its twin's binaries were verified first; dropped"
            raise Superseded(msg)
        _replace_dir(staging, dest)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return tuple(_artifact(dest / name, relative_to) for name in names)


async def remote_manifest(
    transport: Transport, slc: Slice, attempt: str, limits: Limits = LIMITS
) -> dict[str, hostside.ManifestEntry]:
    """What the host says is in the artifacts folder, built by `attempt` or not.

    The list is bounded: more than `limits.manifest_bytes` of it, or more entries than
    `limits.artifact_files`, is an integrity failure (the host is left out).
    """
    where = f"{slc.host}: {slc.platform}"
    files, size = limits.artifact_files, limits.artifact_file_bytes
    argv = hostside.manifest(slc.artifacts, slc.workdir, attempt, size, files)
    try:
        result = await transport.run(
            argv, max_output=limits.manifest_bytes, timeout=limits.command_timeout,
            stdout_only=True,  # what a host's shell start-up prints on stderr is no entry
        )
    except OutputTooLarge as exc:
        msg = (
            f"{where}: the list of {slc.artifacts} is over the manifest_bytes limit "
            f"({format_size(exc.limit)}); refused"
        )
        raise OutputTooLarge(exc.limit, msg) from exc
    if result.returncode == hostside.EXIT_NO_ARTIFACTS:
        msg = f"{where}: the build left no {slc.artifacts}"
        raise MissingArtifacts(msg)
    if result.returncode == hostside.EXIT_TOO_MANY:
        raise IntegrityError(_too_many(slc, files))
    if not result.ok:
        msg = f"{slc.host}: cannot list {slc.artifacts}: {result.tail(3)}"
        raise TransferError(msg)
    try:
        listed = {e.name: e for e in hostside.parse_manifest(result.stdout)}
    except ValueError as exc:
        msg = f"{where}: malformed artifact list: {exc}"
        raise IntegrityError(msg) from exc
    if len(listed) > files:  # the host's script should have said so itself
        raise IntegrityError(_too_many(slc, files))
    return listed


def _too_many(slc: Slice, files: int) -> str:
    return (
        f"{slc.host}: {slc.platform}: more than {files} entries in {slc.artifacts} "
        "(the artifact_files limit); refused"
    )


def check_manifest(
    listed: dict[str, hostside.ManifestEntry],
    slc: Slice,
    expected: Expected,
    limits: Limits = LIMITS,
) -> None:
    """Refuse what can never be accepted, oversized files and anything not built by this attempt.

    Everything refused by the artifact rules is named at once, one line per file.
    """
    where = f"{slc.host}: {slc.platform}"
    rules = rules_of(expected)
    refused = artifacts.listing_problems(listed, rules, where)
    if refused:
        raise IntegrityError("\n".join(refused))
    total = pull_size(listed)
    if total > limits.artifact_bytes:
        msg = (
            f"{where}: {slc.artifacts} holds {total} bytes, over the artifact_bytes limit "
            f"({format_size(limits.artifact_bytes)}); refused"
        )
        raise IntegrityError(msg)
    for name, entry in sorted(listed.items()):
        if rules.exact and name not in rules.names:
            continue  # an extra file, dropped after the pull
        if entry.sha256 is None:
            msg = (
                f"{where}: {name!r} is over the artifact_file_bytes limit "
                f"({format_size(limits.artifact_file_bytes)}) or unreadable; refused"
            )
            raise IntegrityError(msg)
        if not entry.fresh:
            msg = f"{where}: {name!r} was not rebuilt by this attempt (stale output); refused"
            raise IntegrityError(msg)


def pull_size(listed: dict[str, hostside.ManifestEntry]) -> int:
    """Bytes a pull of the listed folder brings: its regular files (nothing else is pulled)."""
    return sum(entry.size or 0 for entry in listed.values() if entry.kind == "f")


def check_room(folder: Path, listed: dict[str, hostside.ManifestEntry], room: float) -> None:
    """Refuse a pull `folder`'s disk cannot take with room to pack it: this machine's fault."""
    need = pull_size(listed)
    wanted = need + int(need * room)
    with head_node_faults():
        free = shutil.disk_usage(folder).free
    if free < wanted:
        msg = (
            f"this machine (the head node): {folder}: not enough free space to pull "
            f"{need} bytes and pack them (needs {wanted} bytes, {free} free); "
            "free some space or choose another --output"
        )
        raise HeadNodeError(msg)


def _match_manifest(
    staging: Path, names: list[str], listed: dict[str, hostside.ManifestEntry], slc: Slice
) -> None:
    for name in names:
        entry = listed.get(name)
        if entry is None or sha256_file(staging / name) != entry.sha256:
            msg = f"{slc.host}: {slc.platform}: {name!r} changed between listing and pull; refused"
            raise IntegrityError(msg)


def verify_staging(
    staging: Path,
    platform: Platform,
    expected: Expected,
    host: str,
    *,
    prune: bool = True,
) -> list[str]:
    """Check what a host sent: regular files only, safe names, the artifact rules, the platform.

    Extra files of an exact list (Kubernetes) are removed rather than published; a missing
    expected file fails the slice; everything else refused is an integrity violation, all of
    it named at once, one line per file.
    """
    where, rules = f"{host}: {platform}", rules_of(expected)
    refused: list[str] = []
    found: list[str] = []
    for entry in sorted(os.scandir(staging), key=lambda e: e.name):
        info = entry.stat(follow_symlinks=False)
        why = artifacts.name_problem(entry.name)
        if not stat.S_ISREG(info.st_mode):
            why = "is not a regular file"
        elif info.st_mode & SPECIAL_BITS:
            why = f"has mode {stat.filemode(info.st_mode)} (setuid, setgid or sticky bit)"
        if why:
            refused.append(f"{where}: {artifacts.shown(entry.name)} {why}; refused")
        found.append(entry.name)
    if refused:
        raise IntegrityError("\n".join(refused))
    names, extra = artifacts.choose(found, rules, where)
    for name in extra if prune else ():
        (staging / name).unlink()
    for name in names:
        with (staging / name).open("rb") as handle:
            why = artifacts.file_problem(name, handle.read(binfmt.HEADER_BYTES), platform, rules)
        if why:
            refused.append(f"{where}: {inert(name)} {why}; refused")
    if refused:
        raise IntegrityError("\n".join(refused))
    return names


def set_modes(folder: Path, names: list[str]) -> None:
    """Give each verified file the mode kdist decides: 0755 for executables, 0644 for data."""
    for name in names:
        path = folder / name
        with path.open("rb") as handle:
            head = handle.read(binfmt.HEADER_BYTES)
        runnable = binfmt.detect(head) is not None or head.startswith(b"#!")
        path.chmod(EXECUTABLE_MODE if runnable else DATA_MODE)


def _replace_dir(staging: Path, dest: Path) -> None:
    # Swap whole directories so readers never see a half-filled platform folder.
    old = dest.with_name(dest.name + ".old")
    shutil.rmtree(old, ignore_errors=True)
    if dest.exists():
        dest.rename(old)
    staging.rename(dest)
    shutil.rmtree(old, ignore_errors=True)


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _artifact(path: Path, base: Path) -> Artifact:
    return Artifact(str(path.relative_to(base)), sha256_file(path), path.stat().st_size)
