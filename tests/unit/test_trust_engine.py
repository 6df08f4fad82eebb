"""The engine side of release trust: sampling, the toolchain gate, build records in the journal."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from kdist.config.profile import parse_profile
from kdist.engine import reproduce, toolchain
from kdist.engine.journal import Journal, JournalEntry
from kdist.errors import ConfigError, InfraError, KdistError, ProfileError
from kdist.model import (
    REPRODUCE_ALL,
    Artifact,
    BuildRecord,
    Platform,
    Slice,
)

AMD64, ARM64, S390X = Platform("linux", "amd64"), Platform("linux", "arm64"), Platform("linux", "s390x")


def _slice(platform: Platform, host: str = "h1") -> Slice:
    return Slice(platform, host, False, "/w", ("make",), "out")


def test_sample_takes_the_asked_number_reproducibly() -> None:
    """The same seed picks the same platforms; `all` picks every one; 0 picks none."""
    slices = [_slice(p) for p in (AMD64, ARM64, S390X)]
    anywhere = lambda s: s  # noqa: E731  # every slice has a second host
    one = reproduce.sample(slices, 1, "run-1", anywhere)
    assert len(one) == 1 and one == reproduce.sample(slices, 1, "run-1", anywhere)
    assert reproduce.sample(slices, REPRODUCE_ALL, "x", anywhere) == {AMD64, ARM64, S390X}
    assert reproduce.sample(slices, 0, "x", anywhere) == frozenset()


def test_sample_refuses_more_than_can_be_rebuilt_elsewhere() -> None:
    """A platform with no second eligible host cannot be checked: exit 2 naming it."""
    slices = [_slice(AMD64), _slice(S390X)]
    only_amd64 = lambda s: s if s.platform == AMD64 else None  # noqa: E731
    assert reproduce.sample(slices, 1, "x", only_amd64) == {AMD64}
    with pytest.raises(ConfigError, match="none for: linux/s390x"):
        reproduce.sample(slices, REPRODUCE_ALL, "x", only_amd64)


def _run(gate: toolchain.Gate, found: dict[str, str | Exception]) -> dict[str, str]:
    async def probe(name: str) -> toolchain.Toolchain:
        value = found[name]
        if isinstance(value, Exception):
            raise value
        return toolchain.Toolchain(value)

    return asyncio.run(gate.settle(list(found), probe))


def test_gate_leaves_out_dead_hosts_and_hosts_without_go() -> None:
    """Unreachable hosts and hosts with no Go are infrastructure failures, not disagreements."""
    gate = toolchain.Gate(None, allow_drift=False)
    down = _run(gate, {"h1": "go1.27.3", "h2": KdistError("h2: unreachable"), "h3": ""})
    assert set(down) == {"h2", "h3"} and "toolchain missing" in down["h3"]
    assert gate.agreement is not None and gate.agreement.agreed


def test_gate_refuses_a_later_host_that_differs_unless_drift_is_allowed() -> None:
    """A failover host with another Go is refused as an infrastructure failure, or recorded."""
    strict = toolchain.Gate(None, allow_drift=False)
    _run(strict, {"h1": "go1.27.3"})
    with pytest.raises(InfraError, match=r"h9: go1\.21\.13 differs"):
        strict.admit("h9", toolchain.Toolchain("go1.21.13"))
    lenient = toolchain.Gate(None, allow_drift=True)
    _run(lenient, {"h1": "go1.27.3"})
    lenient.admit("h9", toolchain.Toolchain("go1.21.13"))
    doc = lenient.as_dict()
    assert doc["agreed"] is False and any("h9" in line for line in doc["drift"])


def test_build_record_survives_the_journal(tmp_path: Path) -> None:
    """A reused slice keeps the record (host, key fingerprint, times) of the build that made it."""
    record = BuildRecord("r-linux-amd64-1", "h1", "10.0.0.1", 22, "SHA256:abc", "go1.27.3",
                         ("make", "x"), {"A": "1"}, "/w", False, 1.0, 2.0)  # fmt: skip
    journal = Journal(tmp_path)
    entry = JournalEntry("key", "h1", "go version go1.27.3", "make x",
                         (Artifact("bin/x", "ab" * 32, 3),), record=record)  # fmt: skip
    journal.record(AMD64, entry)
    assert Journal(tmp_path).entries["linux/amd64"].record == record


def test_profile_smoke_template_takes_bin() -> None:
    """`smoke:` is an argv template with {bin}; other placeholders are refused."""
    base = {"name": "p", "build": "make", "artifacts": "out", "platforms": ["linux/amd64"]}
    profile = parse_profile({**base, "smoke": "{bin} --version"}, "kdist.yaml")
    assert profile.smoke == ("{bin}", "--version")
    with pytest.raises(ProfileError, match="unknown placeholder"):
        parse_profile({**base, "smoke": "{binary} --version"}, "kdist.yaml")
