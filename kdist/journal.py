"""Resume and no-op releases: a journal of finished, verified slices.

An entry says: this platform's binaries, with these digests, were built from this source
tree (content digest), with this command, profile environment and version, by this host
and toolchain. A later run whose key matches, and whose binaries are still there with the
same digests and the right architecture, reuses them instead of building again.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from kdist import __version__
from kdist.collect import sha256_file, verify_staging
from kdist.errors import KdistError
from kdist.model import Artifact, Platform, Profile, Slice, VersionInfo

JOURNAL = ".kdist/journal.json"
_SKIP_TOP = {"_output", ".git"}  # what sync never sends, so it cannot change a build


def _files(source: Path) -> Iterator[Path]:
    for root, dirs, files in os.walk(source):
        rel = Path(root).relative_to(source)
        if rel == Path():
            dirs[:] = [d for d in dirs if d not in _SKIP_TOP]
        dirs.sort()
        for name in sorted(files + [d for d in dirs if (Path(root) / d).is_symlink()]):
            yield Path(root) / name


def tree_digest(source: Path) -> str:
    """Content digest of everything sync sends: paths, x bits, bytes, symlink targets."""
    digest = hashlib.sha256()
    for path in _files(source):
        info = path.lstat()
        rel = path.relative_to(source).as_posix()
        if stat.S_ISLNK(info.st_mode):
            body = b"L" + str(path.readlink()).encode()
        elif stat.S_ISREG(info.st_mode):
            body = (b"X" if info.st_mode & 0o111 else b"F") + bytes.fromhex(sha256_file(path))
        else:
            continue
        digest.update(rel.encode() + b"\0" + body + b"\n")
    return digest.hexdigest()


def slice_key(
    tree: str, slc: Slice, profile: Profile, version: VersionInfo, what: tuple[str, ...]
) -> str:
    """What a slice's binaries depend on, as one digest (independent of the host chosen)."""
    doc = {
        "kdist": __version__,
        "tree": tree,
        "platform": str(slc.platform),
        "argv": list(slc.argv),
        "artifacts": profile.artifacts,
        "layout": profile.layout.value,
        "env": dict(sorted(profile.env.items())),
        "version": asdict(version),
        "what": list(what),
    }
    return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()


@dataclass(frozen=True)
class Entry:
    """One finished, verified slice."""

    key: str
    host: str
    toolchain: str
    command: str
    artifacts: tuple[Artifact, ...]


class Journal:
    """The journal file of one output folder; a damaged file is treated as empty."""

    def __init__(self, output: Path) -> None:
        self.path = output / JOURNAL
        self.entries: dict[str, Entry] = {}
        try:
            raw: dict[str, Any] = json.loads(self.path.read_text())
            for platform, e in raw.get("slices", {}).items():
                arts = tuple(Artifact(**a) for a in e["artifacts"])
                self.entries[platform] = Entry(
                    e["key"], e["host"], e["toolchain"], e["command"], arts
                )
        except (OSError, ValueError, KeyError, TypeError):
            self.entries = {}

    def reusable(
        self, platform: Platform, key: str, dest: Path, expected: tuple[str, ...] | None
    ) -> tuple[Artifact, ...] | None:
        """The recorded artifacts when the key matches and the files still verify; else None."""
        entry = self.entries.get(str(platform))
        if entry is None or entry.key != key or not dest.is_dir():
            return None
        try:
            names = verify_staging(dest, platform, expected, entry.host, prune=False)
        except (KdistError, OSError):
            return None
        recorded = {Path(a.path).name: a for a in entry.artifacts}
        if sorted(recorded) != sorted(names):
            return None
        for name, art in recorded.items():
            path = dest / name
            if path.stat().st_size != art.size or sha256_file(path) != art.sha256:
                return None
        return entry.artifacts

    def record(self, platform: Platform, entry: Entry) -> None:
        """Add or replace one slice's entry and write the file atomically."""
        self.entries[str(platform)] = entry
        self.record_all()

    def forget(self, platform: Platform) -> None:
        """Drop a slice's entry (its binaries are being replaced)."""
        if self.entries.pop(str(platform), None) is not None:
            self.record_all()

    def record_all(self) -> None:
        """Rewrite the file from memory."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        doc = {"slices": {p: asdict(e) for p, e in sorted(self.entries.items())}}
        tmp = self.path.with_name(self.path.name + ".tmp")
        tmp.write_text(json.dumps(doc, indent=1))
        tmp.replace(self.path)
