"""Unit tests for kdist.engine.plan.make_plan: placement, determinism, commands and environment."""

from __future__ import annotations

import dataclasses
from collections import Counter
from typing import Any

import pytest

from kdist.config.profile import KUBERNETES
from kdist.engine.plan import VERSION_DEFS, PlanRequest, build_env, make_plan, tree_workdir
from kdist.errors import ExitStatus, PlanError, ProfileError
from kdist.model import LOCAL_HOST, Host, Layout, Platform, Profile, Slice, VersionInfo

AMD64 = Platform("linux", "amd64")
ARM64 = Platform("linux", "arm64")
ARM = Platform("linux", "arm")
S390X = Platform("linux", "s390x")
PPC64LE = Platform("linux", "ppc64le")
WIN = Platform("windows", "amd64")
VERSION = VersionInfo("v1.31.0", "c0ffee", "clean", "1", "31", 1700000000)
GENERIC = Profile(
    name="tool",
    layout=Layout.GENERIC,
    platforms=(AMD64, ARM64),
    build=("make", "binaries", "GOOS={os}", "GOARCH={arch}", "VERSION={version}"),
    artifacts="build/bin/{os}/{arch}",
    env={"CGO_ENABLED": "0", "SHARED": "profile"},
)


def _req(*platforms: Platform, profile: Profile = KUBERNETES, **kw: Any) -> PlanRequest:
    return PlanRequest(
        platforms=platforms,
        profile=profile,
        source="/home/me/src/kubernetes",
        tree_id="kubernetes-0123abcd",
        version=VERSION,
        **kw,
    )


def _where(slices: tuple[Slice, ...]) -> dict[str, str]:
    return {str(s.platform): s.host for s in slices}


def test_native_hosts_build_their_platforms() -> None:
    """Each platform goes to the host that declares it natively, not cross-compiled."""
    hosts = [Host("amd", "a"), Host("arm", "b"), Host("z", "c")]
    natives = {"amd": (AMD64,), "arm": (ARM64, ARM), "z": (S390X,)}
    plan = make_plan(hosts, natives, _req(AMD64, ARM64, S390X))
    assert _where(plan.slices) == {"linux/amd64": "amd", "linux/arm64": "arm", "linux/s390x": "z"}
    assert not any(s.cross for s in plan.slices)
    assert plan.notes == ()


def test_slices_keep_the_requested_platform_order() -> None:
    """Slices come out in the order the platforms were asked for, whatever the ranking."""
    hosts = [Host("h1", "a"), Host("h2", "b")]
    natives = {"h1": (AMD64, ARM64), "h2": (AMD64,)}
    plan = make_plan(hosts, natives, _req(AMD64, ARM64))
    assert [s.platform for s in plan.slices] == [AMD64, ARM64]


def test_capacity_two_host_takes_two_before_capacity_one_takes_a_second() -> None:
    """Load is counted per capacity: a capacity-2 host takes two before a capacity-1 its second."""
    hosts = [Host("small", "a", capacity=1), Host("big", "b", capacity=2)]
    platforms = (AMD64, ARM64, ARM, S390X, PPC64LE)
    natives = {"small": platforms, "big": platforms}
    plan = make_plan(hosts, natives, _req(*platforms))
    sequence = [s.host for s in plan.slices]
    # small 0/1 -> small; big 0/2 -> big; big 1/2 < small 1/1 -> big; tie 1.0 -> small (first).
    assert sequence[:4] == ["small", "big", "big", "small"]
    assert Counter(sequence) == {"big": 3, "small": 2}


def test_least_loaded_spreads_equal_hosts() -> None:
    """Equal hosts get equal shares of platforms that all of them can build."""
    hosts = [Host("h1", "a"), Host("h2", "b"), Host("h3", "c")]
    platforms = (AMD64, ARM64, ARM, S390X, PPC64LE, WIN)
    natives = dict.fromkeys(("h1", "h2", "h3"), platforms)
    plan = make_plan(hosts, natives, _req(*platforms))
    assert Counter(s.host for s in plan.slices) == {"h1": 2, "h2": 2, "h3": 2}


def test_plan_is_deterministic() -> None:
    """The same input twice gives equal plans."""
    hosts = [Host("h1", "a", capacity=3), Host("h2", "b"), Host("h3", "c", capacity=2)]
    natives = {"h1": (AMD64,), "h2": (AMD64, ARM64), "h3": ()}
    req = _req(AMD64, ARM64, ARM, S390X, WIN)
    assert make_plan(hosts, natives, req) == make_plan(list(hosts), dict(natives), req)


def test_ties_are_broken_by_inventory_order() -> None:
    """Between equally loaded native hosts, the one listed first in the inventory wins."""
    a, b = Host("a", "a"), Host("b", "b")
    natives = {"a": (AMD64,), "b": (AMD64,)}
    assert make_plan([a, b], natives, _req(AMD64)).slices[0].host == "a"
    assert make_plan([b, a], natives, _req(AMD64)).slices[0].host == "b"


def test_most_constrained_platform_is_placed_first() -> None:
    """A platform with one native host is placed before one with several choices."""
    hosts = [Host("both", "a"), Host("amd-only", "b")]
    natives = {"both": (AMD64, ARM64), "amd-only": (AMD64,)}
    # In request order, amd64 would take `both` and arm64 would then queue behind it.
    plan = make_plan(hosts, natives, _req(AMD64, ARM64))
    assert _where(plan.slices) == {"linux/amd64": "amd-only", "linux/arm64": "both"}


def test_platform_without_native_host_is_cross_compiled_with_a_note() -> None:
    """A platform no host is native for is cross-compiled on the least loaded host, noted."""
    hosts = [Host("amd", "a"), Host("arm", "b")]
    natives = {"amd": (AMD64,), "arm": (ARM64,)}
    plan = make_plan(hosts, natives, _req(AMD64, ARM64, S390X))
    s390x = next(s for s in plan.slices if s.platform == S390X)
    assert s390x.cross is True
    assert s390x.host == "amd"  # both have load 1; inventory order decides
    assert plan.notes == ("linux/s390x: no native host; cross-compiled on amd",)
    assert [s.cross for s in plan.slices] == [False, False, True]


def test_hosts_with_unknown_platforms_are_used_for_cross_builds() -> None:
    """Hosts missing from `natives` are still candidates for cross builds."""
    hosts = [Host("h1", "a"), Host("h2", "b")]
    plan = make_plan(hosts, {}, _req(AMD64, ARM64))
    assert [s.host for s in plan.slices] == ["h1", "h2"]
    assert all(s.cross for s in plan.slices)
    assert len(plan.notes) == 2


def test_native_only_refuses_a_platform_without_native_host() -> None:
    """--native-only turns a missing native host into a PlanError naming the platform."""
    hosts = [Host("amd", "a")]
    with pytest.raises(PlanError, match=r"^linux/s390x: no native build host"):
        make_plan(hosts, {"amd": (AMD64,)}, _req(AMD64, S390X, native_only=True))


def test_native_only_passes_when_every_platform_has_a_native_host() -> None:
    """--native-only is satisfied when every platform has a native host."""
    hosts = [Host("amd", "a"), Host("arm", "b")]
    plan = make_plan(
        hosts, {"amd": (AMD64,), "arm": (ARM64,)}, _req(AMD64, ARM64, native_only=True)
    )
    assert not any(s.cross for s in plan.slices)


def test_pin_puts_every_slice_on_one_host() -> None:
    """--host puts every slice on that host, marking platforms it is not native for as cross."""
    hosts = [Host("amd", "a"), Host("arm", "b", capacity=8)]
    natives = {"amd": (AMD64,), "arm": (ARM64,)}
    plan = make_plan(hosts, natives, _req(AMD64, ARM64, S390X, pin="amd"))
    assert {s.host for s in plan.slices} == {"amd"}
    assert [(str(s.platform), s.cross) for s in plan.slices] == [
        ("linux/amd64", False),
        ("linux/arm64", True),
        ("linux/s390x", True),
    ]
    assert set(plan.env) == {"amd"}
    assert plan.hosts == ("amd",)


def test_pin_with_native_only_refuses_non_native_platforms() -> None:
    """--host with --native-only fails for a platform the pinned host is not native for."""
    hosts = [Host("amd", "a"), Host("arm", "b")]
    natives = {"amd": (AMD64,), "arm": (ARM64,)}
    with pytest.raises(PlanError, match="linux/arm64"):
        make_plan(hosts, natives, _req(AMD64, ARM64, pin="amd", native_only=True))


def test_unknown_pin_lists_the_hosts() -> None:
    """An unknown --host is a PlanError naming it and listing the inventory's hosts."""
    hosts = [Host("h1", "a"), Host("h2", "b")]
    with pytest.raises(PlanError) as info:
        make_plan(hosts, {}, _req(AMD64, pin="h9"))
    assert str(info.value) == "--host h9: no such host in the inventory (hosts: h1, h2)"


def test_no_platforms_is_a_plan_error() -> None:
    """An empty platform list is refused."""
    with pytest.raises(PlanError, match="no platforms"):
        make_plan([Host("h1", "a")], {}, _req())


def test_remote_workdir_is_host_workdir_plus_tree_id() -> None:
    """A remote host builds in <host.workdir>/<tree_id> and collects from below it."""
    host = Host("arm", "b", workdir="/srv/kdist")
    plan = make_plan([host], {"arm": (ARM64,)}, _req(ARM64))
    (only,) = plan.slices
    assert only.workdir == "/srv/kdist/kubernetes-0123abcd"
    assert only.artifacts == "/srv/kdist/kubernetes-0123abcd/_output/local/bin/linux/arm64"
    assert tree_workdir(host, _req(ARM64)) == only.workdir


def test_local_host_builds_in_the_source_tree() -> None:
    """The LOCAL host builds in the source folder itself, not below its workdir."""
    plan = make_plan([LOCAL_HOST], {}, _req(AMD64))
    (only,) = plan.slices
    assert only.host == "local"
    assert only.workdir == "/home/me/src/kubernetes"
    assert only.artifacts == "/home/me/src/kubernetes/_output/local/bin/linux/amd64"


def test_kubernetes_build_argv_is_make_cross_per_platform() -> None:
    """The kubernetes profile builds one platform per slice with make cross."""
    plan = make_plan([Host("arm", "b")], {"arm": (ARM64,)}, _req(ARM64))
    assert plan.slices[0].argv == ("make", "cross", "KUBE_BUILD_PLATFORMS=linux/arm64")


def test_what_uses_build_what_with_targets_as_one_word() -> None:
    """With WHAT targets, the argv is `make all WHAT=<targets>` and WHAT is a single word."""
    req = _req(ARM64, WIN, what=("cmd/kubectl", "cmd/kubeadm"))
    plan = make_plan([Host("h", "b")], {"h": (ARM64,)}, req)
    assert [s.argv for s in plan.slices] == [
        ("make", "all", "WHAT=cmd/kubectl cmd/kubeadm", "KUBE_BUILD_PLATFORMS=linux/arm64"),
        ("make", "all", "WHAT=cmd/kubectl cmd/kubeadm", "KUBE_BUILD_PLATFORMS=windows/amd64"),
    ]


def test_what_without_build_what_is_a_profile_error() -> None:
    """A generic profile without build_what refuses WHAT (exit 2) instead of building all."""
    with pytest.raises(ProfileError, match="build_what: not set") as caught:
        make_plan([Host("h", "b")], {}, _req(ARM64, profile=GENERIC, what=("cmd/x",)))
    assert caught.value.exit_status == ExitStatus.CONFIG_ERROR


def test_what_as_a_word_of_its_own_becomes_one_word_per_target() -> None:
    """`make {what} GOOS={os}` runs `make crictl critest GOOS=linux`."""
    profile = dataclasses.replace(
        GENERIC, build_what=("make", "{what}", "GOOS={os}", "GOARCH={arch}")
    )
    req = _req(ARM64, profile=profile, what=("crictl", "critest"))
    plan = make_plan([Host("h", "b")], {}, req)
    assert plan.slices[0].argv == ("make", "crictl", "critest", "GOOS=linux", "GOARCH=arm64")
    assert plan.slices[0].artifacts.endswith("/build/bin/linux/arm64")


@pytest.mark.parametrize("word", ["-j99", "--eval=x", "a b", "$(id)", "x;y", ""])
def test_what_that_is_not_a_target_is_refused(word: str) -> None:
    """Options, spaces and shell syntax are not targets."""
    with pytest.raises(ProfileError, match="not a target"):
        make_plan([Host("h", "b")], {}, _req(ARM64, what=(word,)))


def test_generic_argv_substitutes_version_os_and_arch() -> None:
    """Generic profiles get os, arch and version substituted word by word."""
    plan = make_plan([Host("h", "b")], {}, _req(WIN, profile=GENERIC))
    assert plan.slices[0].argv == (
        "make",
        "binaries",
        "GOOS=windows",
        "GOARCH=amd64",
        "VERSION=v1.31.0",
    )


def test_env_precedence_profile_then_host_then_kdist_for_kubernetes() -> None:
    """Host env overrides profile env; kdist's version variables override both."""
    profile = dataclasses.replace(
        KUBERNETES, env={"A": "profile", "B": "profile", "KDIST_VERSION": "profile"}
    )
    host = Host(
        "h",
        "b",
        workdir="/w",
        env={"B": "host", "SOURCE_DATE_EPOCH": "1", "KUBE_GIT_VERSION_FILE": "/etc/x"},
    )
    plan = make_plan([host], {"h": (ARM64,)}, _req(ARM64, profile=profile))
    assert dict(plan.env["h"]) == {
        "A": "profile",
        "B": "host",
        "SOURCE_DATE_EPOCH": "1700000000",
        "KDIST_VERSION": "v1.31.0",
        "KUBE_GIT_VERSION_FILE": f"/w/kubernetes-0123abcd/{VERSION_DEFS}",
    }


def test_local_kubernetes_version_file_is_in_the_source_tree() -> None:
    """On the LOCAL host the KUBE_GIT_VERSION_FILE lives under the source folder."""
    env = build_env(LOCAL_HOST, _req(AMD64))
    assert env["KUBE_GIT_VERSION_FILE"] == f"/home/me/src/kubernetes/{VERSION_DEFS}"
    assert "VERSION" not in env


def test_generic_env_sets_version_unless_profile_or_host_do() -> None:
    """Generic builds get VERSION=<version> unless the profile or the host already set it."""
    plain = build_env(Host("h", "a"), _req(AMD64, profile=GENERIC))
    assert plain["VERSION"] == "v1.31.0"
    assert plain["CGO_ENABLED"] == "0"
    assert "KUBE_GIT_VERSION_FILE" not in plain
    by_host = build_env(Host("h", "a", env={"VERSION": "host"}), _req(AMD64, profile=GENERIC))
    assert by_host["VERSION"] == "host"
    profile = dataclasses.replace(GENERIC, env={"VERSION": "profile"})
    assert build_env(Host("h", "a"), _req(AMD64, profile=profile))["VERSION"] == "profile"


def test_env_is_only_given_for_hosts_with_work() -> None:
    """Plan.env has an entry per host that got slices and none for idle hosts."""
    hosts = [Host("amd", "a", env={"X": "1"}), Host("idle", "b"), Host("arm", "c")]
    natives = {"amd": (AMD64,), "idle": (S390X,), "arm": (ARM64,)}
    plan = make_plan(hosts, natives, _req(AMD64, ARM64))
    assert set(plan.env) == {"amd", "arm"}
    assert plan.env["amd"]["X"] == "1"
    assert "X" not in plan.env["arm"]


def test_each_slice_gets_its_platform_env_by_kind_of_build() -> None:
    """platform_env applies per slice: CC only for the cross build of linux/arm64; host env wins."""
    profile = dataclasses.replace(
        GENERIC, platform_env={"linux/arm64": {"cross": {"CC": "aarch64-linux-gnu-gcc"}}}
    )
    hosts = [Host("amd", "a", env={"SHARED": "host"}), Host("arm", "b")]
    cross = make_plan(hosts[:1], {"amd": (AMD64,)}, _req(AMD64, ARM64, profile=profile))
    by = {str(s.platform): s for s in cross.slices}
    assert by["linux/arm64"].cross
    assert by["linux/arm64"].env["CC"] == "aarch64-linux-gnu-gcc"
    assert "CC" not in by["linux/amd64"].env
    assert by["linux/arm64"].env["SHARED"] == "host"
    assert by["linux/arm64"].env["KDIST_VERSION"] == VERSION.version
    native = make_plan(hosts, {"amd": (AMD64,), "arm": (ARM64,)}, _req(ARM64, profile=profile))
    assert not native.slices[0].cross
    assert "CC" not in native.slices[0].env


def test_platformless_artifacts_build_in_a_private_tree_per_platform() -> None:
    """Without the platform in `artifacts`, each slice builds in TREE/.kdist/slots/<os>-<arch>."""
    profile = dataclasses.replace(GENERIC, artifacts="_output/local/bin")
    hosts = [Host("h1", "a", capacity=2)]
    plan = make_plan(hosts, {"h1": (AMD64,)}, _req(AMD64, ARM64, profile=profile))
    tree = tree_workdir(hosts[0], _req(AMD64, profile=profile))
    for s in plan.slices:
        assert s.tree == tree
        assert s.workdir == f"{tree}/.kdist/slots/{s.platform.dashed}"
        assert s.artifacts == f"{s.workdir}/_output/local/bin"
    assert len({s.artifacts for s in plan.slices}) == 2


def test_platform_named_artifacts_and_the_head_node_build_in_the_tree() -> None:
    """A platform in `artifacts`, or the head node (builds in place), needs no private tree."""
    plan = make_plan([Host("h1", "a")], {"h1": (AMD64,)}, _req(AMD64, ARM64, profile=GENERIC))
    assert all(s.tree == "" and s.workdir.endswith("kubernetes-0123abcd") for s in plan.slices)
    profile = dataclasses.replace(GENERIC, artifacts="_output/local/bin")
    local = make_plan([LOCAL_HOST], {"local": (AMD64,)}, _req(AMD64, profile=profile))
    assert local.slices[0].tree == ""
    assert local.slices[0].workdir == "/home/me/src/kubernetes"
