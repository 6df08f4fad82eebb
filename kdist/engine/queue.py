"""The run's one queue of slices: host slots take slices as they free, stragglers get twins.

A slice task asks for a slot (`acquire`) and gives it back when its attempt ends (`release`);
the placement rule (placement.py) decides who gets which slot, on the real clock. A build
that runs past max(1.5x its estimate, the p90 of its history) while a slot it may use is
idle is a straggler: `twin` hands that slot to the slice task, which starts a second build.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field

from kdist.engine import placement
from kdist.errors import PlanError
from kdist.model import Platform

Clock = Callable[[], float]


@dataclass
class _Running:
    platform: Platform
    host: str
    since: float  # when its build started (when the slot was granted, until then)


@dataclass
class _Waiting:
    future: asyncio.Future[str | None]
    avoid: frozenset[str]


@dataclass
class _Straggler:
    future: asyncio.Future[str]
    running: _Running


@dataclass
class SliceQueue:
    """Slots per host, the slices waiting for one, and the builds running in them."""

    rules: placement.Rules
    platforms: Sequence[Platform]  # every slice of the run (the LPT order is taken over them)
    hedge: bool = True
    clock: Clock = time.monotonic
    on_change: Callable[[], None] = lambda: None  # the estimate of the end may have moved
    excluded: set[str] = field(default_factory=set)
    # Hosts being set up (connect, lock, sync): their slots free once that is done, so the
    # first host ready takes the longest slice rather than the first in the inventory. While
    # any is, hosts never set up wait too (they would need a setup of their own first).
    setting_up: set[str] = field(default_factory=set)
    warmed: set[str] = field(default_factory=set)  # hosts set up at the start of the run
    _waiting: dict[Platform, _Waiting] = field(default_factory=dict)
    _running: list[_Running] = field(default_factory=list)
    _stragglers: dict[Platform, _Straggler] = field(default_factory=dict)
    _rank: dict[Platform, int] = field(default_factory=dict)
    hedged_after: dict[Platform, float] = field(default_factory=dict)  # the straggler's time
    _soon: bool = False  # a dispatch is scheduled for the next turn of the loop

    def __post_init__(self) -> None:
        self._rank = {p: i for i, p in enumerate(self.rules.order(self.platforms))}

    async def acquire(self, platform: Platform, avoid: Collection[str] = ()) -> str | None:
        """Wait for a slot that may build `platform`; its host, or None when none is left."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[str | None] = loop.create_future()
        self._waiting[platform] = _Waiting(future, frozenset(avoid))
        # Soon, not now: every slice task of the run asks in the same turn of the loop, and
        # the longest of them must be first in line, not whichever asked first.
        if not self._soon:
            self._soon = True
            loop.call_soon(self._dispatch_soon)
        try:
            return await future
        except asyncio.CancelledError:
            self._waiting.pop(platform, None)
            if future.done() and not future.cancelled() and future.result() is not None:
                self.release(platform, future.result() or "")  # granted just as we were stopped
            raise

    def _dispatch_soon(self) -> None:
        self._soon = False
        self.dispatch()

    def building(self, platform: Platform, host: str) -> None:
        """The build itself started (setup is done): its estimate counts from now."""
        for run in self._running:
            if (run.platform, run.host) == (platform, host):
                run.since = self.clock()
                self._wake_at(run)
        self.on_change()

    def release(self, platform: Platform, host: str) -> None:
        """The attempt of `platform` on `host` ended: its slot is free again."""
        for run in self._running:
            if (run.platform, run.host) == (platform, host):
                self._running.remove(run)
                break
        self.dispatch()

    def elapsed(self, platform: Platform, host: str) -> float:
        """Seconds the build of `platform` on `host` has been running (0.0 when it is not)."""
        for run in self._running:
            if (run.platform, run.host) == (platform, host):
                return self.clock() - run.since
        return 0.0

    async def twin(self, platform: Platform, host: str) -> str:
        """Wait until the build on `host` is a straggler and a slot is idle: the twin's host.

        The slot is the twin's from then on; cancelling this wait gives it up.
        """
        future: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        run = next((r for r in self._running if (r.platform, r.host) == (platform, host)), None)
        if run is None:  # that attempt is over already: no twin, ever (the race cancels this)
            return await future
        self._stragglers[platform] = _Straggler(future, run)
        self._wake_at(run)
        try:
            return await future
        except asyncio.CancelledError:
            if future.done() and not future.cancelled():
                self.release(platform, future.result())  # granted just as we were stopped
            raise
        finally:
            self._stragglers.pop(platform, None)

    def ready(self, host: str) -> None:
        """`host` finished its setup (or failed it, which its first attempt will find)."""
        self.setting_up.discard(host)
        self.dispatch()

    def exclude(self, host: str) -> None:
        """`host` takes no more slices (it failed); waiting slices are placed again."""
        self.excluded.add(host)
        self.dispatch()

    def dispatch(self) -> None:
        """Give idle slots to waiting slices (queue order), then to stragglers' twins."""
        now, alive = self.clock(), self._alive()
        for platform, wait in list(self._waiting.items()):
            if not self.rules.eligible(platform, alive, {platform: wait.avoid}):
                self._grant(platform, None)  # nobody is left who may build it
        slots = self._slots(now)
        waiting = sorted(self._waiting, key=self._rank.__getitem__)
        avoid = {p: w.avoid for p, w in self._waiting.items()}
        for platform, host in placement.choose(self.rules, waiting, now, slots, alive, avoid):
            self._grant(platform, host)
        if self.hedge:
            self._twins(now, slots, alive)
        self.on_change()

    def remaining(self) -> float:
        """Estimated seconds until every slice in the queue or running is built."""
        now, alive = self.clock(), self._alive()
        busy = [(r.host, self._expected_end(r, now)) for r in self._running]
        waiting = [p for p in self._waiting if self.rules.eligible(p, alive, {})]
        try:
            placed = placement.simulate(self.rules, waiting, now, busy, alive)
        except PlanError:
            placed = []
        ends = [max(end, now) for _, end in busy] + [t.end for t in placed]
        return max(ends, default=now) - now

    def _expected_end(self, run: _Running, now: float) -> float:
        """When a running build should end; one past its estimate may take as long again.

        Until it straggles it is expected any moment; after that its twin (or itself) may
        need a whole estimate more, which is what the ETA then says rather than zero.
        """
        end = run.since + self._seconds(run)
        if end > now:
            return end
        due = run.since + self.rules.estimates.straggling_after(str(run.platform), run.host)
        return due if due > now else now + self._seconds(run)

    def _twins(self, now: float, slots: placement.Slots, alive: set[str]) -> None:
        for platform, lag in sorted(self._stragglers.items(), key=lambda i: i[1].running.since):
            run = lag.running
            due = self.rules.estimates.straggling_after(str(platform), run.host)
            if lag.future.done() or run not in self._running or now - run.since < due:
                continue
            if not self.rules.estimates.known(str(platform)):
                continue  # never built before: its estimate is the default, a guess
            busy = {r.host for r in self._running if r.platform == platform}
            names = self.rules.eligible(platform, alive, {platform: busy})
            idle = [n for n in names if slots.free.get(n, 0) > 0]
            if not idle:
                continue
            natives = [n for n in idle if self.rules.native(platform, n)]
            host = min(
                natives or idle, key=lambda n: (self.rules.seconds(platform, n), names.index(n))
            )
            slots.free[host] -= 1
            self._running.append(_Running(platform, host, now))
            self.hedged_after[platform] = round(now - run.since, 3)
            lag.future.set_result(host)

    def _grant(self, platform: Platform, host: str | None) -> None:
        wait = self._waiting.pop(platform)
        if wait.future.done():
            return  # its task was stopped while it waited: the slot stays free
        if host is not None:
            self._running.append(_Running(platform, host, self.clock()))
        wait.future.set_result(host)

    def _slots(self, now: float) -> placement.Slots:
        free = {h.name: h.capacity for h in self.rules.hosts if h.name not in self.excluded}
        if self.setting_up:
            for host in free:
                if host in self.setting_up or host not in self.warmed:
                    free[host] = 0  # not yet: set-up hosts first, each as it is ready
        ends: dict[str, list[float]] = {}
        for run in self._running:
            if run.host in free:
                free[run.host] -= 1
                ends.setdefault(run.host, []).append(max(run.since + self._seconds(run), now))
        return placement.Slots({h: max(n, 0) for h, n in free.items()}, ends)

    def _seconds(self, run: _Running) -> float:
        return self.rules.seconds(run.platform, run.host)

    def _alive(self) -> set[str]:
        return {h.name for h in self.rules.hosts if h.name not in self.excluded}

    def _wake_at(self, run: _Running) -> None:
        """Look again when this build becomes a straggler (a timer, so nobody polls)."""
        if not self.hedge or run.platform not in self._stragglers:
            return
        due = self.rules.estimates.straggling_after(str(run.platform), run.host)
        delay = max(run.since + due - self.clock(), 0.0)
        asyncio.get_running_loop().call_later(delay + 0.01, self.dispatch)
