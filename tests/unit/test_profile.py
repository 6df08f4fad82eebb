"""Unit tests for kdist.config.profile: choosing a profile, parsing kdist.yaml, and substitution."""

from __future__ import annotations

import dataclasses
import re
import shlex
import subprocess
from pathlib import Path

import pytest

from kdist.config import kubernetes
from kdist.config.loader import load_yaml_text
from kdist.config.profile import (
    KUBERNETES,
    choose_profile,
    fields_for,
    has_platform,
    is_kubernetes_tree,
    load_profile,
    parse_profile,
    platform_env,
    substitute,
)
from kdist.errors import ProfileError
from kdist.model import Layout, Platform, parse_platform_list
from kdist.remote.argv import to_shell

# The cri-tools profile exactly as the README shows it (examples/generic/kdist.yaml, commented).
CRI_TOOLS = """\
name: cri-tools
layout: generic                # generic | kubernetes
platforms: [linux/amd64, linux/arm64, linux/s390x]   # default when --platforms is not given
build: make binaries GOOS={os} GOARCH={arch}         # {platform} {os} {arch} {version} are substituted
build_what: make {what} GOOS={os} GOARCH={arch}     # kdist build WHAT...: {what} is the targets
artifacts: build/bin/{os}/{arch}                     # where the binaries are after the build
env: {CGO_ENABLED: "0"}
"""
EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "generic" / "kdist.yaml"

# A fuller cri-tools profile using every key: build_what, test, quoting and a trailing '/'.
CRI_TOOLS_FULL = """\
name: cri-tools
layout: generic
platforms:
  - linux/amd64
  - linux/arm64
  - linux/s390x
  - linux/ppc64le
  - darwin/arm64
  - windows/amd64
build: make binaries GOOS={os} GOARCH={arch} VERSION={version} "LDFLAGS=-s -w"
build_what: make {what} GOOS={os} GOARCH={arch}
test: make test-unit
artifacts: build/bin/{os}/{arch}/
env:
  CGO_ENABLED: "0"
  GOFLAGS: "-trimpath"
"""


def _kubernetes_tree(root: Path) -> Path:
    (root / "hack/lib").mkdir(parents=True)
    (root / "hack/lib/golang.sh").write_text("# golang\n", encoding="utf-8")
    (root / "build/root").mkdir(parents=True)
    (root / "build/root/Makefile").write_text("all:\n", encoding="utf-8")
    return root


def _profile_error(text: str) -> str:
    with pytest.raises(ProfileError) as info:
        parse_profile(load_yaml_text(text, "kdist.yaml", ProfileError), "kdist.yaml")
    return str(info.value)


def test_explicit_profile_file_wins(tmp_path: Path) -> None:
    """`--profile FILE` is used even when the tree has kdist.yaml and is a Kubernetes tree."""
    source = _kubernetes_tree(tmp_path / "src")
    (source / "kdist.yaml").write_text("layout: kubernetes\nname: in-tree\n", encoding="utf-8")
    explicit = tmp_path / "cri.yaml"
    explicit.write_text(CRI_TOOLS, encoding="utf-8")
    profile = choose_profile(source, explicit)
    assert profile.name == "cri-tools"
    assert profile.source == str(explicit)


def test_tree_kdist_yaml_beats_the_kubernetes_builtin(tmp_path: Path) -> None:
    """Without --profile, SOURCE/kdist.yaml is preferred over Kubernetes detection."""
    source = _kubernetes_tree(tmp_path / "src")
    (source / "kdist.yaml").write_text("layout: kubernetes\nname: in-tree\n", encoding="utf-8")
    profile = choose_profile(source)
    assert profile.name == "in-tree"
    assert profile.source == str(source / "kdist.yaml")


def test_kubernetes_tree_gets_the_builtin_profile(tmp_path: Path) -> None:
    """A tree with hack/lib/golang.sh and build/root/Makefile gets the built-in profile."""
    source = _kubernetes_tree(tmp_path / "src")
    assert is_kubernetes_tree(source)
    assert choose_profile(source) is KUBERNETES


def test_half_a_kubernetes_tree_is_not_kubernetes(tmp_path: Path) -> None:
    """Both marker files are needed; one alone does not make a Kubernetes tree."""
    (tmp_path / "hack/lib").mkdir(parents=True)
    (tmp_path / "hack/lib/golang.sh").write_text("", encoding="utf-8")
    assert not is_kubernetes_tree(tmp_path)
    with pytest.raises(ProfileError):
        choose_profile(tmp_path)


def test_unknown_tree_is_a_profile_error_naming_the_folder(tmp_path: Path) -> None:
    """A plain folder without kdist.yaml is a ProfileError that names it and suggests --profile."""
    with pytest.raises(ProfileError) as info:
        choose_profile(tmp_path)
    message = str(info.value)
    assert message.startswith(f"{tmp_path}: no kdist.yaml")
    assert "--profile" in message


def test_missing_profile_file_names_the_file(tmp_path: Path) -> None:
    """An explicit profile that does not exist is a ProfileError naming that file."""
    missing = tmp_path / "nope.yaml"
    with pytest.raises(ProfileError, match=re.escape(f"{missing}: cannot read")):
        choose_profile(tmp_path, missing)


def test_readme_cri_tools_example_parses(tmp_path: Path) -> None:
    """The README's cri-tools example yields the exact name, layout, platforms, argv and env."""
    path = tmp_path / "kdist.yaml"
    path.write_text(CRI_TOOLS, encoding="utf-8")
    profile = load_profile(path)
    assert profile.name == "cri-tools"
    assert profile.layout is Layout.GENERIC
    assert profile.platforms == parse_platform_list("linux/amd64,linux/arm64,linux/s390x")
    assert profile.build == ("make", "binaries", "GOOS={os}", "GOARCH={arch}")
    assert profile.artifacts == "build/bin/{os}/{arch}"
    assert dict(profile.env) == {"CGO_ENABLED": "0"}
    assert profile.build_what == ("make", "{what}", "GOOS={os}", "GOARCH={arch}")
    assert profile.test == ()
    assert profile.source == str(path)


def test_shipped_generic_example_is_the_readme_profile(tmp_path: Path) -> None:
    """examples/generic/kdist.yaml parses to the same profile as the README's example."""
    readme = tmp_path / "kdist.yaml"
    readme.write_text(CRI_TOOLS, encoding="utf-8")
    shipped = choose_profile(EXAMPLE.parent)
    assert shipped.source == str(EXAMPLE)
    assert dataclasses.replace(shipped, source="") == dataclasses.replace(
        load_profile(readme), source=""
    )


def test_full_cri_tools_profile_parses_completely(tmp_path: Path) -> None:
    """A profile using every key yields the exact argv split, artifacts, commands and env."""
    path = tmp_path / "kdist.yaml"
    path.write_text(CRI_TOOLS_FULL, encoding="utf-8")
    profile = load_profile(path)
    assert profile.name == "cri-tools"
    assert profile.layout is Layout.GENERIC
    assert profile.platforms == parse_platform_list(
        "linux/amd64,linux/arm64,linux/s390x,linux/ppc64le,darwin/arm64,windows/amd64"
    )
    assert profile.build == (
        "make",
        "binaries",
        "GOOS={os}",
        "GOARCH={arch}",
        "VERSION={version}",
        "LDFLAGS=-s -w",
    )
    assert profile.build_what == ("make", "{what}", "GOOS={os}", "GOARCH={arch}")
    assert profile.test == ("make", "test-unit")
    assert profile.artifacts == "build/bin/{os}/{arch}"
    assert dict(profile.env) == {"CGO_ENABLED": "0", "GOFLAGS": "-trimpath"}
    assert profile.source == str(path)


def test_cri_tools_build_substitutes_per_platform(tmp_path: Path) -> None:
    """Substituting the cri-tools build for windows/amd64 fills every placeholder."""
    path = tmp_path / "kdist.yaml"
    path.write_text(CRI_TOOLS_FULL, encoding="utf-8")
    profile = load_profile(path)
    fields = fields_for(Platform("windows", "amd64"), "v1.30.0")
    assert substitute(profile.build, fields) == (
        "make",
        "binaries",
        "GOOS=windows",
        "GOARCH=amd64",
        "VERSION=v1.30.0",
        "LDFLAGS=-s -w",
    )
    assert substitute((profile.artifacts,), fields) == ("build/bin/windows/amd64",)


def test_fields_for_names_every_placeholder() -> None:
    """fields_for gives platform, os, arch and version."""
    assert fields_for(Platform("linux", "arm64"), "v1.2.3") == {
        "platform": "linux/arm64",
        "os": "linux",
        "arch": "arm64",
        "version": "v1.2.3",
    }


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "name: x\nplatforms: [linux/amd64]\nbuild: make {target}\nartifacts: bin\n",
            "kdist.yaml: build: unknown placeholder {target} "
            "(allowed: {arch}, {os}, {platform}, {version})",
        ),
        (
            "name: x\nplatforms: [linux/amd64]\nbuild: make\nbuild_what: make {whats}\n"
            "artifacts: bin\n",
            "kdist.yaml: build_what: unknown placeholder {whats} "
            "(allowed: {arch}, {os}, {platform}, {version}, {what})",
        ),
        (
            "name: x\nplatforms: [linux/amd64]\nbuild: make\nbuild_what: make all\n"
            "artifacts: bin\n",
            "kdist.yaml: build_what: must contain {what} (where the targets go)",
        ),
        (
            "name: x\nplatforms: [linux/amd64]\nbuild: make {what}\nartifacts: bin\n",
            "kdist.yaml: build: unknown placeholder {what} "
            "(allowed: {arch}, {os}, {platform}, {version})",
        ),
        (
            "name: x\nplatforms: [linux/amd64]\nbuild: make\nartifacts: out/{goos}\n",
            "kdist.yaml: artifacts: unknown placeholder {goos}",
        ),
    ],
)
def test_unknown_placeholder_is_refused(text: str, message: str) -> None:
    """A placeholder kdist does not fill is an error naming it and the allowed ones."""
    assert _profile_error(text) == message


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("platforms: [linux/amd64]\nbuild: make\nartifacts: bin\n", "kdist.yaml: name: is requ"),
        ("name: x\nplatforms: [linux/amd64]\nartifacts: bin\n", "kdist.yaml: build: is required"),
        ("name: x\nplatforms: [linux/amd64]\nbuild: make\n", "kdist.yaml: artifacts: is required"),
        ("name: x\nbuild: make\nartifacts: bin\n", "kdist.yaml: platforms: is required"),
        ("name: x\nlayout: debian\n", "kdist.yaml: layout: must be one of: generic, kubernetes"),
        ("layout: kubernetes\nplatforms: []\n", "kdist.yaml: platforms: must list at least one"),
        ("layout: kubernetes\nbuild: make 'cross\n", "kdist.yaml: build: cannot split"),
        ("layout: kubernetes\nbuild: [make, cross]\n", "kdist.yaml: build: must be a string"),
        ("layout: kubernetes\nartifacts: /abs\n", "kdist.yaml: artifacts: must be a path inside"),
        ("layout: kubernetes\nartifacts: a/../b\n", "kdist.yaml: artifacts: must be a path inside"),
        ("layout: kubernetes\nname: a/b\n", "kdist.yaml: name: must be letters"),
        ("layout: kubernetes\nplatform: [linux/amd64]\n", "kdist.yaml: platform: unknown key"),
        ("layout: kubernetes\nenv: {X: 1}\n", "kdist.yaml: env.X: must be a string, not int"),
        ("layout: kubernetes\ngit_answers: no-thanks\n",
         "kdist.yaml: git_answers: must be true or false, not str"),
        ("layout: kubernetes\nplatform_env: [x]\n",
         "kdist.yaml: platform_env: must be a mapping, not list"),
        ("layout: kubernetes\nplatform_env: {linux/arm65: {}}\n",
         "kdist.yaml: platform_env.linux/arm65: unknown arch 'arm65'"),
        ("layout: kubernetes\nplatform_env: {linux/arm64: {crosss: {CC: x}}}\n",
         "kdist.yaml: platform_env.linux/arm64.crosss: unknown key (allowed: all, cross, native)"),
        ("layout: kubernetes\nplatform_env: {'*': {cross: {CC: 1}}}\n",
         "kdist.yaml: platform_env.*.cross.CC: must be a string, not int"),
        ("layout: kubernetes\nplatform_env: {linux/arm64: {all: {KDIST_VERSION: v9}}}\n",
         "kdist.yaml: platform_env.linux/arm64.all.KDIST_VERSION: is set by kdist"),
        ("layout: kubernetes\nplatform_env: {linux/arm64: {native: {1X: y}}}\n",
         "kdist.yaml: platform_env.linux/arm64.native.1X: is not a valid environment variable"),
    ],
)
def test_profile_errors_name_the_key(text: str, message: str) -> None:
    """Profile validation errors start with `file: key:` and say what is wrong."""
    assert _profile_error(text).startswith(message)


@pytest.mark.parametrize(
    "value",
    [
        "; rm -rf /",
        "a b  c",
        'it\'s "quoted"',
        "$(touch pwned) `id` $HOME",
        "x\\y*?[z]",
        "{os}",
    ],
)
def test_substitute_keeps_a_hostile_value_in_one_word(value: str, tmp_path: Path) -> None:
    """A substituted value stays inside its one argv word and survives a shell literally."""
    template = ("printf", "%s|", "VERSION={version}", "{arch}")
    argv = substitute(template, {"version": value, "arch": "arm64"})
    assert argv == ("printf", "%s|", f"VERSION={value}", "arm64")
    assert shlex.split(to_shell(argv)) == list(argv)
    done = subprocess.run(
        ["sh", "-c", to_shell(argv)], cwd=tmp_path, capture_output=True, text=True, check=True
    )
    assert done.stdout == f"VERSION={value}|arm64|"
    assert not (tmp_path / "pwned").exists()


def test_substitute_replaces_several_placeholders_in_one_word() -> None:
    """Several placeholders in one word are all filled, and the word count does not change."""
    fields = fields_for(Platform("linux", "s390x"), "v1.0.0")
    assert substitute(("out/{os}-{arch}/{version}", "{platform}"), fields) == (
        "out/linux-s390x/v1.0.0",
        "linux/s390x",
    )


def test_kubernetes_builtin_defaults() -> None:
    """The built-in profile runs `make cross` per platform and collects _output/local/bin."""
    assert KUBERNETES.name == "kubernetes"
    assert KUBERNETES.layout is Layout.KUBERNETES
    assert KUBERNETES.build == ("make", "cross", "KUBE_BUILD_PLATFORMS={platform}")
    assert KUBERNETES.build_what == (
        "make",
        "all",
        "WHAT={what}",
        "KUBE_BUILD_PLATFORMS={platform}",
    )
    assert KUBERNETES.artifacts == "_output/local/bin/{os}/{arch}"
    assert KUBERNETES.test == ("make", "test")
    assert KUBERNETES.platforms == kubernetes.classes_for().all
    assert Platform("windows", "amd64") in KUBERNETES.platforms


def test_kubernetes_layout_fills_missing_keys_from_the_builtin() -> None:
    """`layout: kubernetes` alone takes every missing key from the built-in profile."""
    profile = parse_profile({"layout": "kubernetes"}, "kdist.yaml")
    assert profile.name == KUBERNETES.name
    assert profile.platforms == KUBERNETES.platforms
    assert profile.build == KUBERNETES.build
    assert profile.build_what == KUBERNETES.build_what
    assert profile.test == KUBERNETES.test
    assert profile.artifacts == KUBERNETES.artifacts
    assert dict(profile.env) == {}
    assert profile.source == "kdist.yaml"


def test_kubernetes_layout_keys_can_be_overridden() -> None:
    """Keys given with `layout: kubernetes` replace the built-in ones, the rest stay."""
    profile = parse_profile(
        {
            "layout": "kubernetes",
            "name": "k8s-fork",
            "platforms": ["linux/arm64"],
            "build": "make cross KUBE_BUILD_PLATFORMS={platform} KUBE_VERBOSE=0",
        },
        "kdist.yaml",
    )
    assert profile.name == "k8s-fork"
    assert profile.platforms == (Platform("linux", "arm64"),)
    assert profile.build[-1] == "KUBE_VERBOSE=0"
    assert profile.artifacts == KUBERNETES.artifacts
    assert profile.build_what == KUBERNETES.build_what


def test_generic_profile_without_optional_commands_has_empty_ones() -> None:
    """A generic profile without build_what/test leaves them empty, not the kubernetes ones."""
    profile = parse_profile(
        {"name": "p", "platforms": ["linux/amd64"], "build": "go build ./...", "artifacts": "bin"},
        "kdist.yaml",
    )
    assert profile.build_what == ()
    assert profile.test == ()
    assert profile.build == ("go", "build", "./...")


def test_kubernetes_profile_names_image_settings() -> None:
    """`images:` carries the base image variables; unknown keys and generic layouts are refused."""
    doc = "layout: kubernetes\nimages:\n  KUBE_GORUNNER_IMAGE: scratch\n  KUBE_BUILD_WINDOWS: y\n"
    got = parse_profile(load_yaml_text(doc, "kdist.yaml", ProfileError), "kdist.yaml")
    assert got.images == {"KUBE_GORUNNER_IMAGE": "scratch", "KUBE_BUILD_WINDOWS": "y"}
    bad = "layout: kubernetes\nimages:\n  KUBE_GORUNER_IMAGE: scratch\n"
    with pytest.raises(ProfileError, match=r"images\.KUBE_GORUNER_IMAGE: is not an image setting"):
        parse_profile(load_yaml_text(bad, "kdist.yaml", ProfileError), "kdist.yaml")
    generic = "name: x\nbuild: make\nartifacts: out\nplatforms: [linux/amd64]\nimages: {}\n"
    with pytest.raises(ProfileError, match="images: is for the kubernetes layout"):
        parse_profile(load_yaml_text(generic, "kdist.yaml", ProfileError), "kdist.yaml")


CGO_PROFILE = """\
name: cgo-tool
platforms: [linux/amd64, linux/arm64]
build: make GOOS={os} GOARCH={arch}
artifacts: _output/bin
env: {CGO_ENABLED: "1", LEVEL: profile}
platform_env:
  "*":
    cross: {LEVEL: any-cross}
  linux/arm64:
    all: {LEVEL: arm64, GOARM64: v8.0}
    cross: {CC: aarch64-linux-gnu-gcc}
"""


def test_platform_env_layers_profile_any_platform_and_kind() -> None:
    """env, then "*", then the platform; within each, `all` then the kind of build."""
    profile = parse_profile(load_yaml_text(CGO_PROFILE, "kdist.yaml"), "kdist.yaml")
    arm64, amd64 = Platform("linux", "arm64"), Platform("linux", "amd64")
    assert platform_env(profile, arm64, cross=True) == {
        "CGO_ENABLED": "1", "LEVEL": "arm64", "GOARM64": "v8.0", "CC": "aarch64-linux-gnu-gcc",
    }  # fmt: skip
    assert platform_env(profile, arm64, cross=False) == {
        "CGO_ENABLED": "1", "LEVEL": "arm64", "GOARM64": "v8.0",
    }  # fmt: skip
    assert platform_env(profile, amd64, cross=True) == {"CGO_ENABLED": "1", "LEVEL": "any-cross"}
    assert platform_env(profile, amd64, cross=False) == {"CGO_ENABLED": "1", "LEVEL": "profile"}


def test_git_answers_default_on_for_generic_and_off_for_kubernetes() -> None:
    """Generic projects ask git; Kubernetes reads KUBE_GIT_VERSION_FILE, so it is off there."""
    generic = parse_profile(load_yaml_text(CGO_PROFILE, "kdist.yaml"), "kdist.yaml")
    assert generic.git_answers
    off = parse_profile(load_yaml_text(CGO_PROFILE + "git_answers: false\n", "k.yaml"), "k.yaml")
    assert not off.git_answers
    assert not parse_profile({"layout": "kubernetes"}, "k.yaml").git_answers
    assert not KUBERNETES.git_answers


@pytest.mark.parametrize(
    ("artifacts", "separate"),
    [
        ("_output/bin", False),
        ("bin/{os}", False),
        ("bin/{arch}", False),
        ("bin/{os}/{arch}", True),
        ("bin/{os}_{arch}", True),
        ("out/{platform}", True),
    ],
)
def test_artifacts_name_the_platform_only_with_os_and_arch(artifacts: str, separate: bool) -> None:
    """Only `{platform}`, or `{os}` with `{arch}`, gives every platform a folder of its own."""
    assert has_platform(artifacts) is separate
