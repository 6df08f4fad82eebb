"""Toolchain agreement: every building host has the Go (and build image) the project expects.

The reference is the project's pin (`.go-version` at its root, e.g. `1.22.4`, which Go
versions `go1.22.4` match; a pin `1.22` matches any 1.22.x) when there is one; the hosts
must then also agree with each other. A disagreement is refused before anything builds,
naming every host and what it has, unless the user allows drift; then it is recorded.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from kdist.errors import ConfigError

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
    seen = {str(tc) for tc in toolchains.values()}
    if len(seen) > 1:
        each = ", ".join(f"{host} {tc}" for host, tc in sorted(toolchains.items()))
        lines.append(f"hosts differ: {each}")
    return lines


def admit(host: str, found: Toolchain, agreement: Agreement) -> str:
    """'' when a host that joins later (failover) matches the agreed toolchain, else why not."""
    if agreement.pin is not None and not (found.go and matches_pin(found.go, agreement.pin)):
        return f"{host}: {found} does not match {PIN_FILE} {agreement.pin}"
    others = sorted({str(t) for h, t in agreement.toolchains.items() if h != host})
    if others and str(found) not in others:
        return f"{host}: {found} differs from the other hosts ({', '.join(others)})"
    return ""
