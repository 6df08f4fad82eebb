"""Packaging during the run, and the all-or-nothing publish of release-tars/ and release-images/.

Tarballs are written into a hidden staging folder while slices still build (a platform is
packed as soon as its binaries are back; its server images first, since its server tarball
holds them); only a complete, checksummed set is renamed into OUTPUT/release-tars (and the
images into OUTPUT/release-images/<arch>/), so a failed release never replaces the previous
one with a partial set.
A profile with a `package` command delegates to the repository's own packaging instead.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kdist.config.version import version_defs
from kdist.errors import ConfigError, PackageError
from kdist.model import REPRODUCE_ALL, Platform, SliceResult
from kdist.packaging import evidence as proof
from kdist.packaging import provenance
from kdist.packaging.images import RELEASE_IMAGES, BuiltImage, ImagePlan, build_platform
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


def package_spec(
    job: Job,
    platforms: tuple[Platform, ...] | None = None,
    images: tuple[ImagePlan | None, Path | None] = (None, None),
) -> PackageSpec:
    """The packaging input of a job (with the image plan and where its images are built)."""
    return PackageSpec(
        layout=job.profile.layout,
        name=job.profile.name,
        source=job.source,
        bin_dir=job.binaries,
        platforms=platforms or job.platforms,
        version=job.version,
        images=images[0],
        images_dir=images[1],
    )


class Packager:
    """Packs platforms as they arrive and publishes the set when the run ends."""

    def __init__(self, job: Job, images: ImagePlan | None = None) -> None:
        self.job = job
        self.images = images
        self.spec = package_spec(job)
        self.delegated = bool(job.profile.package)
        self.staging: Path | None = None
        self.built: list[BuiltImage] = []
        self._common: asyncio.Task[list[Path]] | None = None

    def start(self) -> None:
        """Create the staging folders and start the platform-independent tarballs."""
        self.job.output.mkdir(parents=True, exist_ok=True)
        if self.delegated:
            return
        self.staging = Path(tempfile.mkdtemp(prefix=f".{RELEASE_DIR}-", dir=self.job.output))
        if self.images is not None:
            images_dir = self.staging / f".{RELEASE_IMAGES}"
            self.spec = package_spec(self.job, images=(self.images, images_dir))
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
        self.built += await asyncio.to_thread(build_images, self.spec, platform)
        await asyncio.to_thread(platform_tarballs, self.spec, platform, self.staging)

    async def finish(self, outcome: RunResult, tree: str) -> None:
        """Publish when everything succeeded; otherwise drop the staging folder.

        `tree` is the digest of the source tree the slices were built from.
        """
        try:
            facts = evidence_of(self.job, outcome.results, tree, outcome)
            if self.delegated:
                if outcome.ok:
                    outcome.tarballs = await asyncio.to_thread(run_delegate, self.job, facts)
                return
            assert self.staging is not None and self._common is not None
            await self._common
            if outcome.ok:
                outcome.tarballs = await asyncio.to_thread(
                    finalize, self.spec, self.staging, self.job.output, facts
                )
                outcome.images = sorted(self.built, key=_image_order(self.images))
        except (PackageError, ConfigError) as exc:
            outcome.package_error = str(exc)
        finally:
            if self.staging is not None:
                shutil.rmtree(self.staging, ignore_errors=True)


def build_images(spec: PackageSpec, platform: Platform) -> list[BuiltImage]:
    """Build `platform`'s server images into the staging images folder (none when off)."""
    if spec.images is None or spec.images_dir is None:
        return []
    bin_dir = spec.bin_dir / platform.os / platform.arch
    mtime = spec.version.source_date_epoch
    return build_platform(spec.images, platform, bin_dir, spec.images_dir, mtime)


def _image_order(plan: ImagePlan | None) -> Callable[[BuiltImage], int]:
    order = {spec: n for n, spec in enumerate(plan.specs)} if plan is not None else {}
    return lambda built: order.get(built.spec, 0)


def evidence_of(
    job: Job, results: Sequence[SliceResult], tree: str, outcome: RunResult | None = None
) -> proof.Evidence:
    """The facts the SBOMs, provenance and signatures of this job's release are made from."""
    release = provenance.Release(
        project=job.profile.name,
        version=job.version,
        profile=job.profile,
        platforms=tuple(str(r.slice.platform) for r in results),
        tree_digest=tree,
        run_id=outcome.run_id if outcome else "",
        started=outcome.started if outcome else time.time(),
        finished=time.time(),
        options=_options(job),
        toolchain=outcome.toolchain if outcome else {},
    )
    return proof.Evidence(release, tuple(results), job.output, job.sign_key)


def _options(job: Job) -> dict[str, Any]:
    """The user's choices that shaped the release, as the provenance records them."""
    reproduce: int | str = "all" if job.reproduce == REPRODUCE_ALL else job.reproduce
    return {
        "verifyReproducible": reproduce,
        "allowToolchainDrift": job.allow_toolchain_drift,
        "nativeOnly": job.native_only,
        "unitTests": job.run_tests and bool(job.profile.test),
        "smoke": list(job.profile.smoke),
        "container": job.container.image if job.container else None,
        "signed": job.sign_key is not None,
    }


def attest(folder: Path, facts: proof.Evidence, tarballs: list[tuple[str, str]]) -> None:
    """SBOMs and provenance, then checksums (tarballs and SBOMs), then signatures."""
    sboms = proof.write_sboms(folder, facts)
    proof.write_provenance(folder, facts, tarballs, sboms)
    write_checksums(folder)
    if facts.sign_key is not None:
        proof.sign(folder, facts.sign_key)


def finalize(
    spec: PackageSpec, staging: Path, output: Path, facts: proof.Evidence
) -> list[tuple[str, str]]:
    """Check the set is complete, add the evidence, swap it into OUTPUT/release-tars.

    The images staged in `staging/.release-images` go to OUTPUT/release-images first, so a
    published release-tars never refers to images that are not there.
    """
    names = expected_tarballs(spec)
    missing = [n for n in names if not (staging / n).is_file()]
    if missing:
        msg = f"release incomplete, not published: missing {', '.join(missing)}"
        raise PackageError(msg)
    tarballs = [(n, sha256_file(staging / n)) for n in sorted(names)]
    attest(staging, facts, tarballs)
    if spec.images is not None and spec.images_dir is not None:
        spec.images_dir.mkdir(exist_ok=True)  # a release without server platforms has none
        spec.images_dir.chmod(0o755)
        _swap_into_place(spec.images_dir, output / RELEASE_IMAGES)
    staging.chmod(0o755)
    _swap_into_place(staging, output / RELEASE_DIR)
    return tarballs


def package_now(
    job: Job,
    platforms: tuple[Platform, ...],
    facts: proof.Evidence,
    images: ImagePlan | None = None,
) -> tuple[list[tuple[str, str]], list[BuiltImage]]:
    """Pack binaries already in the output (`kdist package`), images included, all or nothing."""
    job.output.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{RELEASE_DIR}-", dir=job.output))
    images_dir = staging / f".{RELEASE_IMAGES}" if images is not None else None
    spec = package_spec(job, platforms, (images, images_dir))
    built: list[BuiltImage] = []
    try:
        common_tarballs(spec, staging)
        for platform in platforms:
            built += build_images(spec, platform)
            platform_tarballs(spec, platform, staging)
        tarballs = finalize(spec, staging, job.output, facts)
        return tarballs, sorted(built, key=_image_order(images))
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def run_delegate(job: Job, facts: proof.Evidence) -> list[tuple[str, str]]:
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
    tarballs = [(p.name, sha256_file(p)) for p in sorted(tars.glob("*.tar.gz"))]
    attest(tars, facts, tarballs)
    return tarballs


def _swap_into_place(new: Path, dest: Path) -> None:
    # Two renames on one file system: readers see the old set or the new one, never a mix.
    old = dest.with_name(f".{dest.name}.old")
    shutil.rmtree(old, ignore_errors=True)
    if dest.exists():
        dest.rename(old)
    new.rename(dest)
    shutil.rmtree(old, ignore_errors=True)
