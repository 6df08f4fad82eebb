"""Test helpers: run the kdist CLI, make example projects into git repositories."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
EXAMPLES = REPO / "examples"
# What the bundled example's kdist.yaml says: server images on an empty base (no registry here).
SCRATCH_IMAGES = "images: {KUBE_GORUNNER_IMAGE: scratch, KUBE_PROXY_BASE_IMAGE: scratch}\n"


@dataclass
class Ran:
    """A finished kdist CLI run."""

    code: int
    stdout: str
    stderr: str

    @property
    def json(self) -> Any:
        """stdout parsed as the --json document."""
        return json.loads(self.stdout)


def kdist(
    *args: str | Path,
    cwd: Path | None = None,
    env: dict[str, str] | None = None,
    timeout: float = 900,
    umask: int = -1,
) -> Ran:
    """Run the kdist CLI in a subprocess, exactly as a user would."""
    done = subprocess.run(
        [sys.executable, "-m", "kdist", *map(str, args)],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
        umask=umask,
    )
    return Ran(done.returncode, done.stdout, done.stderr)


def git(repo: Path, *args: str) -> str:
    """Run git in `repo` with a fixed identity and dates."""
    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": "kdist",
        "GIT_AUTHOR_EMAIL": "kdist@example.com",
        "GIT_COMMITTER_NAME": "kdist",
        "GIT_COMMITTER_EMAIL": "kdist@example.com",
        "GIT_AUTHOR_DATE": "2026-01-02T03:04:05Z",
        "GIT_COMMITTER_DATE": "2026-01-02T03:04:05Z",
    }
    return subprocess.run(
        ["git", "-C", str(repo), *args], check=True, capture_output=True, text=True, env=env
    ).stdout


def make_project(example: str, dest: Path, tag: str = "v1.3.0") -> Path:
    """Copy an example into `dest` as a fresh git repository tagged `tag`."""
    shutil.copytree(EXAMPLES / example, dest, symlinks=True)
    git(dest, "init", "-q", "-b", "main")
    git(dest, "add", "-A")
    git(dest, "commit", "-q", "-m", "import")
    git(dest, "tag", tag)
    return dest


def release(
    source: Path,
    *extra: str | Path,
    hosts: Path | None = None,
    out: Path | None = None,
    platforms: str | None = None,
    skip_tests: bool = True,
    json: bool = True,
    env: dict[str, str] | None = None,
) -> Ran:
    """`kdist release` of `source`, with the options most tests share spelled as keywords."""
    args: list[str | Path] = ["release", "--source", source]
    if hosts is not None:
        args += ["--hosts", hosts]
    if out is not None:
        args += ["--output", out]
    if platforms is not None:
        args += ["--platforms", platforms]
    if skip_tests:
        args.append("--skip-tests")
    if json:
        args.append("--json")
    return kdist(*args, *extra, env=env)
