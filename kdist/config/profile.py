"""Project profiles: how a project builds and what it packs (built-in kubernetes, or kdist.yaml)."""

from __future__ import annotations

import re
import shlex
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from kdist.config import kubernetes
from kdist.config import validate as v
from kdist.config.loader import load_yaml_file
from kdist.errors import ProfileError
from kdist.model import (
    MIN_LOG_LIMIT,
    ContainerSpec,
    Layout,
    Platform,
    Profile,
    format_size,
    parse_size,
)

PROFILE_FILE = "kdist.yaml"
PROFILE_KEYS = (
    "name", "layout", "platforms", "build", "build_what", "artifacts", "env", "test", "package",
    "images", "container", "smoke", "log_limit", "platform_env", "git_answers",
    "artifact_names", "artifact_data",
)  # fmt: skip
# platform_env: per platform (or "*"), env for every build, native builds or cross builds.
BUILD_KINDS = ("all", "native", "cross")
ANY_PLATFORM = "*"
# kdist's own variables: the version every host must agree on is not a per-platform setting.
KDIST_VARIABLES = frozenset({"SOURCE_DATE_EPOCH", "KDIST_VERSION", "KUBE_GIT_VERSION_FILE"})
# Server image settings a kubernetes profile may give (the environment overrides them).
IMAGE_KEYS = (
    "KUBE_GORUNNER_IMAGE", "KUBE_PROXY_BASE_IMAGE", "KUBE_APISERVER_BASE_IMAGE",
    "KUBE_CONTROLLER_MANAGER_BASE_IMAGE", "KUBE_SCHEDULER_BASE_IMAGE", "KUBECTL_BASE_IMAGE",
    "KUBE_PROXY_WINDOWS_BASE_IMAGE", "KUBE_DOCKER_REGISTRY", "KUBE_DOCKER_IMAGE_TAG",
    "KUBE_BUILD_WINDOWS",
)  # fmt: skip
CONTAINER_KEYS = ("image", "images", "dockerfile", "network")
_IMAGE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._/:@-]*")
_NETWORK = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
_PLACEHOLDER = re.compile(r"\{([^{}]*)\}")
_FIELDS = frozenset({"platform", "os", "arch", "version"})
WHAT = "{what}"  # in build_what: a word of its own becomes one word per target
# A WHAT target is a make target or a package path: never an option, never shell syntax.
_WHAT_WORD = re.compile(r"[A-Za-z0-9_.+@][A-Za-z0-9_.+@/:-]*")

KUBERNETES = Profile(
    name="kubernetes",
    layout=Layout.KUBERNETES,
    platforms=kubernetes.classes_for().all,
    build=("make", "cross", "KUBE_BUILD_PLATFORMS={platform}"),
    build_what=("make", "all", "WHAT={what}", "KUBE_BUILD_PLATFORMS={platform}"),
    artifacts="_output/local/bin/{os}/{arch}",
    test=("make", "test"),
)


def is_kubernetes_tree(source: Path) -> bool:
    """True when `source` looks like a Kubernetes checkout (the way kdist picks the profile)."""
    return (source / "hack/lib/golang.sh").is_file() and (source / "build/root/Makefile").is_file()


def choose_profile(source: Path, profile_file: Path | None = None) -> Profile:
    """`--profile FILE`, else SOURCE/kdist.yaml, else the built-in kubernetes profile."""
    if profile_file is not None:
        return load_profile(profile_file)
    if (source / PROFILE_FILE).is_file():
        return load_profile(source / PROFILE_FILE)
    if is_kubernetes_tree(source):
        return KUBERNETES
    msg = (
        f"{source}: no {PROFILE_FILE} and not a Kubernetes tree "
        "(hack/lib/golang.sh + build/root/Makefile); pass --profile FILE"
    )
    raise ProfileError(msg)


def load_profile(path: Path) -> Profile:
    """Read and validate a profile file."""
    return parse_profile(load_yaml_file(path, ProfileError), str(path))


def parse_profile(data: Any, source: str) -> Profile:  # noqa: ANN401
    """Validate parsed YAML as a profile; kubernetes layout keys default to the built-in ones."""
    top = v.Where(source, "", ProfileError)
    doc = v.mapping(data, top)
    v.no_unknown_keys(doc, PROFILE_KEYS, top)
    layout = _layout(doc.get("layout", "generic"), top / "layout")
    base = KUBERNETES if layout is Layout.KUBERNETES else None
    required = () if base else ("name", "build", "artifacts")
    for key in required:
        if key not in doc:
            raise (top / key).fail("is required for a generic profile")
    return Profile(
        name=_name(doc["name"], top / "name") if "name" in doc else KUBERNETES.name,
        layout=layout,
        platforms=_platforms(doc, top, base),
        build=_template(doc, "build", top, base),
        build_what=_build_what(doc, top, base),
        artifacts=_artifacts(doc, top, base),
        env=v.env_mapping(doc.get("env", {}), top / "env"),
        test=_template(doc, "test", top, base),
        package=_template(doc, "package", top, None),
        smoke=_template(doc, "smoke", top, None, extra={"bin"}),
        source=source,
        images=_images(doc, top, layout),
        container=_container(doc["container"], top / "container") if "container" in doc else None,
        log_limit=_log_limit(doc["log_limit"], top / "log_limit") if "log_limit" in doc else None,
        platform_env=_platform_env(doc.get("platform_env", {}), top / "platform_env"),
        # Kubernetes' version.sh reads KUBE_GIT_VERSION_FILE; other projects ask git.
        git_answers=v.boolean(doc.get("git_answers", base is None), top / "git_answers"),
        artifact_names=_globs(doc, "artifact_names", top, base, data=False),
        artifact_data=_globs(doc, "artifact_data", top, base, data=True),
    )


def _globs(
    doc: Mapping[str, Any], key: str, top: v.Where, base: Profile | None, *, data: bool
) -> tuple[str, ...]:
    """`artifact_names` / `artifact_data`: file name globs (data may also be true or false)."""
    if key not in doc:
        return ()
    at = top / key
    if base is not None:  # Kubernetes knows its binaries by name
        raise at.fail("is for layout: generic (the kubernetes layout names its binaries)")
    value = doc[key]
    if data and isinstance(value, bool):
        return ("*",) if value else ()
    globs = v.string_list(value, at)
    for i, glob in enumerate(globs):
        if "/" in glob or not glob.isprintable():
            raise (at / i).fail("must be a file name pattern (no '/', no control characters)")
    return globs


def _log_limit(value: Any, at: v.Where) -> int:  # noqa: ANN401
    """`log_limit: 16M` (or a number of bytes), at least MIN_LOG_LIMIT."""
    text = str(value) if isinstance(value, int) and not isinstance(value, bool) else None
    try:
        size = parse_size(text if text is not None else v.string(value, at))
    except ValueError as exc:
        raise at.fail(str(exc)) from None
    if size < MIN_LOG_LIMIT:
        raise at.fail(f"must be at least {format_size(MIN_LOG_LIMIT)}")
    return size


def _platform_env(value: Any, at: v.Where) -> dict[str, dict[str, dict[str, str]]]:  # noqa: ANN401
    """`platform_env: {linux/arm64: {cross: {CC: aarch64-linux-gnu-gcc}}, "*": {...}}`."""
    found: dict[str, dict[str, dict[str, str]]] = {}
    for key, kinds in v.mapping(value, at).items():
        if key != ANY_PLATFORM:
            try:
                Platform.parse(key)
            except ValueError as exc:
                raise (at / key).fail(f'{exc} (or "{ANY_PLATFORM}" for every platform)') from None
        doc = v.mapping(kinds, at / key)
        v.no_unknown_keys(doc, BUILD_KINDS, at / key)
        found[key] = {kind: _plain_env(doc[kind], at / key / kind) for kind in doc}
    return found


def _plain_env(value: Any, at: v.Where) -> dict[str, str]:  # noqa: ANN401
    env = v.env_mapping(value, at)
    for name in env:
        if name in KDIST_VARIABLES:
            raise (at / name).fail("is set by kdist (the same on every host)")
    return env


def platform_env(profile: Profile, platform: Platform, *, cross: bool) -> dict[str, str]:
    """The profile's env for one slice: `env`, then `*`, then the platform; all, then the kind."""
    env = dict(profile.env)
    kind = "cross" if cross else "native"
    for key in (ANY_PLATFORM, str(platform)):
        kinds = profile.platform_env.get(key, {})
        env.update(kinds.get("all", {}))
        env.update(kinds.get(kind, {}))
    return env


def has_platform(artifacts: str) -> bool:
    """True when the artifacts path names the whole platform, so two slices never share it.

    `{platform}`, or both `{os}` and `{arch}`: `bin/{os}` alone is one folder for linux/amd64
    and linux/arm64.
    """
    names = set(_PLACEHOLDER.findall(artifacts))
    return "platform" in names or {"os", "arch"} <= names


def _images(doc: Mapping[str, Any], top: v.Where, layout: Layout) -> dict[str, str]:
    if "images" not in doc:
        return {}
    at = top / "images"
    if layout is not Layout.KUBERNETES:
        raise at.fail("is for the kubernetes layout (server images)")
    found = v.env_mapping(doc["images"], at)
    for key in found:
        if key not in IMAGE_KEYS:
            raise (at / key).fail(f"is not an image setting (one of: {', '.join(IMAGE_KEYS)})")
    return found


def _container(value: Any, at: v.Where) -> ContainerSpec:  # noqa: ANN401
    """`container: IMAGE`, or a mapping with `image:` and optional images/dockerfile/network."""
    if isinstance(value, str):
        return ContainerSpec(image=_image(value, at))
    doc = v.mapping(value, at)
    v.no_unknown_keys(doc, CONTAINER_KEYS, at)
    if "image" not in doc:
        raise (at / "image").fail("is required (the build image's name)")
    images: dict[str, str] = {}
    for key, item in v.mapping(doc.get("images", {}), at / "images").items():
        try:
            platform = Platform.parse(key)
        except ValueError as exc:
            raise (at / "images" / key).fail(str(exc)) from None
        images[str(platform)] = _image(item, at / "images" / key)
    network = v.string(doc.get("network", "none"), at / "network")
    if not _NETWORK.fullmatch(network):
        raise (at / "network").fail(f"{network!r} is not a docker network name")
    return ContainerSpec(
        image=_image(doc["image"], at / "image"),
        images=images,
        dockerfile=_relative(doc["dockerfile"], at / "dockerfile") if "dockerfile" in doc else "",
        network=network,
    )


def _image(value: Any, at: v.Where) -> str:  # noqa: ANN401
    text = v.string(value, at)
    if not _IMAGE.fullmatch(text):
        raise at.fail(f"{text!r} is not an image name")
    return text


def _relative(value: Any, at: v.Where) -> str:  # noqa: ANN401
    text = v.string(value, at)
    if text.startswith("/") or ".." in text.split("/"):
        raise at.fail("must be a path inside the source tree (relative, without '..')")
    return text


def _layout(value: Any, at: v.Where) -> Layout:  # noqa: ANN401
    text = v.string(value, at)
    try:
        return Layout(text)
    except ValueError:
        raise at.fail(f"must be one of: {', '.join(m.value for m in Layout)}") from None


def _name(value: Any, at: v.Where) -> str:  # noqa: ANN401
    text = v.string(value, at)
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", text):
        raise at.fail("must be letters, digits, '.', '_' or '-' (it names tarballs)")
    return text


def _platforms(doc: Mapping[str, Any], top: v.Where, base: Profile | None) -> tuple[Platform, ...]:
    if "platforms" in doc:
        platforms = v.platform_list(doc["platforms"], top / "platforms")
        if not platforms:
            raise (top / "platforms").fail("must list at least one platform")
        return platforms
    if base:
        return base.platforms
    raise (top / "platforms").fail("is required for a generic profile")


def _template(
    doc: Mapping[str, Any],
    key: str,
    top: v.Where,
    base: Profile | None,
    extra: frozenset[str] | set[str] = frozenset(),
) -> tuple[str, ...]:
    if key not in doc:
        return getattr(base, key) if base else ()
    at = top / key
    try:
        argv = tuple(shlex.split(v.string(doc[key], at)))
    except ValueError as exc:
        raise at.fail(f"cannot split into words: {exc}") from exc
    for word in argv:
        for name in _PLACEHOLDER.findall(word):
            if name not in _FIELDS | extra:
                allowed = ", ".join(f"{{{f}}}" for f in sorted(_FIELDS | extra))
                raise at.fail(f"unknown placeholder {{{name}}} (allowed: {allowed})")
    return argv


def _build_what(doc: Mapping[str, Any], top: v.Where, base: Profile | None) -> tuple[str, ...]:
    argv = _template(doc, "build_what", top, base, extra={"what"})
    if argv and not any(WHAT in word for word in argv):
        raise (top / "build_what").fail(f"must contain {WHAT} (where the targets go)")
    return argv


def _artifacts(doc: Mapping[str, Any], top: v.Where, base: Profile | None) -> str:
    if "artifacts" not in doc:
        return base.artifacts if base else ""
    at = top / "artifacts"
    text = _relative(doc["artifacts"], at)
    for name in _PLACEHOLDER.findall(text):
        if name not in _FIELDS:
            raise at.fail(f"unknown placeholder {{{name}}}")
    return text.rstrip("/")


def substitute(template: tuple[str, ...], fields: Mapping[str, str]) -> tuple[str, ...]:
    """Fill `{name}` placeholders word by word; a value never becomes more than one word."""
    return tuple(_PLACEHOLDER.sub(lambda m: fields[m.group(1)], word) for word in template)


def build_template(profile: Profile, what: tuple[str, ...]) -> tuple[str, ...]:
    """The build argv template: `build`, or `build_what` when targets are named.

    A profile without `build_what` cannot build a subset; saying so beats building everything.
    """
    if not what:
        return profile.build
    bad = [w for w in what if not _WHAT_WORD.fullmatch(w)]
    if bad:
        msg = f"WHAT {bad[0]!r}: not a target (letters, digits, and . _ + @ / : -)"
        raise ProfileError(msg)
    if not profile.build_what:
        msg = (
            f"{profile.source}: build_what: not set, so {profile.name} cannot build only "
            f"{' '.join(what)}; add e.g. `build_what: make {WHAT} GOOS={{os}} GOARCH={{arch}}`, "
            "or run kdist build without WHAT"
        )
        raise ProfileError(msg)
    return profile.build_what


def substitute_what(
    template: tuple[str, ...], fields: Mapping[str, str], what: tuple[str, ...]
) -> tuple[str, ...]:
    """`substitute` plus `{what}`: a word of its own per target, or joined inside a word."""
    # `make {what}` gets each target as a word; `WHAT={what}` stays one word, as make wants.
    joined = {**fields, "what": " ".join(what)}
    out: list[str] = []
    for word in template:
        if word == WHAT:
            out.extend(what)
        else:
            out.extend(substitute((word,), joined))
    return tuple(out)


def fields_for(platform: Platform, version: str) -> dict[str, str]:
    """The substitution fields of one platform slice."""
    return {"platform": str(platform), "os": platform.os, "arch": platform.arch, "version": version}


def container_spec(
    profile: Profile, source: Path, env: Mapping[str, str], wanted: bool | None
) -> ContainerSpec | None:
    """The build container of a run, or None for native builds.

    `wanted` is --container (True), --native (False) or neither (None: the profile decides).
    A Kubernetes-layout profile without `container:` builds in upstream's kube-cross image.
    """
    if wanted is False or (wanted is None and profile.container is None):
        return None
    if profile.container is not None:
        return profile.container
    if profile.layout is not Layout.KUBERNETES:
        msg = f"{profile.source}: --container needs a `container:` image in the profile"
        raise ProfileError(msg)
    version_file = source / kubernetes.KUBE_CROSS_VERSION_FILE
    text = version_file.read_text(errors="replace") if version_file.is_file() else None
    try:
        return ContainerSpec(image=kubernetes.kube_cross_image(text, env))
    except ValueError as exc:
        raise ProfileError(f"{source}: --container: {exc}") from exc
