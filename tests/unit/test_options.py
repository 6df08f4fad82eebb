"""Options are parsed once into frozen objects; display flags go anywhere; defaults live once."""

from __future__ import annotations

from pathlib import Path

import pytest

from kdist.cli import options
from kdist.cli.options import (
    BuildOptions,
    CleanOptions,
    Display,
    HostsCheckOptions,
    PackageOptions,
    ReleaseOptions,
    parse,
)
from kdist.errors import ConfigError
from kdist.model import Limits, Platform


@pytest.mark.parametrize(
    "argv",
    [
        ["--json", "-q", "--debug", "release"],
        ["release", "--json", "-q", "--debug"],
        ["--json", "release", "-q", "--debug"],
    ],
)
def test_display_flags_work_before_or_after_the_command(argv: list[str]) -> None:
    """--json, -q and --debug mean the same before or after the subcommand."""
    assert parse(argv).display == Display(json=True, quiet=True, debug=True)


def test_display_flags_after_hosts_check() -> None:
    """The display flags are accepted after a nested subcommand too."""
    got = parse(["hosts", "check", "--json", "--debug"])
    assert got.display == Display(json=True, debug=True)
    assert isinstance(got.command, HostsCheckOptions)


def test_release_defaults_come_from_the_dataclasses() -> None:
    """A bare `release` gets exactly the documented defaults (the parser adds none)."""
    got = parse(["release"]).command
    assert isinstance(got, ReleaseOptions)
    assert got.run.limits == Limits()
    assert got.run.tree.source == Path.cwd()
    assert (got.platforms, got.output, got.tests, got.reuse) == ((), None, True, True)
    assert got.run.farm.connect_timeout is None


def test_release_options_are_typed() -> None:
    """Numbers are numbers, platform lists are Platforms, flags invert where they say `skip`."""
    got = parse(
        ["release", "--platforms", "linux/arm64, linux/amd64", "--idle-timeout", "5",
         "--slice-timeout", "60", "--attempts", "2", "--skip-tests", "--rebuild",
         "--lock-wait", "1.5", "--host", "h1", "--native-only"]
    ).command  # fmt: skip
    assert isinstance(got, ReleaseOptions)
    assert got.platforms == (Platform("linux", "arm64"), Platform("linux", "amd64"))
    assert got.run.limits == Limits(idle_timeout=5.0, slice_timeout=60.0, lock_wait=1.5, attempts=2)
    assert (got.tests, got.reuse, got.run.host, got.run.native_only) == (False, False, "h1", True)


def test_quick_release_builds_the_head_platform_without_tests() -> None:
    """quick-release: no tests, and this machine's linux platform unless --platforms says."""
    got = parse(["quick-release"]).command
    assert isinstance(got, ReleaseOptions)
    assert got.platforms == (options.head_platform(),) and not got.tests
    chosen = parse(["quick-release", "--platforms", "linux/s390x"]).command
    assert isinstance(chosen, ReleaseOptions)
    assert chosen.platforms == (Platform("linux", "s390x"),)


def test_build_takes_one_platform_and_targets() -> None:
    """`build` keeps WHAT in order and parses its single --platform."""
    got = parse(["build", "--platform", "linux/arm64", "cmd/kubectl", "cmd/kubelet"]).command
    assert isinstance(got, BuildOptions)
    assert got.platform == Platform("linux", "arm64")
    assert got.what == ("cmd/kubectl", "cmd/kubelet")


def test_package_and_clean(tmp_path: Path) -> None:
    """`package` and `clean` resolve --source and keep their own flags."""
    pack = parse(["package", "--source", str(tmp_path), "--platforms", "linux/386", "-n"]).command
    assert pack == PackageOptions(
        tree=options.Tree(source=tmp_path), platforms=(Platform("linux", "386"),), dry_run=True
    )
    clean = parse(["clean", "--remote", "--source", str(tmp_path)]).command
    assert isinstance(clean, CleanOptions)
    assert clean.remote and clean.tree.source == tmp_path


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["release", "--platforms", "linux/amd46"], "amd46"),
        (["release", "--platforms", ","], "no platform"),
        (["build", "--platform", "linux/amd64,linux/arm64"], "exactly one"),
        (["release", "--attempts", "0"], "--attempts"),
        (["release", "--source", "/nonexistent/kdist"], "not a directory"),
    ],
)
def test_bad_values_are_config_errors(argv: list[str], needle: str) -> None:
    """Values argparse cannot judge are refused as configuration errors naming the option."""
    with pytest.raises(ConfigError, match=needle):
        parse(argv)


def test_options_are_frozen() -> None:
    """An options object cannot be changed after parsing."""
    got = parse(["release"]).command
    assert isinstance(got, ReleaseOptions)
    with pytest.raises(AttributeError):
        got.images = True  # type: ignore[misc]


def test_compress_is_a_run_option_that_reaches_the_ssh_transports() -> None:
    """`release --compress` sets the farm's compress, and the SSH transports get it."""
    from kdist.cli.commands import farm_transports
    from kdist.model import Host
    from kdist.transport.ssh import SshTransport

    got = parse(["release", "--compress"]).command
    assert isinstance(got, ReleaseOptions)
    assert got.run.farm.compress
    assert not parse(["build"]).command.run.farm.compress  # type: ignore[union-attr]
    transport = farm_transports(got.run.farm)(Host("h1", "10.0.0.1"))
    assert isinstance(transport, SshTransport) and transport.options.compress


def test_real_transports_lift_the_open_files_limit() -> None:
    """Making the real transports raises the soft open-files limit to the hard one."""
    import resource

    from kdist.cli.commands import farm_transports

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(soft, 256), hard))
    try:
        farm_transports(options.Farm())
        now = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
        assert now == hard if hard != resource.RLIM_INFINITY else now >= 1 << 16
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
