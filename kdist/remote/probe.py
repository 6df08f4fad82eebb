"""The host probe: one `sh` script, one round trip, facts parsed by a pure function.

Used by `hosts check` and by platform detection before a run.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from kdist.errors import KdistError, OutputTooLarge
from kdist.model import UNAME_TO_GOARCH, Host, Limits, Platform, format_size
from kdist.remote.hostside import host_script
from kdist.text import inert
from kdist.transport import Transport

# One probe, one round trip: facts for `hosts check` and platform detection.
PROBE_SCRIPT = host_script("probe.sh")

REQUIRED_TOOLS = ("make", "go", "rsync")
CONTAINER_TOOLS = ("rsync",)  # container builds bring make and go in their image
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

    def problems(self, required: tuple[str, ...] = REQUIRED_TOOLS) -> list[str]:
        """Why this host cannot build (with the `required` tools), empty when it can."""
        out = [f"{t} not found" for t in required if not self.tools.get(t)]
        if not self.arch:
            out.append("unknown architecture")
        if not self.workdir_ok:
            out.append("workdir not writable")
        elif self.disk_free_kb is not None and self.disk_free_kb < MIN_FREE_KB:
            out.append(f"only {self.disk_free_kb // 1024} MiB free in workdir")
        return out


def parse_probe(text: str) -> Facts:
    """Parse the output of probe()."""
    values: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep:
            values[key.strip()] = value.strip()
    # The boundary for tool versions: `hosts check` shows what a host's `go version` printed.
    tools = {
        inert(k.removeprefix("tool.")): inert(v) for k, v in values.items() if k.startswith("tool.")
    }
    free = values.get("disk_free_kb", "")
    return Facts(
        arch=UNAME_TO_GOARCH.get(values.get("arch", ""), ""),
        os=values.get("os", "").lower(),
        tools=tools,
        workdir_ok=values.get("workdir_ok") == "1",
        disk_free_kb=int(free) if free.isdigit() else None,
    )


async def probe_host(transport: Transport, host: Host, workdir: str | None = None) -> Facts:
    """Run the probe on a connected host and parse it (its output bounded: helper_output)."""
    limit = Limits.helper_output
    try:
        result = await transport.run(
            probe(workdir or host.workdir),
            env=dict(host.env),
            max_output=limit,
            timeout=Limits.command_timeout,  # a `go version` that never answers ends here
        )
    except OutputTooLarge as exc:
        msg = f"{host.name}: the probe printed over the helper_output limit ({format_size(limit)})"
        raise OutputTooLarge(limit, msg) from exc
    if not result.ok:
        msg = f"{host.name}: probe failed (exit {result.returncode}): {result.tail(3)}"
        raise KdistError(msg)
    return parse_probe(result.stdout)


def probe(workdir: str) -> list[str]:
    """The `hosts check` / platform detection probe, as argv."""
    return ["sh", "-c", PROBE_SCRIPT, "kdist-probe", workdir]
