"""How long a slice takes on a host, learned from earlier runs: pure, deterministic.

Every finished build adds a sample to the history, keyed by (platform, host). A platform's
duration on a host is the median of its samples there; a pair never seen is the platform's
base duration times the host's speed factor, both fitted from every sample (a host new to the
farm gets its peers' median speed, 1.0); a platform never built anywhere is the median of the
platforms that were (DEFAULT_SECONDS without any history at all).
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from kdist.model import Limits

DEFAULT_SECONDS = 60.0  # a slice with no history anywhere: about a small Go project's build
KEEP = 20  # samples kept per (platform, host); older ones are forgotten
HEDGE_FACTOR = 1.5  # a build running this many times its estimate is a straggler
_FIT_ROUNDS = 8  # alternating fits of bases and speeds; converges long before this

Key = tuple[str, str]  # (platform "os/arch", host name)


@dataclass(frozen=True)
class History:
    """Seconds each (platform, host) pair took, oldest first, at most KEEP per pair."""

    samples: Mapping[Key, tuple[float, ...]] = field(default_factory=dict)

    def add(self, platform: str, host: str, seconds: float) -> History:
        """A history with one more sample (the oldest is dropped past KEEP)."""
        key = (platform, host)
        kept = (*self.samples.get(key, ()), round(seconds, 3))[-KEEP:]
        return History({**self.samples, key: kept})


@dataclass(frozen=True)
class Estimates:
    """Expected seconds per (platform, host), and when a running build becomes a straggler."""

    direct: Mapping[Key, tuple[float, ...]] = field(default_factory=dict)
    base: Mapping[str, float] = field(default_factory=dict)  # platform -> seconds at speed 1
    speed: Mapping[str, float] = field(default_factory=dict)  # host -> factor (2.0: half as fast)
    default: float = DEFAULT_SECONDS  # base of a platform never built
    margin: float = Limits.hedge_margin  # seconds past the estimate before it is a straggler
    typical: Mapping[Key, float] = field(default_factory=dict)  # the medians of `direct`, made once

    def seconds(self, platform: str, host: str) -> float:
        """The expected build time of `platform` on `host`."""
        typical = self.typical.get((platform, host))
        if typical is not None:
            return typical
        seen = self.direct.get((platform, host))
        if seen:
            return statistics.median(seen)
        return self.base.get(platform, self.default) * self.speed.get(host, 1.0)

    def straggling_after(self, platform: str, host: str) -> float:
        """Seconds after which a build is a straggler: max(1.5x estimate, p90, estimate + 5 s)."""
        estimate = self.seconds(platform, host)
        seen = self.direct.get((platform, host), ())
        return max(HEDGE_FACTOR * estimate, _p90(seen) if seen else 0.0, estimate + self.margin)

    def known(self, platform: str) -> bool:
        """True when some host has built `platform` before."""
        return platform in self.base


def learn(history: History) -> Estimates:
    """Fit per-platform base durations and per-host speed factors to the samples."""
    # A zero sample (a build faster than the clock) would divide by zero below.
    medians = {k: max(statistics.median(v), 0.001) for k, v in sorted(history.samples.items()) if v}
    if not medians:
        return Estimates()
    speed = dict.fromkeys(sorted({h for _, h in medians}), 1.0)
    base: dict[str, float] = {}
    for _ in range(_FIT_ROUNDS):
        base = _fit(((p, v / speed[h]) for (p, h), v in medians.items()))
        raw = _fit(((h, v / base[p]) for (p, h), v in medians.items()))
        # Speeds are relative: the middle host is 1.0, so a new host counts as a typical one.
        middle = statistics.median(raw.values())
        speed = {h: s / middle for h, s in raw.items()}
    base = _fit(((p, v / speed[h]) for (p, h), v in medians.items()))
    default = statistics.median(base.values())
    direct = {k: v for k, v in history.samples.items() if v}
    typical = {k: statistics.median(v) for k, v in direct.items()}
    return Estimates(direct=direct, base=base, speed=speed, default=default, typical=typical)


def _fit(pairs: Iterable[tuple[str, float]]) -> dict[str, float]:
    """The median value per name."""
    grouped: dict[str, list[float]] = {}
    for name, value in pairs:
        grouped.setdefault(name, []).append(value)
    return {name: statistics.median(values) for name, values in sorted(grouped.items())}


def _p90(values: tuple[float, ...]) -> float:
    """The 90th percentile (nearest rank), which is the maximum for fewer than ten samples."""
    ordered = sorted(values)
    return ordered[max(0, -(-9 * len(ordered) // 10) - 1)]
