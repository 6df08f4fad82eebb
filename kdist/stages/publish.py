"""Packaging during the run, and the all-or-nothing publish of release-tars/.

Tarballs are written into a hidden staging folder while slices still build (a platform is
packed as soon as its binaries are back); only a complete, checksummed set is renamed into
OUTPUT/release-tars, so a failed release never replaces the previous one with a partial set.
A profile with a `package` command delegates to the repository's own packaging instead.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from kdist.config.version import version_defs
from kdist.errors import ConfigError, PackageError
from kdist.model import Platform
from kdist.packaging.tarballs import (
    PackageSpec,
    common_tarballs,
    expected_tarballs,
    platform_tarballs,
    write_checksums,
)
from kdist.remote.argv import to_shell
from kdist.stages.collect import sha256_file

if TYPE_CHECKING:
    from kdist.engine.job import Job, RunResult

RELEASE_DIR = "release-tars"


def package_spec(job: Job, platforms: tuple[Platform, ...] | None = None) -> PackageSpec:
    """The packaging input of a job."""
    return PackageSpec(
        layout=job.profile.layout,
        name=job.profile.name,
        source=job.source,
        bin_dir=job.binaries,
        platforms=platforms or job.platforms,
        version=job.version,
    )


class Packager:
    """Packs platforms as they arrive and publishes the set when the run ends."""

    def __init__(self, job: Job) -> None:
        self.job = job
        self.spec = package_spec(job)
        self.delegated = bool(job.profile.package)
        self.staging: Path | None = None
        self._common: asyncio.Task[list[Path]] | None = None

    def start(self) -> None:
        """Create the staging folder and start the platform-independent tarballs."""
        self.job.output.mkdir(parents=True, exist_ok=True)
        if self.delegated:
            return
        self.staging = Path(tempfile.mkdtemp(prefix=f".{RELEASE_DIR}-", dir=self.job.output))
        self._common = asyncio.create_task(
            asyncio.to_thread(common_tarballs, self.spec, self.staging)
        )

    def abort(self) -> None:
        """Drop the staging folder of an interrupted run; the published set is untouched."""
        if self.staging is not None:
            shutil.rmtree(self.staging, ignore_errors=True)
        if self._common is not None:
            self._common.cancel()

    async def platform(self, platform: Platform) -> None:
        """Pack one platform (waits for the common tarballs its packages embed)."""
        if self.delegated:
            return
        assert self.staging is not None and self._common is not None
        await asyncio.shield(self._common)
        await asyncio.to_thread(platform_tarballs, self.spec, platform, self.staging)

    async def finish(self, outcome: RunResult) -> None:
        """Publish when everything succeeded; otherwise drop the staging folder."""
        try:
            if self.delegated:
                if outcome.ok:
                    outcome.tarballs = await asyncio.to_thread(run_delegate, self.job)
                return
            assert self.staging is not None and self._common is not None
            await self._common
            if outcome.ok:
                outcome.tarballs = await asyncio.to_thread(
                    finalize, self.spec, self.staging, self.job.output
                )
        except (PackageError, ConfigError, OSError) as exc:
            outcome.package_error = str(exc)
        finally:
            if self.staging is not None:
                shutil.rmtree(self.staging, ignore_errors=True)


def finalize(spec: PackageSpec, staging: Path, output: Path) -> list[tuple[str, str]]:
    """Check the set is complete, write checksums and swap it into OUTPUT/release-tars."""
    names = expected_tarballs(spec)
    missing = [n for n in names if not (staging / n).is_file()]
    if missing:
        msg = f"release incomplete, not published: missing {', '.join(missing)}"
        raise PackageError(msg)
    write_checksums(staging)
    tarballs = [(n, sha256_file(staging / n)) for n in sorted(names)]
    staging.chmod(0o755)
    _swap_into_place(staging, output / RELEASE_DIR)
    return tarballs


def package_now(job: Job, platforms: tuple[Platform, ...]) -> list[tuple[str, str]]:
    """Pack binaries already in the output (`kdist package`), all or nothing."""
    spec = package_spec(job, platforms)
    job.output.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{RELEASE_DIR}-", dir=job.output))
    try:
        common_tarballs(spec, staging)
        for platform in platforms:
            platform_tarballs(spec, platform, staging)
        return finalize(spec, staging, job.output)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def run_delegate(job: Job) -> list[tuple[str, str]]:
    """Run the repository's own packaging (e.g. `make package-tarballs`) on the head node."""
    try:
        out_dir = job.output.relative_to(job.source)
    except ValueError:
        msg = f"--output {job.output} must be inside {job.source} when packaging is delegated"
        raise ConfigError(msg) from None
    defs = job.output / "kdist" / "version-defs"
    defs.parent.mkdir(parents=True, exist_ok=True)
    defs.write_text(version_defs(job.version))
    env = {
        **os.environ,
        "OUT_DIR": str(out_dir),
        "KUBE_BUILD_PLATFORMS": " ".join(str(p) for p in job.platforms),
        "KUBE_GIT_VERSION_FILE": str(defs),
        "SOURCE_DATE_EPOCH": str(job.version.source_date_epoch),
    }
    log = job.output / "logs" / "package.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("w", encoding="utf-8") as handle:
        handle.write(f"$ {to_shell(job.profile.package)}\n")
        handle.flush()
        done = subprocess.run(
            job.profile.package, cwd=job.source, env=env, stdout=handle,
            stderr=subprocess.STDOUT, check=False,
        )  # fmt: skip
    if done.returncode != 0:
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-10:])
        msg = f"packaging command failed (exit {done.returncode}); see {log}\n{tail}"
        raise PackageError(msg)
    tars = job.output / RELEASE_DIR
    write_checksums(tars)
    return [(p.name, sha256_file(p)) for p in sorted(tars.glob("*.tar.gz"))]


def _swap_into_place(new: Path, dest: Path) -> None:
    # Two renames on one file system: readers see the old set or the new one, never a mix.
    old = dest.with_name(f".{dest.name}.old")
    shutil.rmtree(old, ignore_errors=True)
    if dest.exists():
        dest.rename(old)
    new.rename(dest)
    shutil.rmtree(old, ignore_errors=True)
