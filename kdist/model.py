"""Frozen data passed between the stages: platforms, hosts, profiles, plans and results."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from enum import Enum
from pathlib import Path

# Go's first-class ports plus the ones Kubernetes and its neighbours ship; anything else is a typo.
KNOWN_OS = frozenset({"linux", "darwin", "windows", "freebsd", "netbsd", "openbsd", "illumos"})
KNOWN_ARCH = frozenset(
    {"amd64", "arm64", "arm", "386", "s390x", "ppc64le", "ppc64", "riscv64", "loong64", "mips64le"}
)

# `uname -m` spellings mapped to GOARCH, the way kube::util::host_arch does it.
UNAME_TO_GOARCH = {
    "x86_64": "amd64",
    "amd64": "amd64",
    "aarch64": "arm64",
    "arm64": "arm64",
    "armv7l": "arm",
    "armv8l": "arm",
    "armv6l": "arm",
    "i386": "386",
    "i686": "386",
    "s390x": "s390x",
    "ppc64le": "ppc64le",
    "ppc64": "ppc64",
    "riscv64": "riscv64",
    "loongarch64": "loong64",
}

# --verify-reproducible=all: every slice is rebuilt on a second host and compared.
REPRODUCE_ALL = -1

# On the build host, not here; per-tree subfolders are created with the user's umask.
DEFAULT_WORKDIR = "/var/tmp/kdist"  # noqa: S108
DEFAULT_DOCKER_SOCKET = "/var/run/docker.sock"

_PLATFORM_RE = re.compile(r"^([a-z0-9]+)/([a-z0-9]+)$")


@dataclass(frozen=True, order=True)
class Platform:
    """A Go build target, `os/arch`."""

    os: str
    arch: str

    @classmethod
    def parse(cls, text: str) -> Platform:
        """Parse and check `os/arch`; raise ValueError naming what is wrong."""
        match = _PLATFORM_RE.fullmatch(text.strip())
        if not match:
            msg = f"{text!r} is not of the form os/arch (e.g. linux/arm64)"
            raise ValueError(msg)
        os_, arch = match.groups()
        if os_ not in KNOWN_OS:
            msg = f"unknown os {os_!r} in {text!r}"
            raise ValueError(msg)
        if arch not in KNOWN_ARCH:
            msg = f"unknown arch {arch!r} in {text!r}"
            raise ValueError(msg)
        return cls(os_, arch)

    def __str__(self) -> str:
        return f"{self.os}/{self.arch}"

    @property
    def dashed(self) -> str:
        """The `os-arch` spelling used in tarball and log names."""
        return f"{self.os}-{self.arch}"

    @property
    def exe_suffix(self) -> str:
        """`.exe` on Windows, empty elsewhere."""
        return ".exe" if self.os == "windows" else ""


def parse_platform_list(text: str) -> tuple[Platform, ...]:
    """Parse a comma (or space) separated platform list, keeping order, dropping duplicates."""
    seen: dict[Platform, None] = {}
    for word in re.split(r"[,\s]+", text.strip()):
        if word:
            seen.setdefault(Platform.parse(word), None)
    return tuple(seen)


@dataclass(frozen=True)
class Endpoint:
    """One SSH server as the inventory and ssh_config resolve it (what `ssh -G` would print)."""

    alias: str  # the name ssh_config is asked about, as in `ssh ALIAS`
    address: str  # where it connects: ssh_config's HostName, or the alias
    port: int = 22
    user: str | None = None  # None: the local user name
    identity_files: tuple[Path, ...] = ()  # empty: the SSH client's default keys
    known_hosts: tuple[Path, ...] = ()  # where its host key is looked up (and recorded)
    connect_timeout: float | None = None  # ssh_config's ConnectTimeout
    written: frozenset[str] = frozenset()  # keys the inventory set; ssh_config gave the rest
    ciphers: str | None = None  # ssh_config's Ciphers (asyncssh applies it); None: kdist's order


@dataclass(frozen=True)
class Host:
    """One build host of the inventory, with every default already applied."""

    name: str
    address: str
    port: int = 22
    user: str | None = None
    identity_files: tuple[Path, ...] = ()
    known_hosts: tuple[Path, ...] = ()
    workdir: str = DEFAULT_WORKDIR
    capacity: int = 1
    env: Mapping[str, str] = field(default_factory=dict)
    platforms: tuple[Platform, ...] | None = None  # None: detect with `uname -m`
    labels: tuple[str, ...] = ()
    local: bool = False  # the head node itself: no SSH, builds in the source tree
    docker_socket: str = DEFAULT_DOCKER_SOCKET  # on the host; forwarded over the SSH connection
    alias: str = ""  # the name ssh_config was asked about ("": the address)
    jump: tuple[Endpoint, ...] = ()  # ProxyJump: the SSH servers to pass through, in order
    connect_timeout: float | None = None
    # The connection keys (port, user, identity_file, known_hosts) the inventory wrote: only
    # those beat ssh_config; an unwritten port 22 is a default, not a choice.
    written: frozenset[str] = frozenset()
    ciphers: str | None = None  # ssh_config's Ciphers, as Endpoint.ciphers

    @property
    def endpoint(self) -> Endpoint:
        """The host as an SSH server."""
        values = {name: getattr(self, name) for name in _ENDPOINT_FIELDS}
        return Endpoint(**{**values, "alias": self.alias or self.address})

    def reached_as(self, hop: Endpoint, jump: tuple[Endpoint, ...]) -> Host:
        """The host as ssh_config resolved it: `hop`, reached through the `jump` hosts."""
        return replace(self, jump=jump, **{name: getattr(hop, name) for name in _ENDPOINT_FIELDS})


_ENDPOINT_FIELDS = tuple(f.name for f in fields(Endpoint))
LOCAL_HOST = Host(name="local", address="localhost", local=True)


@dataclass(frozen=True)
class Inventory:
    """The validated host inventory, in file order."""

    hosts: tuple[Host, ...]
    source: str = "<built-in>"

    def host(self, name: str) -> Host | None:
        """Return the host called `name`, or None."""
        return next((h for h in self.hosts if h.name == name), None)


class Layout(str, Enum):
    """How binaries are collected and packed."""

    GENERIC = "generic"
    KUBERNETES = "kubernetes"


@dataclass(frozen=True)
class ArtifactRules:
    """Which files a slice may bring back (kdist/stages/artifacts.py applies them)."""

    names: tuple[str, ...] = ()  # globs of the expected files; (): executables for the platform
    data: tuple[str, ...] = ()  # globs of files shipped as data, not executables (mode 0644)
    exact: bool = False  # `names` are exact and extra files are dropped (the Kubernetes layout)
    every: bool = True  # every glob of `names` must match a file (not for `kdist build WHAT`)


@dataclass(frozen=True)
class Profile:
    """How a project builds, where its binaries land and what to pack."""

    name: str
    layout: Layout
    platforms: tuple[Platform, ...]
    build: tuple[str, ...]  # argv template; {platform} {os} {arch} {version} substituted per word
    artifacts: str  # directory template relative to the source root
    env: Mapping[str, str] = field(default_factory=dict)
    build_what: tuple[str, ...] = ()  # argv template for `kdist build WHAT...`; {what} is the list
    test: tuple[str, ...] = ()  # argv template for the unit tests, run once before packaging
    package: tuple[str, ...] = ()  # argv: the repository's own packaging, run on the head node
    smoke: tuple[str, ...] = ()  # argv template run per binary on a native host; {bin} is its path
    source: str = "<built-in>"
    images: Mapping[str, str] = field(default_factory=dict)  # server image variables (kubernetes)
    container: ContainerSpec | None = None  # set: builds run in this container by default
    log_limit: int | None = None  # bytes of each slice's log (None: Limits' default)
    # Per platform ("*": every platform), per kind of build ("all", "native", "cross"): env.
    platform_env: Mapping[str, Mapping[str, Mapping[str, str]]] = field(default_factory=dict)
    git_answers: bool = False  # ship the head node's git answers with the tree to every host
    artifact_names: tuple[str, ...] = ()  # generic: globs of the expected artifacts
    artifact_data: tuple[str, ...] = ()  # generic: globs of files shipped as data ("*": any)


@dataclass(frozen=True)
class VersionInfo:
    """The version decided once on the head node and handed to every host."""

    version: str
    commit: str = ""
    tree_state: str = "unknown"  # clean | dirty | archive | unknown
    major: str = ""
    minor: str = ""
    source_date_epoch: int = 0


KiB, MiB, GiB = 1 << 10, 1 << 20, 1 << 30


@dataclass(frozen=True)
class TransferDeadline:
    """How long an rsync transfer may go without moving data, and how long in all."""

    idle: float  # rsync's own --timeout, on both ends
    total: float  # wall clock: the head node kills its rsync, the host's runs under `timeout`


@dataclass(frozen=True)
class Limits:
    """How long a run waits and retries, and how much a host may send: every default, once."""

    idle_timeout: float | None = 900.0  # stop a build silent this long (None: never)
    slice_timeout: float | None = None  # stop a build running this long (None: never)
    lock_wait: float = 30.0  # wait this long for another run's lock on a host's workdir
    # Every other remote wait has a deadline too: each of kdist's own commands on a host
    # (probes, `go version`, the artifact listing, file helpers), and each rsync transfer from
    # start to end; rsync itself gives up after command_timeout without moving data.
    command_timeout: float = 120.0
    transfer_timeout: float = 3600.0
    attempts: int = 3  # hosts tried per slice when hosts fail
    backoff: float = 1.0  # seconds before the first retry; doubles each time
    # What a build host sends, bounded so a runaway or hostile host cannot fill the head node.
    log_limit: int = 64 * MiB  # bytes of one slice's log: its first half, then a rolling tail
    line_limit: int = 64 * KiB  # characters of one output line kept; the rest is dropped
    helper_output: int = 1 * MiB  # output of kdist's own small host scripts (probe, go version)
    manifest_bytes: int = 8 * MiB  # the artifact list a host prints (10,000 long names fit)
    artifact_files: int = 10_000  # entries in one slice's artifacts folder
    artifact_file_bytes: int = 2 * GiB  # one artifact (a Kubernetes server binary is ~150 MB)
    artifact_bytes: int = 16 * GiB  # all artifacts of one slice together
    packaging_room: float = 1.0  # free space wanted besides a pull's size, as a share of it
    # A straggler is also at least this many seconds past its estimate: a twin costs a sync
    # and a slot, which a build a few seconds late does not repay.
    hedge_margin: float = 5.0

    @property
    def transfer(self) -> TransferDeadline:
        """The deadline of one rsync push or pull."""
        return TransferDeadline(self.command_timeout, self.transfer_timeout)


MIN_LOG_LIMIT = 64 * KiB  # below this a log could not keep one long line of head and of tail
_SIZE = re.compile(r"(\d+)\s*([KMG]?)(?:i?B)?", re.IGNORECASE)


def parse_size(text: str) -> int:
    """Bytes from `1048576`, `512K`, `64M`, `64MiB` or `2G` (binary units); ValueError if not."""
    match = _SIZE.fullmatch(text.strip())
    if not match:
        msg = f"{text!r} is not a size (bytes, or a number with K, M or G)"
        raise ValueError(msg)
    unit = {"": 1, "K": KiB, "M": MiB, "G": GiB}[match.group(2).upper()]
    return int(match.group(1)) * unit


def format_size(count: int) -> str:
    """`64 MiB`, `512 KiB` or `1000 bytes`: the largest binary unit that divides it evenly."""
    for unit, name in ((GiB, "GiB"), (MiB, "MiB"), (KiB, "KiB")):
        if count >= unit and count % unit == 0:
            return f"{count // unit} {name}"
    return f"{count} bytes"


@dataclass(frozen=True)
class Deadlines:
    """How long a build may stay silent, and how long it may take in all (None: no limit)."""

    idle: float | None
    total: float | None
    grace: int = 10  # seconds between SIGTERM and SIGKILL when stopping a build
    command: float = Limits.command_timeout  # kdist's own commands around it (clearing outputs)


@dataclass(frozen=True)
class Slice:
    """One platform's share of the build, planned onto one host."""

    platform: Platform
    host: str
    cross: bool  # True when the host is not native for the platform (Go cross-compiles)
    workdir: str  # where this source tree lives on the host
    argv: tuple[str, ...]  # the build command, already substituted
    artifacts: str  # directory on the host holding the binaries after the build
    env: Mapping[str, str] = field(default_factory=dict, hash=False)  # build env ({}: the host's)
    tree: str = ""  # set: the synced tree, copied into `workdir` for this slice alone

    @property
    def key(self) -> str:
        """A stable, file-name-safe identifier of the slice."""
        return self.platform.dashed


@dataclass(frozen=True)
class Plan:
    """Which host builds which platform, and with which command."""

    slices: tuple[Slice, ...]
    env: Mapping[str, Mapping[str, str]]  # per host name: the environment of its builds
    notes: tuple[str, ...] = ()
    test_host: str = ""  # where the unit tests run: the least loaded host of the plan
    # Slice key -> (start, end), seconds from the run's start, as the estimates expect them.
    expected: Mapping[str, tuple[float, float]] = field(default_factory=dict)
    critical: tuple[str, ...] = ()  # slice keys of the slot that finishes last, in order

    @property
    def hosts(self) -> tuple[str, ...]:
        """Names of hosts that have work, in first-use order."""
        return tuple(dict.fromkeys(s.host for s in self.slices))

    @property
    def makespan(self) -> float:
        """The expected seconds until every slice is built (0.0 when nothing is expected)."""
        return max((end for _, end in self.expected.values()), default=0.0)


@dataclass(frozen=True)
class CommandResult:
    """What a finished command left behind, shaped like subprocess.CompletedProcess."""

    argv: tuple[str, ...]
    returncode: int
    stdout: str = ""
    stderr: str = ""
    duration: float = 0.0

    @property
    def ok(self) -> bool:
        """True when the command exited 0."""
        return self.returncode == 0

    def tail(self, lines: int = 10) -> str:
        """The last `lines` lines of combined output, for error messages."""
        text = (self.stdout + ("\n" + self.stderr if self.stderr else "")).rstrip("\n")
        return "\n".join(text.splitlines()[-lines:])


class Status(str, Enum):
    """How a slice ended."""

    OK = "ok"
    FAILED = "failed"  # the build itself said no
    INFRA = "infra"  # host, network or transfer failure
    INTEGRITY = "integrity"  # what came back failed verification
    CANCELLED = "cancelled"


@dataclass(frozen=True)
class Artifact:
    """A verified binary in the output tree."""

    path: str  # relative to the output directory
    sha256: str
    size: int


@dataclass(frozen=True)
class SliceResult:
    """The outcome of one slice: data, never an exception."""

    slice: Slice
    status: Status
    duration: float
    phase: str = "done"  # the phase it was in when it ended
    error: str = ""
    log: str = ""  # path of the slice's log file
    artifacts: tuple[Artifact, ...] = ()
    attempts: int = 1  # how many hosts it took (infrastructure failures are retried elsewhere)
    reused: bool = False  # True when the journal showed the binaries were already built
    image: str = ""  # the build image's id (container builds)
    record: BuildRecord | None = None  # who built the binaries (from the journal when reused)
    reproduction: Reproduction | None = None  # the second build, when this slice was sampled
    smoke: tuple[SmokeTest, ...] = ()  # each binary run on a native host (profile `smoke:`)
    excerpt: tuple[str, ...] = ()  # a failed slice: the last lines of its log, noise trimmed
    hedge: Hedge | None = None  # a straggler got a twin on another host
    # What hosts this slice moved away from sent that failed verification (those hosts were
    # left out). The slice may still have finished on an honest host: the run exits 4 anyway.
    violations: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        """True when the slice built and its binaries were collected."""
        return self.status is Status.OK


@dataclass(frozen=True)
class Hedge:
    """A slice whose build straggled and got a twin on another host; the first one won."""

    host: str  # where the straggling build ran
    twin: str  # where its twin ran
    after: float  # seconds the straggler had been building when the twin started
    winner: str  # whose binaries are in the output
    stopped: str = ""  # whose build was stopped ('' when it had already ended)


@dataclass(frozen=True)
class BuildRecord:
    """Who built a slice's binaries, with what and when: the evidence the provenance publishes."""

    attempt: str
    host: str
    address: str
    port: int
    host_key: str  # SHA256 fingerprint of the host key verified at connect ('' on the head node)
    toolchain: str  # the host's Go version, e.g. go1.22.4
    argv: tuple[str, ...]
    env: Mapping[str, str]  # every variable kdist set for the build
    workdir: str
    cross: bool
    started: float  # Unix time
    finished: float
    image: str = ""  # the build image digest in container mode


@dataclass(frozen=True)
class Reproduction:
    """A slice rebuilt on a second host and compared with the first build, file by file."""

    record: BuildRecord | None  # the second build (None when it could not be made)
    agreed: bool
    differences: tuple[str, ...] = ()  # one line per file that differs
    error: str = ""  # why the comparison could not be made
    reports: tuple[str, ...] = ()  # diffoscope reports, when diffoscope is installed


@dataclass(frozen=True)
class SmokeTest:
    """One binary run on a host native for its platform (host '' when there was none)."""

    binary: str
    host: str
    argv: tuple[str, ...] = ()
    ok: bool = False
    output: str = ""  # the last lines it printed, sanitised

    @property
    def tested(self) -> bool:
        """False when no native host could run it."""
        return bool(self.host)


@dataclass(frozen=True)
class ContainerSpec:
    """The build container of a project: which image, and how it gets to a host."""

    image: str  # a name (or an id); the default for every host
    images: Mapping[str, str] = field(default_factory=dict)  # "os/arch" of a daemon -> its image
    dockerfile: str = ""  # relative to the source: build the image there when a host lacks it
    network: str = "none"  # the container's network mode


@dataclass(frozen=True)
class DaemonReport:
    """What `hosts check` found about a host's docker daemon (container builds)."""

    socket: str  # the socket path on the host
    version: str = ""  # the daemon's version, '' when it could not be reached
    image: str = ""  # the build image's name for this daemon's platform
    image_id: str = ""  # its id there, '' when the daemon does not have it
    problem: str = ""  # why the host cannot build in containers ('' when it can)
