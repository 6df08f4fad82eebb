"""Packaging during the run, and the all-or-nothing publish of release-tars/.

Tarballs are written into a hidden staging folder while slices still build (a platform is
packed as soon as its binaries are back); only a complete, checksummed set is renamed into
OUTPUT/release-tars, so a failed release never replaces the previous one with a partial set.
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from kdist import package
from kdist.collect import sha256_file
from kdist.errors import PackageError
from kdist.model import Platform

if TYPE_CHECKING:
    from kdist.pipeline import Job, RunResult

RELEASE_DIR = "release-tars"


class Packager:
    """Packs platforms as they arrive and publishes the set when the run ends."""

    def __init__(self, job: Job) -> None:
        self.job = job
        self.spec = package.PackageSpec(
            layout=job.profile.layout,
            name=job.profile.name,
            source=job.source,
            bin_dir=job.binaries,
            platforms=job.platforms,
            version=job.version,
        )
        self.staging: Path | None = None
        self._common: asyncio.Task[list[Path]] | None = None

    def start(self) -> None:
        """Create the staging folder and start the platform-independent tarballs."""
        self.job.output.mkdir(parents=True, exist_ok=True)
        self.staging = Path(tempfile.mkdtemp(prefix=f".{RELEASE_DIR}-", dir=self.job.output))
        self._common = asyncio.create_task(
            asyncio.to_thread(package.common_tarballs, self.spec, self.staging)
        )

    async def platform(self, platform: Platform) -> None:
        """Pack one platform (waits for the common tarballs its packages embed)."""
        assert self.staging is not None and self._common is not None
        await asyncio.shield(self._common)
        await asyncio.to_thread(package.platform_tarballs, self.spec, platform, self.staging)

    async def finish(self, outcome: RunResult) -> None:
        """Publish when every slice succeeded; otherwise drop the staging folder."""
        assert self.staging is not None and self._common is not None
        try:
            await self._common
            if outcome.ok:
                await asyncio.to_thread(self._publish, outcome)
        except (PackageError, OSError) as exc:
            outcome.package_error = str(exc)
        finally:
            shutil.rmtree(self.staging, ignore_errors=True)

    def _publish(self, outcome: RunResult) -> None:
        assert self.staging is not None
        names = package.expected_tarballs(self.spec)
        missing = [n for n in names if not (self.staging / n).is_file()]
        if missing:
            msg = f"release incomplete, not published: missing {', '.join(missing)}"
            raise PackageError(msg)
        package.write_checksums(self.staging)
        outcome.tarballs = [(n, sha256_file(self.staging / n)) for n in sorted(names)]
        self.staging.chmod(0o755)
        _swap_into_place(self.staging, self.job.output / RELEASE_DIR)


def _swap_into_place(new: Path, dest: Path) -> None:
    # Two renames on one file system: readers see the old set or the new one, never a mix.
    old = dest.with_name(f".{dest.name}.old")
    shutil.rmtree(old, ignore_errors=True)
    if dest.exists():
        dest.rename(old)
    new.rename(dest)
    shutil.rmtree(old, ignore_errors=True)
