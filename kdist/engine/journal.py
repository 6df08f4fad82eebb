"""Resume and no-op releases: a journal of finished, verified slices.

An entry says: this platform's binaries, with these digests, were built from this source
tree (content digest), with this command, profile environment and version, by this host
and toolchain. A later run whose key matches, and whose binaries are still there with the
same digests and the right architecture, reuses them instead of building again.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kdist import __version__
from kdist.config.profile import platform_env
from kdist.engine.estimate import History
from kdist.engine.treedigest import TREE_CACHE, tree_digest
from kdist.errors import KdistError
from kdist.model import (
    Artifact,
    BuildRecord,
    Platform,
    Profile,
    Slice,
    SliceResult,
    Status,
    VersionInfo,
)
from kdist.remote.argv import to_shell
from kdist.stages.artifacts import Expected
from kdist.stages.collect import sha256_file, verify_staging

if TYPE_CHECKING:
    from kdist.engine.job import Job

RELEASE_DIR = "release-tars"

JOURNAL = ".kdist/journal.json"
HISTORY = ".kdist/history.json"  # build times per (platform, host), for the placement


def slice_key(
    tree: str,
    slc: Slice,
    profile: Profile,
    version: VersionInfo,
    what: tuple[str, ...],
    container: str = "",
    git: str = "",
) -> str:
    """What a slice's binaries depend on, as one digest (independent of the host chosen).

    `container` names the build images and their ids (container builds), so a new image
    rebuilds; `git` is the digest of what git answers on the hosts, so a new tag rebuilds.
    """
    doc = {
        "kdist": __version__,
        "tree": tree,
        "platform": str(slc.platform),
        "argv": list(slc.argv),
        "artifacts": profile.artifacts,
        "layout": profile.layout.value,
        "env": dict(sorted(platform_env(profile, slc.platform, cross=slc.cross).items())),
        "version": asdict(version),
        "what": list(what),
    }
    if container:
        doc["container"] = container
    if git:
        doc["git"] = git
    return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()


@dataclass(frozen=True)
class JournalEntry:
    """One finished, verified slice."""

    key: str
    host: str
    toolchain: str
    command: str
    artifacts: tuple[Artifact, ...]
    image: str = ""  # the build image's id (container builds)
    duration: float = 0.0  # seconds the slice took, for the next run's ETA
    record: BuildRecord | None = None  # who built it, for the provenance of later releases


def _build_record(raw: object) -> BuildRecord | None:
    """A BuildRecord from its JSON form (None when absent or from an older kdist)."""
    if not isinstance(raw, dict):
        return None
    try:
        return BuildRecord(**{**raw, "argv": tuple(raw["argv"]), "env": dict(raw["env"])})
    except (KeyError, TypeError):
        return None


class Journal:
    """The journal file of one output folder; a damaged file is treated as empty."""

    def __init__(self, output: Path) -> None:
        self.path = output / JOURNAL
        self.entries: dict[str, JournalEntry] = {}
        self.release: dict[str, str] = {}
        try:
            raw: dict[str, Any] = json.loads(self.path.read_text())
            self.release = {k: str(v) for k, v in raw.get("release", {}).items()}
            for platform, e in raw.get("slices", {}).items():
                arts = tuple(Artifact(**a) for a in e["artifacts"])
                self.entries[platform] = JournalEntry(
                    e["key"], e["host"], e["toolchain"], e["command"], arts,
                    e.get("image", ""), float(e.get("duration", 0.0)),
                    _build_record(e.get("record")),
                )  # fmt: skip
        except (OSError, ValueError, KeyError, TypeError):
            self.entries = {}

    def reusable(
        self, platform: Platform, key: str, dest: Path, expected: Expected
    ) -> JournalEntry | None:
        """The entry when the key matches and its files still verify; else None."""
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
        return entry

    def record(self, platform: Platform, entry: JournalEntry) -> None:
        """Add or replace one slice's entry and write the file atomically."""
        self.entries[str(platform)] = entry
        self.record_all()

    def forget(self, platform: Platform) -> None:
        """Drop a slice's entry (its binaries are being replaced), and the release record."""
        if self.entries.pop(str(platform), None) is not None or self.release:
            self.release = {}
            self.record_all()

    def published(self, key: str, tars: Path) -> list[tuple[str, str]] | None:
        """The published tarballs with digests, if they are the recorded release and verify.

        Every file SHA256SUMS lists (tarballs and SBOMs) is checked; tarballs are returned.
        """
        if self.release.get("key") != key:
            return None
        try:
            sums = (tars / "SHA256SUMS").read_text()
        except OSError:
            return None
        if sums != self.release.get("sums"):
            return None
        listed = [tuple(line.split("  ", 1)) for line in sums.splitlines()]
        for digest, name in listed:
            if not (tars / name).is_file() or sha256_file(tars / name) != digest:
                return None
        return sorted((name, digest) for digest, name in listed if name.endswith(".tar.gz"))

    def record_release(self, key: str, tars: Path) -> None:
        """Remember which release a set of inputs produced."""
        self.release = {"key": key, "sums": (tars / "SHA256SUMS").read_text()}
        self.record_all()

    def record_all(self) -> None:
        """Rewrite the file from memory."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        doc = {
            "slices": {p: asdict(e) for p, e in sorted(self.entries.items())},
            "release": self.release,
        }
        tmp = self.path.with_name(self.path.name + ".tmp")
        try:
            tmp.write_text(json.dumps(doc, indent=1))
            tmp.replace(self.path)
        finally:
            tmp.unlink(missing_ok=True)  # a full disk leaves no half-written journal behind


def load_history(output: Path) -> History:
    """The build times recorded under `output` (empty when missing or damaged)."""
    try:
        raw = json.loads((output / HISTORY).read_text())
        samples = {
            (str(e["platform"]), str(e["host"])): tuple(float(x) for x in e["seconds"])
            for e in raw["samples"]
        }
    except (OSError, ValueError, KeyError, TypeError):
        return History()
    return History(samples)


def save_history(output: Path, history: History) -> None:
    """Write the build times atomically (a failed write only costs the next estimates)."""
    doc = {
        "samples": [
            {"platform": p, "host": h, "seconds": list(v)}
            for (p, h), v in sorted(history.samples.items())
        ]
    }
    path = output / HISTORY
    tmp = path.with_name(path.name + ".tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_text(json.dumps(doc, indent=1))
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)


class Memo:
    """The journal as the pipeline uses it: reuse verified slices, remember new ones."""

    def __init__(self, journal: Journal | None, tree: str, container: str = "") -> None:
        self.journal = journal
        self.tree = tree
        self.images: list[list[str]] = []  # the release's images and their bases' digests
        self.container = container  # the build images and their ids, for container builds
        self.git = ""  # the digest of the git answers the hosts get ("": none are shipped)
        self._reusable: dict[str, JournalEntry | None] = {}
        self.output: Path | None = None  # set: build times are learned into its history
        self.history = History()

    def learn(self, platform: Platform, host: str, seconds: float) -> None:
        """Add one build time to the history and write it (releases and builds alike)."""
        if self.output is None or seconds <= 0:
            return
        self.history = self.history.add(str(platform), host, seconds)
        save_history(self.output, self.history)

    @classmethod
    async def open(cls, job: Job, container: str = "") -> Memo:
        """Journal and tree digest for a release; a no-op memo for builds or --rebuild."""
        if not job.package:
            memo = cls(None, "")
        else:
            tree = await asyncio.to_thread(tree_digest, job.source, job.output / TREE_CACHE)
            memo = cls(Journal(job.output), tree, container)
        memo.output, memo.history = job.output, load_history(job.output)
        return memo

    def _key(self, job: Job, slc: Slice) -> str:
        return slice_key(
            self.tree, slc, job.profile, job.version, job.what, self.container, self.git
        )

    def reuse(self, job: Job, slc: Slice, log: str) -> SliceResult | None:
        """A finished result from the journal, when nothing it depends on changed."""
        if self.journal is None or not job.reuse:
            return None
        if slc.key not in self._reusable:
            dest = job.dest(slc.platform)
            key = self._key(job, slc)
            found = self.journal.reusable(slc.platform, key, dest, job.expected(slc.platform))
            self._reusable[slc.key] = found
        entry = self._reusable[slc.key]
        if entry is None:
            return None
        return SliceResult(
            slc, Status.OK, 0.0, "reused", "", log, entry.artifacts, reused=True,
            image=entry.image, record=entry.record,
        )  # fmt: skip

    def forget(self, slc: Slice) -> None:
        """The slice's binaries are about to be replaced: its entry no longer holds."""
        if self.journal is not None:
            self.journal.forget(slc.platform)

    def remember(self, job: Job, slc: Slice, result: SliceResult, toolchain: str) -> None:
        """Record a slice that was just built and verified."""
        if self.journal is None:
            return
        entry = JournalEntry(
            key=self._key(job, slc),
            host=result.slice.host,
            toolchain=toolchain,
            command=to_shell(result.slice.argv),
            artifacts=result.artifacts,
            image=result.image,
            duration=round(result.duration, 3),
            record=result.record,
        )
        self.journal.record(slc.platform, entry)

    def _release_key(self, job: Job, artifacts: Sequence[tuple[str, tuple[Artifact, ...]]]) -> str:
        doc = {
            "kdist": __version__,
            "tree": self.tree,
            "version": asdict(job.version),
            "profile": [job.profile.name, job.profile.layout.value, list(job.profile.package)],
            "platforms": [str(p) for p in job.platforms],
            "tested": job.run_tests and bool(job.profile.test),
            # What the evidence beside the tarballs depends on: a signing key, the gates.
            "signed": str(job.sign_key or ""),
            "reproduce": job.reproduce,
            "smoke": list(job.profile.smoke),
            "binaries": sorted((p, a.path, a.sha256) for p, arts in artifacts for a in arts),
            "images": self.images,
        }
        return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()

    def unchanged_release(self, job: Job, slices: Sequence[Slice]) -> list[tuple[str, str]] | None:
        """The published tarballs, when every slice is reusable and they are what it would make.

        Tarballs are byte-reproducible, so the same inputs make the same bytes; checking the
        published ones against their recorded digests is the re-verification.
        """
        if self.journal is None or not job.reuse or not job.package:
            return None
        found = [(str(s.platform), self.reuse(job, s, "")) for s in slices]
        if any(r is None for _, r in found):
            return None
        key = self._release_key(job, [(p, r.artifacts) for p, r in found if r is not None])
        return self.journal.published(key, job.output / RELEASE_DIR)

    def remember_release(self, job: Job, results: Sequence[SliceResult]) -> None:
        """Record the release just published, for the next no-op run."""
        if self.journal is None:
            return
        key = self._release_key(job, [(str(r.slice.platform), r.artifacts) for r in results])
        self.journal.record_release(key, job.output / RELEASE_DIR)


def recorded_results(job: Job, platforms: Sequence[Platform]) -> tuple[SliceResult, ...]:
    """What the output holds for `platforms` (`kdist package`), with who built it when known.

    A platform's build record comes from the journal only while its files are still the
    ones the journal recorded; otherwise the provenance says the builder is unknown.
    """
    entries = Journal(job.output).entries
    results = []
    for platform in platforms:
        dest = job.dest(platform)
        files = sorted(p for p in dest.iterdir() if p.is_file() and not p.is_symlink())
        artifacts = tuple(
            Artifact(str(p.relative_to(job.output)), sha256_file(p), p.stat().st_size)
            for p in files
        )
        entry = entries.get(str(platform))
        same = entry is not None and sorted(entry.artifacts, key=str) == sorted(artifacts, key=str)
        record = entry.record if same and entry is not None else None
        slc = Slice(
            platform, record.host if record else "", bool(record and record.cross),
            record.workdir if record else "", record.argv if record else (), str(dest),
        )  # fmt: skip
        results.append(SliceResult(slc, Status.OK, 0.0, "packed", "", "", artifacts, record=record))
    return tuple(results)
