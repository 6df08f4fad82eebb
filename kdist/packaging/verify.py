"""`kdist verify`: check a published release end to end, naming every file that fails.

Checked: the signatures (`*.sig`, with `ssh-keygen -Y`), every line of SHA256SUMS and
SHA512SUMS, every `<file>.sha256`/`.sha512`, and every subject and byproduct of the
provenance. Binaries listed only in the provenance are looked for under the output folder
(`dockerized/bin/...`); when the folder holds only the release files, inside the tarballs.
"""

from __future__ import annotations

import hashlib
import json
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from kdist.packaging import provenance, signing

RELEASE_DIR = "release-tars"
SUMS = {"SHA256SUMS": "sha256", "SHA512SUMS": "sha512"}
SIGNED = ("SHA256SUMS", "SHA512SUMS", provenance.FILE_NAME)


@dataclass(frozen=True)
class Finding:
    """One check of one file."""

    file: str
    ok: bool
    message: str


@dataclass
class Report:
    """Every finding about one release folder."""

    folder: Path
    findings: list[Finding] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when nothing failed."""
        return all(f.ok for f in self.findings)

    @property
    def failures(self) -> list[Finding]:
        """The findings that failed."""
        return [f for f in self.findings if not f.ok]

    def add(self, file: str, ok: bool, message: str) -> None:
        """Record one finding."""
        self.findings.append(Finding(file, ok, message))


def release_folder(path: Path) -> Path:
    """The folder holding the release files: PATH/release-tars, or PATH itself."""
    return path / RELEASE_DIR if (path / RELEASE_DIR).is_dir() else path


def verify_release(path: Path, allowed_signers: Path | None = None) -> Report:
    """Check everything in a release folder (or an output folder holding release-tars/)."""
    folder = release_folder(path)
    report = Report(folder)
    covered = _check_signatures(folder, allowed_signers, report)
    covered |= _check_sums(folder, report)
    covered |= _check_digest_files(folder, report)
    covered |= _check_provenance(folder, report)
    for entry in sorted(folder.iterdir()):
        if entry.name not in covered:
            report.add(entry.name, True, "not covered by checksums, signatures or the provenance")
    return report


def digest(path: Path, algorithm: str) -> str:
    """Hex digest of a file, read in chunks."""
    h = hashlib.new(algorithm)
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def _check_signatures(folder: Path, allowed: Path | None, report: Report) -> set[str]:
    covered = set()
    for name in SIGNED:
        target, sig = folder / name, folder / (name + signing.SUFFIX)
        covered.add(sig.name)
        if not target.is_file():
            continue
        if not sig.is_file():
            report.add(name, allowed is None, "not signed")
            continue
        checked = signing.verify_file(target, sig, allowed)
        report.add(sig.name, checked.ok, checked.message)
    return covered


def _check_sums(folder: Path, report: Report) -> set[str]:
    covered = set()
    for sums, algorithm in SUMS.items():
        path = folder / sums
        covered.add(sums)
        if not path.is_file():
            report.add(sums, False, "missing")
            continue
        for name, expected in _sum_lines(path, report):
            covered.add(name)
            report.add(name, *_matches(folder / name, algorithm, expected, sums))
    return covered


def _sum_lines(path: Path, report: Report) -> Iterator[tuple[str, str]]:
    for number, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
        hexdigest, sep, name = line.partition("  ")
        if not sep or not _plain(name):
            report.add(path.name, False, f"line {number} is not `<hex>  <file>`")
            continue
        yield name, hexdigest


def _plain(name: str) -> bool:
    """A file name inside the folder: no directories, nothing that climbs out of it."""
    return bool(name) and "/" not in name and "\\" not in name and name not in (".", "..")


def _matches(path: Path, algorithm: str, expected: str, source: str) -> tuple[bool, str]:
    if not path.is_file():
        return False, f"listed in {source} but missing"
    if digest(path, algorithm) != expected.lower():
        return False, f"{algorithm} differs from {source}: the file was changed"
    return True, f"{algorithm} matches {source}"


def _check_digest_files(folder: Path, report: Report) -> set[str]:
    covered = set()
    for side in sorted(folder.glob("*.sha256")) + sorted(folder.glob("*.sha512")):
        covered.add(side.name)
        target = side.with_suffix("")
        algorithm = side.suffix[1:]
        expected = side.read_text(errors="replace").strip()
        report.add(side.name, *_matches(target, algorithm, expected, side.name))
    return covered


def _check_provenance(folder: Path, report: Report) -> set[str]:
    path = folder / provenance.FILE_NAME
    if not path.is_file():
        report.add(provenance.FILE_NAME, False, "missing")
        return set()
    try:
        doc = json.loads(path.read_text())
        if doc["_type"] != provenance.STATEMENT_TYPE:
            raise ValueError("not an in-toto Statement v1")
        if doc["predicateType"] != provenance.PREDICATE_TYPE:
            raise ValueError("not a SLSA Provenance v1 predicate")
        entries = list(doc["subject"]) + list(doc["predicate"]["runDetails"].get("byproducts", []))
    except (ValueError, KeyError, TypeError) as exc:
        report.add(provenance.FILE_NAME, False, f"unreadable: {exc}")
        return {path.name}
    members = _TarIndex(folder)
    covered = {path.name}
    for entry in entries:
        covered.add(_check_subject(folder, entry, members, report))
    return covered


def _check_subject(folder: Path, entry: dict[str, Any], members: _TarIndex, report: Report) -> str:
    name = str(entry.get("name", ""))
    expected = str(entry.get("digest", {}).get("sha256", ""))
    rel = PurePosixPath(name)
    if not name or rel.is_absolute() or ".." in rel.parts or not expected:
        report.add(provenance.FILE_NAME, False, f"subject {name!r} has no usable name or sha256")
        return ""
    local = folder / name if _plain(name) else folder.parent / name
    if local.is_file() or _plain(name):
        ok, message = _matches(local, "sha256", expected, "the provenance")
        report.add(name, ok, message)
        return name
    found = members.find(rel.name, expected)
    if found is None:
        report.add(name, False, "a provenance subject found neither on disk nor in a tarball")
    else:
        report.add(name, True, f"sha256 matches the provenance (inside {found})")
    return name


class _TarIndex:
    """sha256 of every regular file inside the folder's tarballs, built on first use."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._index: dict[tuple[str, str], str] | None = None

    def find(self, basename: str, sha256: str) -> str | None:
        """`tarball:member` holding a file with that name and digest, or None."""
        if self._index is None:
            self._index = {}
            for tarball in sorted(self.folder.glob("*.tar.gz")):
                self._add(tarball)
        return self._index.get((basename, sha256))

    def _add(self, tarball: Path) -> None:
        assert self._index is not None
        try:
            with tarfile.open(tarball, "r:gz") as archive:
                for member in archive:
                    handle = archive.extractfile(member) if member.isfile() else None
                    if handle is None:
                        continue
                    h = hashlib.sha256()
                    while chunk := handle.read(1 << 20):
                        h.update(chunk)
                    key = (PurePosixPath(member.name).name, h.hexdigest())
                    self._index.setdefault(key, f"{tarball.name}:{member.name}")
        except (OSError, tarfile.TarError, EOFError):
            return  # a damaged tarball fails its own checksum line
