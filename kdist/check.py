"""Host facts (the verify_prereqs step): one probe per host, parsed by a pure function."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from kdist import commands
from kdist.errors import KdistError
from kdist.model import UNAME_TO_GOARCH, Host, Platform
from kdist.transport import Transport

REQUIRED_TOOLS = ("make", "go", "rsync")
MIN_FREE_KB = 1024 * 1024  # 1 GiB: less than one Kubernetes platform's output


@dataclass(frozen=True)
class Facts:
    """What a probe found on a host."""

    arch: str = ""  # GOARCH, or "" when `uname -m` was not recognised
    os: str = ""
    tools: dict[str, str] = field(default_factory=dict)  # name -> version line ("" = missing)
    workdir_ok: bool = False
    disk_free_kb: int | None = None

    @property
    def platform(self) -> Platform | None:
        """The host's native platform, when recognised."""
        return Platform(self.os, self.arch) if self.os and self.arch else None

    def problems(self) -> list[str]:
        """Why this host cannot build, empty when it can."""
        out = [f"{t} not found" for t in REQUIRED_TOOLS if not self.tools.get(t)]
        if not self.arch:
            out.append("unknown architecture")
        if not self.workdir_ok:
            out.append("workdir not writable")
        elif self.disk_free_kb is not None and self.disk_free_kb < MIN_FREE_KB:
            out.append(f"only {self.disk_free_kb // 1024} MiB free in workdir")
        return out


def parse_probe(text: str) -> Facts:
    """Parse the output of commands.probe()."""
    values: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep:
            values[key.strip()] = value.strip()
    tools = {k.removeprefix("tool."): v for k, v in values.items() if k.startswith("tool.")}
    free = values.get("disk_free_kb", "")
    return Facts(
        arch=UNAME_TO_GOARCH.get(values.get("arch", ""), ""),
        os=values.get("os", "").lower(),
        tools=tools,
        workdir_ok=values.get("workdir_ok") == "1",
        disk_free_kb=int(free) if free.isdigit() else None,
    )


async def probe_host(transport: Transport, host: Host, workdir: str | None = None) -> Facts:
    """Run the probe on a connected host and parse it."""
    result = await transport.run(commands.probe(workdir or host.workdir), env=dict(host.env))
    if not result.ok:
        msg = f"{host.name}: probe failed (exit {result.returncode}): {result.tail(3)}"
        raise KdistError(msg)
    return parse_probe(result.stdout)


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


@dataclass(frozen=True)
class HostReport:
    """One row of `kdist hosts check`."""

    host: Host
    facts: Facts | None
    error: str = ""
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        """True when the host is reachable and has everything a build needs."""
        return self.facts is not None and not self.facts.problems()

    @property
    def status(self) -> str:
        """ok, unusable (reachable, but something is missing) or unreachable."""
        if self.facts is None:
            return "unreachable"
        return "ok" if self.ok else "unusable"

    def problems(self) -> list[str]:
        """What is wrong, for the last column."""
        return [self.error] if self.facts is None else self.facts.problems()

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
        ]

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
        }


def _short(version_line: str) -> str:
    # "go version go1.22.1 linux/amd64" -> "go1.22.1"; "GNU Make 4.3" -> "4.3"
    words = version_line.split()
    for word in words:
        if any(ch.isdigit() for ch in word):
            return word.removeprefix("version")
    return "missing" if not words else words[0]


async def check_host(host: Host, factory: Callable[[Host], Transport]) -> HostReport:
    """Connect to one host and probe it; failures become the report, not an exception."""
    start = time.monotonic()
    transport = factory(host)
    try:
        await transport.connect()
        facts = await probe_host(transport, host)
    except KdistError as exc:
        return HostReport(host, None, str(exc), time.monotonic() - start)
    finally:
        await transport.close()
    return HostReport(host, facts, "", time.monotonic() - start)


async def check_all(
    hosts: Sequence[Host], factory: Callable[[Host], Transport]
) -> list[HostReport]:
    """Check every host at once; one dead host does not delay the others' answers."""
    return list(await asyncio.gather(*(check_host(h, factory) for h in hosts)))
