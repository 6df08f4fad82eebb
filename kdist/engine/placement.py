"""Dynamic placement: one queue of slices, longest first, taken by host slots as they free.

The same rule places slices during a run (scheduler.py, on the real clock) and in the plan
(`simulate`, on an estimated clock), so `-n` shows what a run will do when the estimates hold:

- the queue is ordered longest-first (LPT) by each platform's estimated time on its best host;
  ties go to the platform with the fewest native hosts, then to the requested order;
- a free slot takes the first queued slice it may build: on a native host when one of them is
  free; a cross-compile only when the policy allows it (not --native-only) and it finishes
  before the earliest a busy native host could (or the platform has no native host left);
- among free hosts, the one where the slice ends first wins, then the least busy, then
  inventory order.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field

from kdist.engine.estimate import Estimates
from kdist.errors import PlanError
from kdist.model import Host, Platform

OVERDUE = 0.001  # seconds a build past its estimate is still expected to take

Avoid = Mapping[Platform, Collection[str]]  # hosts a slice must not go to (failed, its twin's)


@dataclass(frozen=True)
class Rules:
    """Who may build what, and how long it takes."""

    hosts: tuple[Host, ...]  # inventory order
    natives: Mapping[str, tuple[Platform, ...]]
    estimates: Estimates = field(default_factory=Estimates)
    cross: bool = True  # False: --native-only

    def native(self, platform: Platform, host: str) -> bool:
        """True when `host` builds `platform` natively."""
        return platform in self.natives.get(host, ())

    def seconds(self, platform: Platform, host: str) -> float:
        """The estimated build time of `platform` on `host`."""
        return self.estimates.seconds(str(platform), host)

    def eligible(self, platform: Platform, alive: Collection[str], avoid: Avoid) -> list[str]:
        """Hosts that may build `platform` (alive, not avoided; natives only unless cross)."""
        shunned = avoid.get(platform, ())
        names = [h.name for h in self.hosts if h.name in alive and h.name not in shunned]
        natives = [n for n in names if self.native(platform, n)]
        return names if self.cross or not names else natives

    def order(self, platforms: Sequence[Platform]) -> list[Platform]:
        """The queue: longest first on its best host, then most constrained, then as asked."""
        every = [h.name for h in self.hosts]

        def key(p: Platform) -> tuple[float, float, int]:
            natives = [n for n in every if self.native(p, n)]
            best = min(self.seconds(p, n) for n in natives or every)
            return (-best, len(natives) or math.inf, platforms.index(p))

        return sorted(platforms, key=key)


@dataclass
class Slots:
    """The hosts' state at one moment: idle slots, and when busy slots expect to be done."""

    free: dict[str, int]
    ends: dict[str, list[float]]

    def available(self, host: str, now: float) -> float:
        """When `host` can next start a build (now, when a slot is idle)."""
        if self.free.get(host, 0) > 0:
            return now
        return max(now, min(self.ends.get(host) or [now]))


def choose(
    rules: Rules,
    waiting: Sequence[Platform],
    now: float,
    slots: Slots,
    alive: Collection[str],
    avoid: Avoid | None = None,
) -> list[tuple[Platform, str]]:
    """Which waiting slices start now, and where (`waiting` in queue order; `slots` is updated)."""
    avoid = avoid or {}
    capacity = {h.name: h.capacity for h in rules.hosts}
    index = {h.name: i for i, h in enumerate(rules.hosts)}
    # Only idle hosts are looked at per slice: a farm of hundreds is mostly busy or mostly
    # idle, and either way this stays small where it matters.
    idle_all = [h.name for h in rules.hosts if h.name in alive and slots.free.get(h.name, 0) > 0]
    started = []
    for platform in waiting:
        if not idle_all:
            break
        shunned = avoid.get(platform, ())
        native_idle = [n for n in idle_all if n not in shunned and rules.native(platform, n)]
        idle = native_idle or ([n for n in idle_all if n not in shunned] if rules.cross else [])
        if not idle:
            continue

        def rank(n: str, p: Platform = platform) -> tuple[float, float, int]:
            busy = 1 - slots.free[n] / max(capacity.get(n, 1), 1)
            return (now + rules.seconds(p, n), busy, index[n])

        host = min(idle, key=rank)
        if not native_idle:
            eligible = rules.eligible(platform, alive, avoid)
            natives = [n for n in eligible if rules.native(platform, n)]
            waits = [slots.available(n, now) + rules.seconds(platform, n) for n in natives]
            if waits and rank(host)[0] >= min(waits):
                continue  # a native host frees soon enough: crossing would not shorten anything
        slots.free[host] -= 1
        if slots.free[host] == 0:
            idle_all.remove(host)
        slots.ends.setdefault(host, []).append(now + rules.seconds(platform, host))
        started.append((platform, host))
    return started


@dataclass(frozen=True)
class Timed:
    """One slice as the plan expects it to run: where, from when to when (seconds from start)."""

    platform: Platform
    host: str
    cross: bool
    start: float
    end: float
    slot: int  # which of the host's slots


def simulate(
    rules: Rules,
    platforms: Sequence[Platform],
    now: float = 0.0,
    busy: Sequence[tuple[str, float]] = (),
    alive: Collection[str] | None = None,
) -> list[Timed]:
    """Run the placement rule on the estimated clock: every slice with its host and times.

    `busy` lists builds already running, as (host, expected end); `alive` the usable hosts.
    """
    waiting = rules.order(platforms)
    alive = {h.name for h in rules.hosts} if alive is None else set(alive)
    hosts = [h for h in rules.hosts if h.name in alive]
    slots = Slots({h.name: h.capacity for h in hosts}, {})
    slot_free = {h.name: [now] * h.capacity for h in hosts}
    for host, end in busy:
        if slots.free.get(host, 0) > 0:
            # A build past its estimate is expected any moment now (it has not ended yet).
            end = max(end, now + OVERDUE)
            slots.free[host] -= 1
            slots.ends.setdefault(host, []).append(end)
            slot_free[host][slots.free[host]] = end
    placed: list[Timed] = []
    while waiting:
        for platform, host in choose(rules, waiting, now, slots, alive):
            slot = next(i for i, t in enumerate(slot_free[host]) if t <= now)
            end = now + rules.seconds(platform, host)
            slot_free[host][slot] = end
            placed.append(Timed(platform, host, not rules.native(platform, host), now, end, slot))
            waiting.remove(platform)
        later = [t for ends in slots.ends.values() for t in ends if t > now]
        if waiting and not later:
            msg = f"{waiting[0]}: no host may build it"
            raise PlanError(msg)
        now = min(later, default=now)
        for host, ends in slots.ends.items():
            slots.free[host] += sum(t <= now for t in ends)
            ends[:] = [t for t in ends if t > now]
    return placed


def critical_path(placed: Sequence[Timed]) -> list[Timed]:
    """The slices of the slot that finishes last, in order: what decides the makespan."""
    if not placed:
        return []
    last = max(placed, key=lambda t: (t.end, -placed.index(t)))
    chain = [t for t in placed if (t.host, t.slot) == (last.host, last.slot)]
    return sorted(chain, key=lambda t: t.start)
