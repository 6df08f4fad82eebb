"""Typed options: argv is parsed once, here, into one frozen object per command.

Every default is written once, in the dataclasses below (or in `kdist.model.Limits`); the
parser itself gives none (`argument_default=SUPPRESS`), so an option the user did not give
is simply absent and the dataclass default applies. Nothing below the CLI sees argparse.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import platform as pyplatform
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from kdist import __version__
from kdist.config.inventory import HOSTS_ENV
from kdist.errors import ConfigError
from kdist.model import (
    MIN_LOG_LIMIT,
    REPRODUCE_ALL,
    UNAME_TO_GOARCH,
    Limits,
    Platform,
    format_size,
    parse_platform_list,
    parse_size,
)

_T = TypeVar("_T")


@dataclass(frozen=True)
class Display:
    """How a command shows its outcome; these flags go before or after the command's name."""

    json: bool = False  # one JSON document on stdout
    quiet: bool = False  # no progress display
    debug: bool = False  # tracebacks of internal errors


@dataclass(frozen=True)
class Farm:
    """Which build hosts, and how to reach them."""

    hosts: Path | None = None  # --hosts, else $KDIST_HOSTS, else the head node alone
    limit: str | None = None  # --limit PATTERN, Ansible's host patterns
    ssh_config: Path | None = None  # None: ~/.ssh/config and /etc/ssh/ssh_config
    connect_timeout: float | None = None  # None: the host's ConnectTimeout, else 10 s
    accept_new_host_keys: bool = False
    compress: bool = False  # --compress: rsync compresses what it moves (zstd when both ends can)


@dataclass(frozen=True)
class Tree:
    """The source tree and its profile."""

    source: Path = Path()  # resolved and checked to be a directory by `parse`
    profile: Path | None = None  # None: SOURCE/kdist.yaml or the built-in profile


@dataclass(frozen=True)
class RunOptions:
    """What `release`, `quick-release` and `build` share."""

    farm: Farm = field(default_factory=Farm)
    tree: Tree = field(default_factory=Tree)
    limits: Limits = field(default_factory=Limits)
    log_limit: int | None = None  # --log-limit; None: the profile's `log_limit`, else Limits'
    native_only: bool = False
    allow_toolchain_drift: bool = False  # build although hosts' Go (or .go-version) differ
    host: str | None = None  # --host: every slice on this inventory host
    dry_run: bool = False
    container: bool | None = None  # --container / --native; None: the profile decides
    timeline: Path | None = None  # --timeline: the run's phases as a Chrome trace
    hedge: bool = True  # --no-hedge: a straggling build never gets a twin


@dataclass(frozen=True)
class ReleaseOptions:
    """`kdist release` and `kdist quick-release`."""

    run: RunOptions = field(default_factory=RunOptions)
    platforms: tuple[Platform, ...] = ()  # (): the profile's platforms
    output: Path | None = None  # None: SOURCE/_output
    tests: bool = True  # the profile's unit tests gate the publish
    reuse: bool = True  # skip slices the journal shows are built and unchanged
    images: bool = True  # server images, for Kubernetes releases (--no-images: none)
    verify_reproducible: int = 0  # slices rebuilt on a second host (REPRODUCE_ALL: every one)
    sign_key: Path | None = None  # ssh-keygen -Y sign key for the sums and the provenance


@dataclass(frozen=True)
class BuildOptions:
    """`kdist build [WHAT...]`."""

    run: RunOptions = field(default_factory=RunOptions)
    platform: Platform | None = None  # None: the building host's own
    what: tuple[str, ...] = ()


@dataclass(frozen=True)
class PackageOptions:
    """`kdist package`."""

    tree: Tree = field(default_factory=Tree)
    platforms: tuple[Platform, ...] = ()  # (): every platform found in the output
    output: Path | None = None
    dry_run: bool = False
    sign_key: Path | None = None


@dataclass(frozen=True)
class CleanOptions:
    """`kdist clean [--remote]`."""

    farm: Farm = field(default_factory=Farm)
    tree: Tree = field(default_factory=Tree)
    remote: bool = False
    dry_run: bool = False


@dataclass(frozen=True)
class HostsCheckOptions:
    """`kdist hosts check`."""

    farm: Farm = field(default_factory=Farm)
    tree: Tree = field(default_factory=Tree)  # whose build container to look for
    container: bool | None = None  # --container / --native; None: the profile decides


@dataclass(frozen=True)
class HostsListOptions:
    """`kdist hosts list`."""

    farm: Farm = field(default_factory=Farm)


@dataclass(frozen=True)
class VerifyOptions:
    """`kdist verify DIR [--allowed-signers FILE]`."""

    folder: Path = Path()  # release-tars/, or the output folder above it
    allowed_signers: Path | None = None  # None: signatures checked for integrity only


Command = (
    ReleaseOptions
    | BuildOptions
    | PackageOptions
    | CleanOptions
    | HostsCheckOptions
    | HostsListOptions
    | VerifyOptions
)


@dataclass(frozen=True)
class Invocation:
    """One parsed command line."""

    display: Display
    command: Command


# --- the parser ----------------------------------------------------------------------------------

_LIMITS = Limits()


def build_parser() -> argparse.ArgumentParser:
    """The kdist argument parser; it sets no defaults (see the module docstring)."""
    parser = argparse.ArgumentParser(
        prog="kdist",
        description="Distributed release builder for Go projects built with make.",
        argument_default=argparse.SUPPRESS,
    )
    parser.add_argument("--version", action="version", version=f"kdist {__version__}")
    _display_options(parser)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _release_options(_command(sub, "release", "build every platform on the farm, test and pack"))
    quick = _command(sub, "quick-release", "no tests, linux/<this arch> only (KUBE_FASTBUILD)")
    _release_options(quick, quick=True)
    _build_options(_command(sub, "build", "build targets for one platform (make all WHAT=)"))
    _package_options(_command(sub, "package", "pack what is in the output (make package)"))
    _clean_options(_command(sub, "clean", "remove _output (and --remote workdirs)"))
    _verify_options(_command(sub, "verify", "check a release: checksums, signatures, provenance"))
    hosts = _command(sub, "hosts", "inspect the build farm")
    hosts_sub = hosts.add_subparsers(dest="hosts_command", required=True, metavar="SUBCOMMAND")
    check = _command(hosts_sub, "check", "verify every host (verify_prereqs)")
    _farm_options(check)
    check.add_argument("--source", type=Path, metavar="DIR", help="default: .")
    check.add_argument("--profile", type=Path, metavar="FILE", help="default: SOURCE/kdist.yaml")
    _mode_options(check)
    _farm_options(_command(hosts_sub, "list", "print the resolved hosts, connect to nothing"))
    return parser


def _command(sub: Any, name: str, text: str) -> argparse.ArgumentParser:  # noqa: ANN401
    """A subcommand parser that, like the top one, sets no defaults and takes display flags."""
    parser: argparse.ArgumentParser = sub.add_parser(
        name, help=text, argument_default=argparse.SUPPRESS
    )
    _display_options(parser)
    return parser


def _display_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="print one JSON document")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress display")
    p.add_argument("--debug", action="store_true", help="show tracebacks of internal errors")


def _farm_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--hosts",
        type=Path,
        metavar="FILE",
        help="inventory: kdist YAML, Ansible YAML or INI, or ansible:FILE "
        f"(default: ${HOSTS_ENV}, else this machine alone)",
    )
    p.add_argument(
        "--limit",
        metavar="PATTERN",
        help="only these hosts, as Ansible's --limit: names, groups/labels, globs, a:b, !x, &y",
    )
    p.add_argument(
        "--ssh-config",
        type=Path,
        metavar="FILE",
        help="read this ssh_config instead of ~/.ssh/config and /etc/ssh/ssh_config (as ssh -F)",
    )
    p.add_argument(
        "--connect-timeout",
        type=float,
        metavar="SECONDS",
        help="give up on a host that does not answer and log in within this time "
        "(default: its ConnectTimeout in ssh_config, else 10)",
    )
    p.add_argument(
        "--accept-new-host-keys",
        action="store_true",
        help="record the key of a host known_hosts has none for (a changed key is always refused)",
    )


def _tree_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--source", type=Path, metavar="DIR", help="default: .")
    p.add_argument("--profile", type=Path, metavar="FILE", help="default: SOURCE/kdist.yaml")
    p.add_argument("-n", "--dry-run", action="store_true", help="print what would run, run nothing")


def _mode_options(p: argparse.ArgumentParser) -> None:
    mode = p.add_mutually_exclusive_group()
    mode.add_argument(
        "--container",
        dest="container",
        action="store_const",
        const=True,
        help="build in the profile's container image on every host (make release's way)",
    )
    mode.add_argument(
        "--native",
        dest="container",
        action="store_const",
        const=False,
        help="build with each host's own toolchain, even if the profile names a container",
    )


def _run_options(p: argparse.ArgumentParser) -> None:
    _farm_options(p)
    _tree_options(p)
    _mode_options(p)
    p.add_argument(
        "--compress",
        action="store_true",
        help="compress syncs and pulls on the wire, for slow links "
        "(rsync --compress: zstd when both ends have it, else zlib)",
    )
    p.add_argument(
        "--native-only",
        action="store_true",
        help="fail instead of cross-compiling a platform without a native host",
    )
    p.add_argument(
        "--timeline",
        type=Path,
        metavar="FILE",
        help="write the run's phases per host and slice as a Chrome trace (Perfetto opens it)",
    )
    p.add_argument(
        "--slice-timeout",
        type=float,
        metavar="SECONDS",
        help="stop a build that takes longer (default: no limit)",
    )
    p.add_argument(
        "--idle-timeout",
        type=float,
        metavar="SECONDS",
        help=f"stop a build that prints nothing for this long (default {_LIMITS.idle_timeout:g})",
    )
    p.add_argument(
        "--lock-wait",
        type=float,
        metavar="SECONDS",
        help="wait this long for another run's lock on a host's workdir "
        f"(default {_LIMITS.lock_wait:g})",
    )
    p.add_argument(
        "--command-timeout",
        type=float,
        metavar="SECONDS",
        help="stop any of kdist's own commands on a host (probes, go version, the artifact "
        f"listing) that takes longer (default {_LIMITS.command_timeout:g})",
    )
    p.add_argument(
        "--transfer-timeout",
        type=float,
        metavar="SECONDS",
        help="stop a sync or pull that takes longer; rsync also stops after --command-timeout "
        f"without data (default {_LIMITS.transfer_timeout:g})",
    )
    p.add_argument(
        "--log-limit",
        type=log_size,
        metavar="SIZE",
        help="keep at most this much of each slice's log: its first half and its last lines "
        f"(e.g. 1M; default: the profile's log_limit, else {format_size(_LIMITS.log_limit)})",
    )
    p.add_argument(
        "--no-hedge",
        dest="hedge",
        action="store_const",
        const=False,
        default=argparse.SUPPRESS,  # the default lives in RunOptions
        help="never start a twin of a straggling build on an idle host",
    )
    p.add_argument(
        "--allow-toolchain-drift",
        action="store_true",
        help="build even when hosts' Go (or .go-version) differ; the provenance records it",
    )


def _release_options(p: argparse.ArgumentParser, *, quick: bool = False) -> None:
    _run_options(p)
    p.add_argument("--platforms", metavar="LIST", help="comma separated os/arch list")
    p.add_argument("--output", type=Path, metavar="DIR", help="default: SOURCE/_output")
    p.add_argument("--host", metavar="NAME", help="build every platform on this host")
    p.add_argument(
        "--images",
        action=argparse.BooleanOptionalAction,
        help="server images in the server tarballs (default: on for Kubernetes)",
    )
    if not quick:
        p.add_argument("--skip-tests", action="store_true", help="do not run the unit tests")
    reuse = p.add_mutually_exclusive_group()
    reuse.add_argument(
        "--resume",
        action="store_true",
        help="rebuild only what the journal does not show as built (the default)",
    )
    reuse.add_argument("--rebuild", action="store_true", help="ignore the journal; build all")
    p.add_argument(
        "--attempts",
        type=int,
        metavar="N",
        help=f"hosts to try per slice when hosts fail (default {_LIMITS.attempts})",
    )
    p.add_argument(
        "--verify-reproducible",
        nargs="?",
        const=1,
        type=reproduce_count,
        metavar="N|all",
        help="rebuild N sampled slices (default 1, or all) on a second host and compare "
        "every binary; a difference blocks the publish",
    )
    _sign_option(p)


def log_size(text: str) -> int:
    """A --log-limit: a size of at least MIN_LOG_LIMIT."""
    try:
        size = parse_size(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    if size < MIN_LOG_LIMIT:
        msg = f"{text!r}: a log limit must be at least {format_size(MIN_LOG_LIMIT)}"
        raise argparse.ArgumentTypeError(msg)
    return size


def reproduce_count(text: str) -> int:
    """`all` or a positive number of slices for --verify-reproducible."""
    if text == "all":
        return REPRODUCE_ALL
    if not text.isdigit() or int(text) < 1:
        msg = f"{text!r}: give a number of slices (1 or more) or 'all'"
        raise argparse.ArgumentTypeError(msg)
    return int(text)


def _sign_option(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--sign-key",
        type=Path,
        metavar="FILE",
        help="sign SHA256SUMS, SHA512SUMS and the provenance with this SSH key "
        "(ssh-keygen -Y sign -n kdist)",
    )


def _verify_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("folder", type=Path, metavar="DIR", help="release-tars/, or the output above it")
    p.add_argument(
        "--allowed-signers",
        type=Path,
        metavar="FILE",
        help="OpenSSH allowed_signers: who may have signed (default: signatures checked "
        "for integrity only)",
    )


def _build_options(p: argparse.ArgumentParser) -> None:
    _run_options(p)
    p.add_argument("--platform", metavar="OS/ARCH", help="default: the building host's own")
    p.add_argument("--host", metavar="NAME", help="inventory host (default: this machine)")
    p.add_argument("what", nargs="*", metavar="WHAT", help="targets, e.g. cmd/kubectl")


def _package_options(p: argparse.ArgumentParser) -> None:
    _tree_options(p)
    p.add_argument("--platforms", metavar="LIST", help="default: every platform in the output")
    p.add_argument("--output", type=Path, metavar="DIR", help="default: SOURCE/_output")
    _sign_option(p)


def _clean_options(p: argparse.ArgumentParser) -> None:
    _farm_options(p)
    _tree_options(p)
    p.add_argument("--remote", action="store_true", help="also remove this tree's host workdirs")


# --- argv -> Invocation --------------------------------------------------------------------------


def parse(argv: Sequence[str] | None = None) -> Invocation:
    """Parse argv into an Invocation; SystemExit for syntax errors, ConfigError for bad values."""
    given = vars(build_parser().parse_args(argv))
    display = _pick(Display, given)
    name = given.pop("command")
    if name == "hosts":
        if given.pop("hosts_command") == "list":
            return Invocation(display, HostsListOptions(_pick(Farm, given)))
        hosts = _pick(HostsCheckOptions, given, farm=_pick(Farm, given), tree=_tree(given))
        return Invocation(display, hosts)
    convert = _COMMANDS[name]
    return Invocation(display, convert(given))


def _pick(cls: type[_T], given: Mapping[str, Any], **values: Any) -> _T:  # noqa: ANN401
    """`cls` from the options the user gave (the rest keep their dataclass defaults)."""
    names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    return cls(**{k: v for k, v in given.items() if k in names and k not in values}, **values)


def _tree(given: Mapping[str, Any]) -> Tree:
    picked = _pick(Tree, given)
    source = picked.source.resolve()
    if not source.is_dir():
        msg = f"--source {picked.source}: not a directory"
        raise ConfigError(msg)
    return dataclasses.replace(picked, source=source)


def _run(given: Mapping[str, Any]) -> RunOptions:
    # --log-limit stays apart until the profile is read: the option wins over its log_limit.
    limits = _pick(Limits, {k: v for k, v in given.items() if k != "log_limit"})
    if limits.attempts < 1:
        msg = f"--attempts {limits.attempts}: must be 1 or more"
        raise ConfigError(msg)
    for name in ("command_timeout", "transfer_timeout"):
        value = getattr(limits, name)
        if not 0 < value < math.inf:  # every remote wait has a deadline: none can be turned off
            msg = f"--{name.replace('_', '-')} {value:g}: must be a number of seconds above 0"
            raise ConfigError(msg)
    return _pick(RunOptions, given, farm=_pick(Farm, given), tree=_tree(given), limits=limits)


def _release(given: Mapping[str, Any]) -> ReleaseOptions:
    platforms = _platforms(given.get("platforms"), "--platforms")
    return _pick(
        ReleaseOptions,
        given,
        run=_run(given),
        platforms=platforms,
        tests=not given.get("skip_tests", False),
        reuse=not given.get("rebuild", False),
    )


def _quick_release(given: Mapping[str, Any]) -> ReleaseOptions:
    release = _release(given)
    platforms = release.platforms or (head_platform(),)
    return dataclasses.replace(release, platforms=platforms, tests=False)


def _build(given: Mapping[str, Any]) -> BuildOptions:
    chosen = _platforms(given.get("platform"), "--platform")
    if len(chosen) > 1:
        msg = "--platform: give exactly one os/arch"
        raise ConfigError(msg)
    return BuildOptions(_run(given), chosen[0] if chosen else None, tuple(given.get("what", ())))


def _package(given: Mapping[str, Any]) -> PackageOptions:
    platforms = _platforms(given.get("platforms"), "--platforms")
    return _pick(PackageOptions, given, tree=_tree(given), platforms=platforms)


def _clean(given: Mapping[str, Any]) -> CleanOptions:
    return _pick(CleanOptions, given, farm=_pick(Farm, given), tree=_tree(given))


_COMMANDS: dict[str, Callable[[Mapping[str, Any]], Command]] = {
    "release": _release,
    "quick-release": _quick_release,
    "build": _build,
    "package": _package,
    "clean": _clean,
    "verify": lambda given: _pick(VerifyOptions, given),
}


def _platforms(text: str | None, flag: str) -> tuple[Platform, ...]:
    if text is None:
        return ()
    try:
        chosen = parse_platform_list(text)
    except ValueError as exc:
        msg = f"{flag}: {exc}"
        raise ConfigError(msg) from exc
    if not chosen:
        msg = f"{flag}: no platform given"
        raise ConfigError(msg)
    return chosen


def head_platform() -> Platform:
    """linux/<this machine's arch>: what quick-release builds (upstream's KUBE_FASTBUILD)."""
    arch = UNAME_TO_GOARCH.get(pyplatform.machine().lower(), "amd64")
    return Platform("darwin" if sys.platform == "darwin" else "linux", arch)
