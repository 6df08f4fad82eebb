"""A project whose builds wait instead of compute: for scheduling tests and benchmarks.

Each platform's build sleeps for its own number of seconds and then writes one small file,
so the farm's two cores do not blur the timing. A build on the host named `slow_host` (farm
hosts answer `hostname` with their own names) sleeps `slow_seconds` instead, with `marker` on
its command line so a test can look for its processes.
"""

from __future__ import annotations

import shlex
import subprocess
from collections.abc import Mapping
from pathlib import Path

# The case: 7 slices of 5, 5, 10, 10, 20, 30 and 40 s, the longest asked for last.
SEVEN = {
    "linux/amd64": 5.0,
    "linux/arm64": 5.0,
    "linux/s390x": 10.0,
    "linux/ppc64le": 10.0,
    "linux/386": 20.0,
    "linux/arm": 30.0,
    "linux/riscv64": 40.0,
}

_SCRIPT = """\
#!/bin/sh
# Waits as long as this platform's slice takes, then leaves one file: out/OS/ARCH/tool.
set -eu
os=$1
arch=$2
case "$os/$arch" in
{cases}
  *) seconds=1 ;;
esac
if [ "$(hostname)" = {slow_host} ]; then
  exec sh -c 'sleep "$1"; mkdir -p "out/$2/$3"; echo slow > "out/$2/$3/tool"' {marker} \\
    {slow_seconds} "$os" "$arch"
fi
sleep "$seconds"
mkdir -p "out/$os/$arch"
echo "tool for $os/$arch built on $(hostname)" > "out/$os/$arch/tool"
"""


def make_sleepy_project(
    dest: Path,
    seconds: Mapping[str, float],
    *,
    slow_host: str = "",
    slow_seconds: float = 600.0,
    marker: str = "kdist-sleepy-slow",
) -> Path:
    """Write the project into `dest` as a git repository tagged v1.0.0; return `dest`."""
    dest.mkdir(parents=True, exist_ok=True)
    cases = "\n".join(f"  {p}) seconds={s:g} ;;" for p, s in seconds.items())
    (dest / "build.sh").write_text(
        _SCRIPT.format(
            cases=cases,
            slow_host=shlex.quote(slow_host or "-"),
            slow_seconds=f"{slow_seconds:g}",
            marker=shlex.quote(marker),
        )
    )
    (dest / "kdist.yaml").write_text(
        "name: sleepy\n"
        "layout: generic\n"
        f"platforms: [{', '.join(seconds)}]\n"
        "build: sh build.sh {os} {arch}\n"
        "artifacts: out/{os}/{arch}\n"
        "artifact_data: [tool]\n"  # a text file, not a binary: shipped as data
    )
    for args in (["init", "-q", "-b", "main"], ["add", "-A"], ["commit", "-qm", "sleepy"],
                 ["tag", "v1.0.0"]):  # fmt: skip
        subprocess.run(
            ["git", "-C", str(dest), "-c", "user.name=kdist", "-c", "user.email=k@d", *args],
            check=True,
            capture_output=True,
        )
    return dest
