"""Small builders for tests of the run logic: hosts, a generic profile, jobs, a fake farm."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from kdist.engine.job import Job
from kdist.model import (
    KNOWN_OS,
    Host,
    Layout,
    Limits,
    Platform,
    Profile,
    VersionInfo,
    parse_platform_list,
)
from kdist.testing.fake import Call, FakeTransport, Reply, binary
from kdist.transport import Transport

# A generic project: `make OS ARCH` leaves one binary, `tool`, in bin/OS/ARCH.
GENERIC = Profile(
    name="tool",
    layout=Layout.GENERIC,
    platforms=parse_platform_list("linux/amd64,linux/arm64"),
    build=("make", "{os}", "{arch}"),
    artifacts="bin/{os}/{arch}",
)
VERSION = VersionInfo("v1.2.3", "0" * 40, "clean", "1", "2", 1_700_000_000)
FAST = Limits(backoff=0.0)  # retries without waiting


def host(name: str, *platforms: str, **changes: Any) -> Host:  # noqa: ANN401
    """A remote build host that declares its native platforms (none: detected)."""
    declared = tuple(Platform.parse(p) for p in platforms) or None
    return Host(name=name, address=f"{name}.example", **{"platforms": declared, **changes})


def job(
    source: Path,
    output: Path | None = None,
    platforms: str = "linux/amd64",
    profile: Profile = GENERIC,
    **changes: Any,  # noqa: ANN401
) -> Job:
    """A release job of `source` (into SOURCE/_output unless `output`), with fast retries."""
    base = Job(
        source=source,
        output=output or source / "_output",
        profile=profile,
        platforms=parse_platform_list(platforms),
        version=VERSION,
        tree_id="tree-0123456789ab",
        limits=FAST,
    )
    return dataclasses.replace(base, **changes)


def is_build(call: Call) -> bool:
    """True for GENERIC's build command, `make OS ARCH`."""
    return len(call.argv) == 3 and call.argv[0] == "make" and call.argv[1] in KNOWN_OS


def tool_for(call: Call) -> Reply:
    """What `make OS ARCH` of GENERIC leaves behind: bin/OS/ARCH/tool for that platform."""
    os_, arch = call.argv[1], call.argv[2]
    return Reply(files={f"bin/{os_}/{arch}/tool": binary(Platform(os_, arch))})


class FakeFarm:
    """Fake hosts by name, each with its own root under `root`, and the factory a run uses."""

    def __init__(self, root: Path, hosts: Sequence[Host]) -> None:
        self.hosts = tuple(hosts)
        self.transports = {h.name: FakeTransport(h, root / h.name) for h in hosts}
        for fake in self.transports.values():
            fake.on(is_build, tool_for)

    def __getitem__(self, name: str) -> FakeTransport:
        return self.transports[name]

    def factory(self, host: Host) -> Transport:
        """The transport of `host` (the same fake every time it is opened)."""
        return self.transports[host.name]

    def calls(self, op: str) -> Mapping[str, int]:
        """How many calls of `op` each host saw."""
        return {n: sum(c.op == op for c in f.calls) for n, f in self.transports.items()}
