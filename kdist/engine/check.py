"""`hosts check` (the verify_prereqs step): probe every host at once, one report row each."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict, dataclass

from kdist.errors import KdistError
from kdist.model import DaemonReport, Host
from kdist.remote.probe import CONTAINER_TOOLS, REQUIRED_TOOLS, Facts, probe_host
from kdist.text import inert
from kdist.transport import Transport

COLUMNS = (
    "host",
    "address",
    "status",
    "arch",
    "platforms",
    "make",
    "go",
    "rsync",
    "free",
    "problems",
)
DOCKER_COLUMNS = ("docker", "image")
DaemonCheck = Callable[[Transport], Awaitable[DaemonReport]]


@dataclass(frozen=True)
class HostReport:
    """One row of `kdist hosts check`."""

    host: Host
    facts: Facts | None
    error: str = ""
    seconds: float = 0.0
    docker: DaemonReport | None = None  # container builds: the daemon and the image there

    @property
    def ok(self) -> bool:
        """True when the host is reachable and has everything a build needs."""
        return self.facts is not None and not self.problems()

    @property
    def status(self) -> str:
        """ok, unusable (reachable, but something is missing) or unreachable."""
        if self.facts is None:
            return "unreachable"
        return "ok" if self.ok else "unusable"

    def problems(self) -> list[str]:
        """What is wrong, for the last column."""
        if self.facts is None:
            return [self.error]
        if self.docker is None:
            return self.facts.problems()
        docker = [self.docker.problem] if self.docker.problem else []
        return self.facts.problems(CONTAINER_TOOLS) + docker

    def row(self) -> list[str]:
        """The table row."""
        f = self.facts or Facts()
        declared = ",".join(str(p) for p in self.host.platforms or ())
        free = f"{f.disk_free_kb // (1024 * 1024)} GiB" if f.disk_free_kb is not None else ""
        tools = [_short(f.tools.get(t, "")) for t in REQUIRED_TOOLS]
        return [
            self.host.name,
            f"{self.host.address}:{self.host.port}",
            self.status,
            f.arch,
            declared or "(detect)",
            *tools,
            free,
            "; ".join(self.problems()),
            *(self._docker_cells() if self.docker else []),
        ]

    def _docker_cells(self) -> list[str]:
        d = self.docker
        assert d is not None
        version = d.version or "unreachable"
        image = f"{d.image} {d.image_id[:19]}" if d.image_id else f"{d.image} missing"
        return [version, image if d.image else ""]

    def as_dict(self) -> dict[str, object]:
        """The JSON form."""
        f = self.facts
        return {
            "host": self.host.name,
            "address": self.host.address,
            "port": self.host.port,
            "status": self.status,
            "arch": f.arch if f else None,
            "platforms": [str(p) for p in self.host.platforms or ()],
            "tools": f.tools if f else {},
            "disk_free_kb": f.disk_free_kb if f else None,
            "problems": self.problems(),
            "seconds": round(self.seconds, 3),
            "docker": asdict(self.docker) if self.docker else None,
        }


def _short(version_line: str) -> str:
    # "go version go1.22.1 linux/amd64" -> "go1.22.1"; "GNU Make 4.3" -> "4.3"
    words = version_line.split()
    for word in words:
        if any(ch.isdigit() for ch in word):
            return word.removeprefix("version")
    return "missing" if not words else words[0]


async def check_host(
    host: Host, factory: Callable[[Host], Transport], docker: DaemonCheck | None = None
) -> HostReport:
    """Connect to one host and probe it; failures become the report, not an exception."""
    start = time.monotonic()
    transport = factory(host)
    try:
        await transport.connect()
        facts = await probe_host(transport, host)
        daemon = await docker(transport) if docker is not None else None
    except KdistError as exc:
        return HostReport(host, None, inert(str(exc)), time.monotonic() - start)
    finally:
        await transport.close()
    return HostReport(host, facts, "", time.monotonic() - start, daemon)


async def check_all(
    hosts: Sequence[Host], factory: Callable[[Host], Transport], docker: DaemonCheck | None = None
) -> list[HostReport]:
    """Check every host at once; one dead host does not delay the others' answers."""
    return list(await asyncio.gather(*(check_host(h, factory, docker) for h in hosts)))
