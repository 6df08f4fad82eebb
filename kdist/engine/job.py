"""What a run is asked to do (Job) and what it produced (RunResult): plain data."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kdist.config import kubernetes
from kdist.config.profile import fields_for, substitute
from kdist.engine import plan
from kdist.model import (
    ArtifactRules,
    CommandResult,
    ContainerSpec,
    Deadlines,
    Layout,
    Limits,
    Plan,
    Platform,
    Profile,
    SliceResult,
    VersionInfo,
)

if TYPE_CHECKING:  # plain data of packaging; the engine's data imports no stage at run time
    from kdist.packaging.images import BuiltImage, ImageSettings


@dataclass(frozen=True)
class Job:
    """What the user asked for, after the CLI parsed and validated it."""

    source: Path
    output: Path
    profile: Profile
    platforms: tuple[Platform, ...]
    version: VersionInfo
    tree_id: str
    pin: str | None = None
    native_only: bool = False
    what: tuple[str, ...] = ()
    package: bool = True  # release: make tarballs; build: binaries only
    in_tree: bool = False  # build: binaries land where the profile's build puts them locally
    run_tests: bool = False  # release: the profile's unit tests gate the publish
    limits: Limits = field(default_factory=Limits)  # deadlines, lock wait, attempts per slice
    reuse: bool = True  # release: skip slices the journal shows are built and unchanged
    images: ImageSettings | None = None  # server images to make (None: --no-images)
    container: ContainerSpec | None = None  # set: every build runs in this container
    go_pin: str | None = None  # the project's `.go-version`, which every building host must match
    allow_toolchain_drift: bool = False  # build anyway when toolchains differ; provenance says so
    reproduce: int = 0  # slices rebuilt on a second host and compared (REPRODUCE_ALL: each)
    sign_key: Path | None = None  # ssh-keygen -Y sign key for SHA256SUMS, SHA512SUMS, provenance
    hedge: bool = True  # a straggling build gets a twin on an idle host (--no-hedge: never)
    compress: bool = False  # --compress: shown in -n's rsync command (the transports apply it)

    def expected(self, platform: Platform) -> ArtifactRules:
        """What a slice may bring back: Kubernetes' binaries, or the profile's artifact rules."""
        profile = self.profile
        if profile.layout is Layout.KUBERNETES:
            if self.what:  # a subset: whatever it built, as long as it runs on the platform
                return ArtifactRules()
            return ArtifactRules(kubernetes.expected_binaries(platform), exact=True)
        return ArtifactRules(profile.artifact_names, profile.artifact_data, every=not self.what)

    @property
    def deadlines(self) -> Deadlines:
        """The build deadlines of this job."""
        limits = self.limits
        return Deadlines(limits.idle_timeout, limits.slice_timeout, command=limits.command_timeout)

    @property
    def binaries(self) -> Path:
        """The folder that holds the release's `<os>/<arch>/` binary folders."""
        sub = "dockerized/bin" if self.profile.layout is Layout.KUBERNETES else "bin"
        return self.output / sub

    @property
    def artifact_root(self) -> Path:
        """What artifact paths are relative to: the source for a build, else the output."""
        return self.source if self.in_tree else self.output

    def dest(self, platform: Platform) -> Path:
        """Where one platform's verified binaries land on the head node."""
        if self.in_tree:
            fields = fields_for(platform, self.version.version)
            return self.source / substitute((self.profile.artifacts,), fields)[0]
        return self.binaries / platform.os / platform.arch

    def request(self, platforms: tuple[Platform, ...] | None = None) -> plan.PlanRequest:
        """The pure planning input of this job (`platforms` fills in an empty platform list)."""
        return plan.PlanRequest(
            platforms=self.platforms or platforms or (),
            profile=self.profile,
            source=str(self.source),
            tree_id=self.tree_id,
            version=self.version,
            pin=self.pin,
            native_only=self.native_only,
            what=self.what,
            containerized=self.container is not None,
        )


@dataclass
class RunResult:
    """Everything a run produced: the plan, a result per slice, the tarballs."""

    plan: Plan
    results: list[SliceResult]
    tarballs: list[tuple[str, str]] = field(default_factory=list)  # (name, sha256)
    notes: list[str] = field(default_factory=list)
    package_error: str = ""
    tests: CommandResult | None = None  # the unit test run, when the job asked for one
    test_error: str = ""
    images: list[BuiltImage] = field(default_factory=list)  # server images, when made
    run_id: str = ""
    started: float = 0.0  # Unix time
    finished: float = 0.0
    toolchain: dict[str, Any] = field(default_factory=dict)  # the agreement, for the provenance
    estimates: list[tuple[float, float]] = field(default_factory=list)  # (Unix time, seconds left)

    @property
    def ok(self) -> bool:
        """True when every slice, the tests and packaging (each if asked for) succeeded."""
        slices_ok = all(r.ok and not r.violations for r in self.results)
        return slices_ok and not self.package_error and not self.test_error
