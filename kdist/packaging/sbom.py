"""SPDX 2.3 JSON software bills of materials, one per platform, from Go's embedded build info.

Each binary is a package (with its sha256); each Go module it was linked from (the main
module, every dependency, the standard library of its Go version) is a package with a
`pkg:golang` purl. The document is a pure function of the binaries, the version and
SOURCE_DATE_EPOCH, so the same release always gets the same bytes.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from kdist import __version__
from kdist.packaging.buildinfo import BuildInfo, Module

SPDX_VERSION = "SPDX-2.3"
NAMESPACE = "https://kdist.invalid/spdx"  # never fetched; unique per content by the digest
NOASSERTION = "NOASSERTION"


@dataclass(frozen=True)
class Binary:
    """One published binary and what it says about its build (None: not a Go binary)."""

    name: str  # path in the release, e.g. dockerized/bin/linux/amd64/kubectl
    sha256: str
    info: BuildInfo | None


def file_name(project: str, platform: str) -> str:
    """The SBOM's name in release-tars/: `<project>-<os>-<arch>.spdx.json`."""
    return f"{project}-{platform.replace('/', '-')}.spdx.json"


def document(
    project: str, version: str, platform: str, binaries: Sequence[Binary], epoch: int
) -> dict[str, Any]:
    """The SPDX 2.3 document of one platform's binaries."""
    content = hashlib.sha256(
        "".join(f"{b.name}\0{b.sha256}\n" for b in binaries).encode()
    ).hexdigest()
    name = f"{project}-{version}-{platform.replace('/', '-')}"
    packages: dict[str, dict[str, Any]] = {}
    relationships: list[dict[str, str]] = []
    for binary in sorted(binaries, key=lambda b: b.name):
        ref = _ref("Binary", binary.name)
        packages[ref] = _binary_package(ref, binary, version)
        relationships.append(_rel("SPDXRef-DOCUMENT", "DESCRIBES", ref))
        for kind, module in _modules(binary.info):
            mod_ref = _ref("Module", f"{module.path}@{module.version}")
            packages.setdefault(mod_ref, _module_package(mod_ref, module))
            relationships.append(_rel(ref, kind, mod_ref))
    return {
        "spdxVersion": SPDX_VERSION,
        "dataLicense": "CC0-1.0",
        "SPDXID": "SPDXRef-DOCUMENT",
        "name": name,
        "documentNamespace": f"{NAMESPACE}/{name}-{content}",
        "creationInfo": {
            "created": _timestamp(epoch),
            "creators": [f"Tool: kdist-{__version__}"],
        },
        "packages": list(packages.values()),
        "relationships": relationships,
    }


def dumps(doc: dict[str, Any]) -> bytes:
    """The published bytes of a document: stable key order, one trailing newline."""
    return (json.dumps(doc, indent=2, sort_keys=True) + "\n").encode()


def _modules(info: BuildInfo | None) -> list[tuple[str, Module]]:
    """(relationship, module) for what a binary was built from: main, deps, the Go stdlib."""
    if info is None:
        return []
    found: list[tuple[str, Module]] = []
    if info.main is not None:
        found.append(("GENERATED_FROM", info.main))
    found += [("STATIC_LINK", dep.replace or dep) for dep in info.deps]
    found.append(("STATIC_LINK", Module("stdlib", info.go_version)))
    return found


def _binary_package(ref: str, binary: Binary, version: str) -> dict[str, Any]:
    package: dict[str, Any] = {
        "SPDXID": ref,
        "name": binary.name.rsplit("/", 1)[-1],
        "versionInfo": version,
        "packageFileName": binary.name,
        "downloadLocation": NOASSERTION,
        "filesAnalyzed": False,
        "checksums": [{"algorithm": "SHA256", "checksumValue": binary.sha256}],
        "primaryPackagePurpose": "APPLICATION",
    }
    if binary.info is not None:
        settings = " ".join(f"{k}={v}" for k, v in binary.info.settings)
        package["comment"] = f"built by {binary.info.go_version}; {settings}".rstrip("; ")
    else:
        package["comment"] = "no Go build information in this file"
    return package


def _module_package(ref: str, module: Module) -> dict[str, Any]:
    package: dict[str, Any] = {
        "SPDXID": ref,
        "name": module.path,
        "versionInfo": module.version,
        "downloadLocation": NOASSERTION,
        "filesAnalyzed": False,
        "primaryPackagePurpose": "LIBRARY",
        "externalRefs": [
            {
                "referenceCategory": "PACKAGE-MANAGER",
                "referenceType": "purl",
                "referenceLocator": f"pkg:golang/{module.path}@{module.version}",
            }
        ],
    }
    if module.sum:
        package["comment"] = f"go.sum hash {module.sum}"
    return package


def _ref(kind: str, text: str) -> str:
    # SPDX ids allow letters, digits, '.' and '-'; a digest suffix keeps mangled names apart.
    safe = re.sub(r"[^A-Za-z0-9.-]+", "-", text).strip("-")
    return f"SPDXRef-{kind}-{safe}-{hashlib.sha256(text.encode()).hexdigest()[:8]}"


def _rel(element: str, kind: str, related: str) -> dict[str, str]:
    return {"spdxElementId": element, "relationshipType": kind, "relatedSpdxElement": related}


def _timestamp(epoch: int) -> str:
    return datetime.fromtimestamp(epoch, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
