"""Shared fixtures: a real sshd farm on loopback and example projects in git."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from kdist.testing.buildimage import ensure_image
from kdist.testing.devfarm import Farm
from kdist.testing.dockerd import Dockerd
from tests.helpers import make_project

# Go's build cache is safe to share between processes, and compiling the standard library for
# each GOOS/GOARCH dominates a cold e2e run on two cores; so every test session on a machine
# shares one cache unless $KDIST_TEST_GOCACHE names another.
SHARED_GOCACHE = "/var/tmp/kdist-test-gocache"


@pytest.fixture(scope="session")
def gocache() -> Path:
    """One Go build cache for every farm of every test session on this machine."""
    path = Path(os.environ.get("KDIST_TEST_GOCACHE") or SHARED_GOCACHE)
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture(scope="session")
def farm(tmp_path_factory: pytest.TempPathFactory, gocache: Path) -> Iterator[Farm]:
    """Three real sshd build hosts: h1 linux/amd64, h2 linux/arm64, h3 linux/s390x."""
    with Farm(tmp_path_factory.mktemp("farm"), 3, first_address=51, gocache=gocache) as running:
        yield running


@pytest.fixture(scope="session")
def k8s_source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The Kubernetes-shaped example as a clean git checkout at tag v1.3.0."""
    return make_project("kubernetes", tmp_path_factory.mktemp("k8s") / "kubernetes")


@pytest.fixture(scope="session")
def generic_source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The generic (cri-tools-like) example as a git checkout at tag v0.9.1."""
    return make_project("generic", tmp_path_factory.mktemp("generic") / "cri-tools", "v0.9.1")


@pytest.fixture(scope="session")
def dockerd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Dockerd]:
    """A private Docker daemon for the session: own socket, data root and exec root."""
    with Dockerd(tmp_path_factory.mktemp("dockerd")) as daemon:
        yield daemon


@pytest.fixture(scope="session")
def build_image(dockerd: Dockerd) -> tuple[str, str]:
    """(tag, id) of the local build image (busybox, bash, make, libc, Go) in the session daemon."""
    return ensure_image(dockerd.url)
