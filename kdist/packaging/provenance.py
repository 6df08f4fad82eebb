"""The release's provenance: an in-toto Statement v1 with a SLSA Provenance v1 predicate.

Subjects are every published tarball (by file name, in release-tars/) and every binary (by
its path under the output folder, e.g. `dockerized/bin/linux/amd64/kubectl`), each with its
sha256. The predicate says what was asked (externalParameters: source, version, platforms,
profile, options), how kdist did it (internalParameters: per slice the host by name,
address and SSH host key fingerprint as verified at connect time, its toolchain, the exact
argv and environment, the attempt id and times; toolchain agreement, reproducibility
checks and smoke tests), what it built from (resolvedDependencies: the git commit and the
digest of the tree that was synced), and what else it published (byproducts: the SBOMs).
"""

from __future__ import annotations

import json
import socket
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from typing import Any

from kdist import __version__
from kdist.model import BuildRecord, Profile, Reproduction, SliceResult, SmokeTest, VersionInfo

FILE_NAME = "provenance.intoto.json"
STATEMENT_TYPE = "https://in-toto.io/Statement/v1"
PREDICATE_TYPE = "https://slsa.dev/provenance/v1"
# Identifiers, not locations: `.invalid` never resolves (RFC 6761); the README documents them.
BUILD_TYPE = "https://kdist.invalid/buildtypes/release/v1"
BUILDER_ID = "https://kdist.invalid/builder"


@dataclass(frozen=True)
class Release:
    """What the provenance says about the release as a whole."""

    project: str
    version: VersionInfo
    profile: Profile
    platforms: tuple[str, ...]
    tree_digest: str  # sha256 over every path, mode bit and byte that sync sent
    run_id: str
    started: float  # Unix time
    finished: float
    options: Mapping[str, Any] = field(default_factory=dict)  # what the user chose
    toolchain: Mapping[str, Any] = field(default_factory=dict)  # pin, hosts, recorded drift


def statement(
    release: Release,
    results: Sequence[SliceResult],
    tarballs: Sequence[tuple[str, str]],
    byproducts: Sequence[tuple[str, str]] = (),
) -> dict[str, Any]:
    """The Statement as a JSON-ready dict."""
    subjects = [_subject(name, digest) for name, digest in sorted(tarballs)]
    for result in sorted(results, key=lambda r: str(r.slice.platform)):
        subjects += [
            _subject(a.path, a.sha256, platform=str(result.slice.platform))
            for a in result.artifacts
        ]
    return {
        "_type": STATEMENT_TYPE,
        "subject": subjects,
        "predicateType": PREDICATE_TYPE,
        "predicate": {
            "buildDefinition": _definition(release, results),
            "runDetails": _run_details(release, byproducts),
        },
    }


def dumps(doc: Mapping[str, Any]) -> bytes:
    """The published bytes: stable key order, one trailing newline."""
    return (json.dumps(doc, indent=2, sort_keys=True) + "\n").encode()


def _subject(name: str, sha256: str, **annotations: str) -> dict[str, Any]:
    subject: dict[str, Any] = {"name": name, "digest": {"sha256": sha256}}
    if annotations:
        subject["annotations"] = annotations
    return subject


def _definition(release: Release, results: Sequence[SliceResult]) -> dict[str, Any]:
    version = release.version
    return {
        "buildType": BUILD_TYPE,
        "externalParameters": {
            "project": release.project,
            "version": version.version,
            "platforms": list(release.platforms),
            "profile": {
                "name": release.profile.name,
                "layout": release.profile.layout.value,
                "build": list(release.profile.build),
                "artifacts": release.profile.artifacts,
                "env": dict(sorted(release.profile.env.items())),
                "source": release.profile.source,
            },
            "options": dict(release.options),
        },
        "internalParameters": {
            "sourceDateEpoch": version.source_date_epoch,
            "toolchain": dict(release.toolchain),
            "slices": [_slice(r) for r in sorted(results, key=lambda r: str(r.slice.platform))],
        },
        "resolvedDependencies": [_source(release)],
    }


def _source(release: Release) -> dict[str, Any]:
    digest = {"sha256": release.tree_digest}
    if release.version.commit:
        digest["gitCommit"] = release.version.commit
    return {
        "name": "source",
        "digest": digest,
        "annotations": {
            "treeState": release.version.tree_state,
            "treeDigest": "sha256 over the synced tree (paths, x bits, contents), as kdist's "
            "journal computes it",
        },
    }


def _slice(result: SliceResult) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "platform": str(result.slice.platform),
        "binaries": [a.path for a in result.artifacts],
        "reused": result.reused,
        "build": _record(result.record),
    }
    if result.reproduction is not None:
        doc["reproducibility"] = _reproduction(result.reproduction)
    doc["smoke"] = [_smoke(s) for s in result.smoke]
    return doc


def _record(record: BuildRecord | None) -> dict[str, Any] | None:
    if record is None:
        return None
    return {
        "attemptId": record.attempt,
        "host": {
            "name": record.host,
            "address": record.address,
            "port": record.port,
            "hostKeyFingerprint": record.host_key or None,
        },
        "toolchain": {"go": record.toolchain, **({"image": record.image} if record.image else {})},
        "command": list(record.argv),
        "env": dict(sorted(record.env.items())),
        "workdir": record.workdir,
        "crossCompiled": record.cross,
        "startedOn": timestamp(record.started),
        "finishedOn": timestamp(record.finished),
    }


def _reproduction(rep: Reproduction) -> dict[str, Any]:
    return {
        "agreed": rep.agreed,
        "rebuild": _record(rep.record),
        "differences": list(rep.differences),
        "error": rep.error or None,
    }


def _smoke(test: SmokeTest) -> dict[str, Any]:
    if not test.tested:
        return {"binary": test.binary, "result": "untested", "why": "no native host"}
    doc = asdict(test)
    doc["result"] = "passed" if test.ok else "failed"
    doc["argv"] = list(test.argv)
    return doc


def _run_details(release: Release, byproducts: Sequence[tuple[str, str]]) -> dict[str, Any]:
    return {
        "builder": {
            "id": BUILDER_ID,
            "version": {"kdist": __version__},
        },
        "metadata": {
            "invocationId": f"{socket.gethostname()}/{release.run_id}",
            "startedOn": timestamp(release.started),
            "finishedOn": timestamp(release.finished),
        },
        "byproducts": [
            {"name": name, "digest": {"sha256": digest}} for name, digest in sorted(byproducts)
        ],
    }


def timestamp(unix: float) -> str:
    """RFC 3339 UTC with seconds, as SLSA's Timestamp wants."""
    return datetime.fromtimestamp(unix, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
