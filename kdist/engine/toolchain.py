"""Toolchain agreement: every building host has the Go (and build image) the project expects.

The reference is the project's pin (`.go-version` at its root, e.g. `1.22.4`, which Go
versions `go1.22.4` match; a pin `1.22` matches any 1.22.x) when there is one; the hosts
must then also agree with each other. A disagreement is refused before anything builds,
naming every host and what it has, unless the user allows drift; then it is recorded.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kdist.aio import wait_for
from kdist.errors import ConfigError, InfraError, KdistError

PIN_FILE = ".go-version"
_GO_VERSION = re.compile(r"\bgo version (go\d+(?:\.\d+)*\S*)")
_PIN = re.compile(r"^(?:go)?(\d+(?:\.\d+){0,2}(?:(?:rc|beta)\d+)?)$")


@dataclass(frozen=True)
class Toolchain:
    """What one host builds with."""

    go: str  # e.g. go1.22.4 ('' when `go version` gave nothing we understand)
    image: str = ""  # the build image digest in container mode

    def __str__(self) -> str:
        return self.go + (f" in {self.image}" if self.image else "") if self.go else "no go"


@dataclass(frozen=True)
class Agreement:
    """The outcome of the check: the agreed toolchain, or the drift that was allowed."""

    pin: str | None
    toolchains: Mapping[str, Toolchain]
    drift: tuple[str, ...] = ()  # one line per disagreement, when drift was allowed

    @property
    def agreed(self) -> bool:
        """True when every host matched the pin and each other."""
        return not self.drift


GO_VERSION_ARGV = ("go", "version")


def probe_env(build_env: Mapping[str, str]) -> dict[str, str]:
    """The environment `go version` runs with: the build's, without GOFLAGS.

    A GOFLAGS that Go rejects makes even `go version` fail; that is the build's failure to
    report (the compiler said no), not a host without a toolchain.
    """
    return {**build_env, "GOFLAGS": ""}


def parse_go_version(text: str) -> str:
    """`go1.22.4` from `go version go1.22.4 linux/amd64` ('' when it is not there)."""
    match = _GO_VERSION.search(text)
    return match.group(1) if match else ""


def read_pin(source: Path) -> str | None:
    """The project's Go pin from `.go-version`, normalised to `1.22.4`; None without one."""
    path = source / PIN_FILE
    if not path.is_file():
        return None
    text = path.read_text(encoding="utf-8", errors="replace").strip()
    match = _PIN.fullmatch(text)
    if not match:
        msg = f"{path}: {text[:40]!r} is not a Go version (e.g. 1.22.4)"
        raise ConfigError(msg)
    return match.group(1)


def matches_pin(go: str, pin: str) -> bool:
    """True when Go version `go` (go1.22.4) is what `pin` (1.22.4 or 1.22) asks for."""
    version = go.removeprefix("go")
    return version == pin or version.startswith(pin + ".")


def check(
    toolchains: Mapping[str, Toolchain], pin: str | None, *, allow_drift: bool
) -> Agreement:
    """Compare every host with the pin and with each other; refuse (exit 2) or record drift."""
    problems = _problems(toolchains, pin)
    if problems and not allow_drift:
        msg = "toolchains disagree, nothing was built:\n" + "\n".join(
            f"  {line}" for line in problems
        )
        msg += "\n(pass --allow-toolchain-drift to build anyway; the provenance records it)"
        raise ConfigError(msg)
    return Agreement(pin, dict(toolchains), tuple(problems))


def _problems(toolchains: Mapping[str, Toolchain], pin: str | None) -> list[str]:
    lines = []
    if pin is not None:
        lines += [
            f"{host}: {tc} does not match {PIN_FILE} {pin}"
            for host, tc in sorted(toolchains.items())
            if not tc.go or not matches_pin(tc.go, pin)
        ]
    if len({tc.go for tc in toolchains.values()}) > 1 or _images_disagree(toolchains):
        each = ", ".join(f"{host} {tc}" for host, tc in sorted(toolchains.items()))
        lines.append(f"hosts differ: {each}")
    return lines


def _images_disagree(toolchains: Mapping[str, Toolchain]) -> bool:
    """True when one image name stands for different image ids on different hosts.

    Hosts of different platforms may use differently named images (container.images).
    """
    ids: dict[str, set[str]] = {}
    for tc in toolchains.values():
        if tc.image:
            name, _, digest = tc.image.rpartition("@")
            ids.setdefault(name, set()).add(digest)
    return any(len(found) > 1 for found in ids.values())


def admit(host: str, found: Toolchain, agreement: Agreement) -> str:
    """'' when a host that joins later (failover) matches the agreed toolchain, else why not."""
    if agreement.pin is not None and not (found.go and matches_pin(found.go, agreement.pin)):
        return f"{host}: {found} does not match {PIN_FILE} {agreement.pin}"
    others = {h: t for h, t in agreement.toolchains.items() if h != host}
    if others and _problems({**others, host: found}, None):
        agreed = ", ".join(sorted({str(t) for t in others.values()}))
        return f"{host}: {found} differs from the other hosts ({agreed})"
    return ""


Probe = Callable[[str], Awaitable[Toolchain]]
PROBE_TIMEOUT = 60.0  # seconds for `go version` on one host


@dataclass
class Gate:
    """The run's toolchain check: settled once before building, consulted by later hosts."""

    pin: str | None
    allow_drift: bool
    agreement: Agreement | None = None
    late_drift: list[str] = field(default_factory=list)  # hosts that joined later and differed

    async def settle(self, names: Sequence[str], probe: Probe) -> dict[str, str]:
        """Probe every host that will build, then agree or refuse; {host: why} for dead hosts.

        A host that cannot be reached or has no Go at all is left out as an infrastructure
        failure (its slices move), not counted as disagreeing.
        """
        found = await asyncio.gather(*(self._probe(name, probe) for name in names))
        usable = {n: tc for n, tc in zip(names, found, strict=True) if isinstance(tc, Toolchain)}
        down = {n: why for n, why in zip(names, found, strict=True) if isinstance(why, str)}
        self.agreement = check(usable, self.pin, allow_drift=self.allow_drift)
        return down

    @staticmethod
    async def _probe(name: str, probe: Probe) -> Toolchain | str:
        try:
            found = await wait_for(probe(name), PROBE_TIMEOUT)
        except (KdistError, OSError, asyncio.TimeoutError) as exc:
            return str(exc) or f"{name}: no answer to `go version` in {PROBE_TIMEOUT:g}s"
        return found if found.go else f"{name}: toolchain missing (no `go` on its PATH)"

    def admit(self, host: str, found: Toolchain) -> None:
        """A host that joins after the check (failover) must match; InfraError if it may not."""
        if self.agreement is None or host in self.agreement.toolchains:
            return
        why = admit(host, found, self.agreement)
        if not why:
            return
        if not self.allow_drift:
            raise InfraError(f"{why}; not used (pass --allow-toolchain-drift to use it)")
        self.late_drift.append(why)

    def as_dict(self) -> dict[str, Any]:
        """What the provenance records: the pin, each host's toolchain, any drift allowed."""
        agreement = self.agreement
        hosts = {} if agreement is None else agreement.toolchains
        return {
            "pin": self.pin,
            "hosts": {h: _toolchain_doc(t) for h, t in sorted(hosts.items())},
            "agreed": agreement is not None and agreement.agreed and not self.late_drift,
            "drift": [*(agreement.drift if agreement else ()), *self.late_drift],
            "driftAllowed": self.allow_drift,
        }


def _toolchain_doc(found: Toolchain) -> dict[str, str]:
    return {"go": found.go, **({"image": found.image} if found.image else {})}
