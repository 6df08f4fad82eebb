"""Server images (`<bin>.tar`, `.docker_tag` in server tarballs) and whether we can build them.

Upstream builds them with `docker buildx build --output type=docker` on top of base images
pulled from registry.k8s.io. kdist does not build them yet; with `--images` it says why
they are missing from the server tarballs instead of leaving that silent.
"""

from __future__ import annotations

import shutil
import subprocess

NOT_YET = "kdist does not build server images yet (the server tarballs hold the binaries only)"


def _ok(argv: list[str]) -> bool:
    try:
        return subprocess.run(argv, capture_output=True, timeout=20, check=False).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def why_not() -> str:
    """Why server images cannot be built on this machine (never empty today)."""
    if shutil.which("docker") is None:
        return "docker is not installed"
    if not _ok(["docker", "buildx", "version"]):
        return "docker buildx is not available"
    if not _ok(["docker", "info"]):
        return "the docker daemon is not reachable"
    return NOT_YET
