"""Pure, deterministic planning: which host builds which platform, with which command and env."""

from __future__ import annotations

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
from kdist.engine import placement
from kdist.engine.estimate import Estimates
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
    hosts: Sequence[Host],
    natives: Mapping[str, tuple[Platform, ...]],
    req: PlanRequest,
    estimates: Estimates | None = None,
) -> Plan:
    """Place every requested platform the way a run will: one queue, longest first.

    Pure and deterministic given the hosts and the estimates learned from their history.
    """
    if not req.platforms:
        raise PlanError("no platforms to build")
    if not hosts:
        raise PlanError("no build hosts")
    usable = _pinned(hosts, req.pin) if req.pin else list(hosts)
    for platform in req.platforms:
        if req.native_only and not any(platform in natives.get(h.name, ()) for h in usable):
            msg = f"{platform}: no native build host (and --native-only is set)"
            raise PlanError(msg)
    rules = placement.Rules(
        tuple(usable), natives, estimates or Estimates(), cross=not req.native_only
    )
    timed = {t.platform: t for t in placement.simulate(rules, req.platforms)}
    notes = [_cross_note(t, rules) for t in timed.values() if t.cross]
    by_name = {h.name: h for h in usable}
    slices = tuple(
        make_slice(p, by_name[timed[p].host], timed[p].cross, req) for p in req.platforms
    )
    load = {h.name: sum(t.host == h.name for t in timed.values()) for h in usable}
    used = [h for h in usable if load[h.name]]
    env = {h.name: build_env(h, req) for h in used}
    test_host = min(used, key=lambda h: (load[h.name] / h.capacity, usable.index(h))).name
    expected = {p.dashed: (round(t.start, 3), round(t.end, 3)) for p, t in timed.items()}
    critical = tuple(t.platform.dashed for t in placement.critical_path(list(timed.values())))
    return Plan(slices=slices, env=env, notes=tuple(notes), test_host=test_host,
                expected=expected, critical=critical)  # fmt: skip


def _cross_note(t: placement.Timed, rules: placement.Rules) -> str:
    """Why a platform is cross-compiled: no native host, or waiting for one would take longer."""
    if any(rules.native(t.platform, h.name) for h in rules.hosts):
        return f"{t.platform}: cross-compiled on {t.host}: sooner than waiting for a native host"
    return f"{t.platform}: no native host; cross-compiled on {t.host}"


def _pinned(hosts: Sequence[Host], name: str) -> list[Host]:
    chosen = [h for h in hosts if h.name == name]
    if not chosen:
        known = ", ".join(h.name for h in hosts)
        msg = f"--host {name}: no such host in the inventory (hosts: {known})"
        raise PlanError(msg)
    return chosen


def make_slice(platform: Platform, host: Host, cross: bool, req: PlanRequest) -> Slice:
    """One platform's slice on `host`: its command, workdir and artifacts folder there."""
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
