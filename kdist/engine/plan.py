"""Pure, deterministic planning: which host builds which platform, with which command and env."""

from __future__ import annotations

import math
import posixpath
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from kdist.config.profile import (
    build_template,
    fields_for,
    has_platform,
    platform_env,
    substitute,
    substitute_what,
)
from kdist.errors import PlanError
from kdist.model import Host, Layout, Plan, Platform, Profile, Slice, VersionInfo

VERSION_DEFS = "_output/kdist/version-defs"  # under the tree on each host; _output is never synced
SLOTS = ".kdist/slots"  # under the synced tree: private trees of slices (sync never touches .kdist)


@dataclass(frozen=True)
class PlanRequest:
    """Everything the plan depends on besides the hosts."""

    platforms: tuple[Platform, ...]
    profile: Profile
    source: str  # absolute source path on the head node (the local host builds in place)
    tree_id: str  # names this source tree's workdir on every host
    version: VersionInfo  # decided once on the head node
    pin: str | None = None  # `--host`: every slice on this host
    native_only: bool = False
    what: tuple[str, ...] = ()  # `kdist build WHAT...`: the profile's build_what command
    containerized: bool = False  # builds run in a container: the host's own env stays out


def tree_workdir(host: Host, req: PlanRequest) -> str:
    """Where this source tree lives on `host` (the source itself on the head node)."""
    return req.source if host.local else posixpath.join(host.workdir, req.tree_id)


def make_plan(
    hosts: Sequence[Host], natives: Mapping[str, tuple[Platform, ...]], req: PlanRequest
) -> Plan:
    """Assign every requested platform to a host: native hosts first, least loaded, stable."""
    if not req.platforms:
        raise PlanError("no platforms to build")
    if not hosts:
        raise PlanError("no build hosts")
    usable = _pinned(hosts, req.pin) if req.pin else list(hosts)
    load = dict.fromkeys((h.name for h in usable), 0)
    order = {h.name: i for i, h in enumerate(usable)}
    assigned: dict[Platform, tuple[Host, bool]] = {}
    notes: list[str] = []

    def pick(candidates: Sequence[Host]) -> Host:
        best = min(candidates, key=lambda h: (load[h.name] / h.capacity, order[h.name]))
        load[best.name] += 1
        return best

    def native_hosts(platform: Platform) -> list[Host]:
        return [h for h in usable if platform in natives.get(h.name, ())]

    # Most constrained platforms first, so a host that is the only native one for some
    # platform is not filled up by platforms that have other choices.
    ranked = sorted(
        req.platforms,
        key=lambda p: (len(native_hosts(p)) or math.inf, req.platforms.index(p)),
    )
    for platform in ranked:
        candidates = native_hosts(platform)
        if not candidates and req.native_only:
            msg = f"{platform}: no native build host (and --native-only is set)"
            raise PlanError(msg)
        host = pick(candidates or usable)
        assigned[platform] = (host, not candidates)
        if not candidates:
            notes.append(f"{platform}: no native host; cross-compiled on {host.name}")
    slices = tuple(_slice(p, *assigned[p], req) for p in req.platforms)
    used = [h for h in usable if load[h.name]]
    env = {h.name: build_env(h, req) for h in used}
    test_host = min(used, key=lambda h: (load[h.name] / h.capacity, order[h.name])).name
    return Plan(slices=slices, env=env, notes=tuple(notes), test_host=test_host)


def _pinned(hosts: Sequence[Host], name: str) -> list[Host]:
    chosen = [h for h in hosts if h.name == name]
    if not chosen:
        known = ", ".join(h.name for h in hosts)
        msg = f"--host {name}: no such host in the inventory (hosts: {known})"
        raise PlanError(msg)
    return chosen


def _slice(platform: Platform, host: Host, cross: bool, req: PlanRequest) -> Slice:
    fields = fields_for(platform, req.version.version)
    template = build_template(req.profile, req.what)
    tree = tree_workdir(host, req)
    workdir = slot_workdir(tree, platform) if needs_slot(host, req.profile) else tree
    artifacts = substitute((req.profile.artifacts,), fields)[0]
    return Slice(
        platform=platform,
        host=host.name,
        cross=cross,
        workdir=workdir,
        argv=substitute_what(template, fields, req.what),
        artifacts=posixpath.join(workdir, artifacts),
        env=build_env(host, req, platform_env(req.profile, platform, cross=cross)),
        tree=tree if workdir != tree else "",
    )


def needs_slot(host: Host, profile: Profile) -> bool:
    """Whether a slice on `host` builds in a private copy of the tree.

    When the artifacts folder does not name the platform, two slices building at once in one
    tree would write the same files. Every such slice gets its own tree (hard links to the
    synced one), whatever the host's capacity: the build's paths are then the same on any
    host, which a reproducibility rebuild elsewhere relies on. The head node builds in place.
    """
    return not host.local and not has_platform(profile.artifacts)


def slot_workdir(tree: str, platform: Platform) -> str:
    """The private tree of `platform`'s slices under the synced `tree` on a host."""
    return posixpath.join(tree, SLOTS, platform.dashed)


def build_env(
    host: Host, req: PlanRequest, profile_env: Mapping[str, str] | None = None
) -> dict[str, str]:
    """The environment of builds on `host`: profile, then host, then kdist's version variables.

    `profile_env` is one slice's share of the profile (`platform_env` applied); without it,
    the profile's `env`. A container has its own PATH and toolchain, so the host's env does
    not go in there.
    """
    base = req.profile.env if profile_env is None else profile_env
    env = {**base, **({} if req.containerized else host.env)}
    env["SOURCE_DATE_EPOCH"] = str(req.version.source_date_epoch)
    env["KDIST_VERSION"] = req.version.version
    if req.profile.layout is Layout.KUBERNETES:
        # hack/lib/version.sh sources this file instead of asking git, which hosts lack.
        env["KUBE_GIT_VERSION_FILE"] = posixpath.join(tree_workdir(host, req), VERSION_DEFS)
    else:
        env.setdefault("VERSION", req.version.version)
    return env
