"""What is published with the tarballs: an SBOM per platform, the provenance, the signatures.

Order matters: SBOMs first (they are byte-reproducible, so SHA256SUMS lists them and stays
identical across rebuilds of the same tree), then the provenance (times and hosts make it
differ per run, so it is covered by its own signature, not by SHA256SUMS), then, once the
checksums are written, the signatures over SHA256SUMS, SHA512SUMS and the provenance.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from kdist.model import SliceResult
from kdist.packaging import buildinfo, provenance, sbom, signing

SIGNED = ("SHA256SUMS", "SHA512SUMS", provenance.FILE_NAME)


@dataclass(frozen=True)
class Evidence:
    """Everything the release's evidence is made from."""

    release: provenance.Release
    results: tuple[SliceResult, ...]
    output: Path  # artifact paths are relative to it
    sign_key: Path | None = None


def write_sboms(folder: Path, evidence: Evidence) -> list[tuple[str, str]]:
    """One SPDX document per platform in `folder`; returns (name, sha256) of each."""
    written = []
    release = evidence.release
    for result in sorted(evidence.results, key=lambda r: str(r.slice.platform)):
        platform = str(result.slice.platform)
        binaries = [
            sbom.Binary(a.path, a.sha256, buildinfo.read_file(evidence.output / a.path))
            for a in result.artifacts
        ]
        doc = sbom.document(
            release.project, release.version.version, platform, binaries,
            release.version.source_date_epoch,
        )  # fmt: skip
        name = sbom.file_name(release.project, platform)
        data = sbom.dumps(doc)
        (folder / name).write_bytes(data)
        written.append((name, hashlib.sha256(data).hexdigest()))
    return written


def write_provenance(
    folder: Path,
    evidence: Evidence,
    tarballs: Sequence[tuple[str, str]],
    byproducts: Sequence[tuple[str, str]],
) -> Path:
    """The in-toto statement for the tarballs and binaries, with the SBOMs as byproducts."""
    doc = provenance.statement(evidence.release, evidence.results, tarballs, byproducts)
    path = folder / provenance.FILE_NAME
    path.write_bytes(provenance.dumps(doc))
    return path


def sign(folder: Path, key: Path) -> list[Path]:
    """Sign SHA256SUMS, SHA512SUMS and the provenance; the .sig files land beside them."""
    return [signing.sign_file(key, folder / name) for name in SIGNED if (folder / name).is_file()]
