"""Hosts during a run: a session per host (connect, lock, sync, once), the queue, exclusion.

Slices take host slots from one queue (queue.py) as slots free. A host that fails for
infrastructure reasons is left out for the rest of the run; its slices go back into the
queue and are placed on the hosts that are left, with the same rules as the plan.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import time
from collections.abc import Awaitable, Callable, Collection, Coroutine, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from kdist.engine import placement, plan
from kdist.engine.estimate import Estimates
from kdist.engine.queue import Clock, SliceQueue
from kdist.errors import InfraError, PlanError
from kdist.events import Estimate, HostSetup, Note, Reporter
from kdist.model import Host, Plan, Platform, Slice
from kdist.stages.build import Runner
from kdist.transport import Spawned, Transport


@dataclass
class HostSession:
    """One host's share of a run: its transport, its capacity gate, its one-time setup."""

    host: Host
    transport: Transport
    gate: asyncio.Semaphore
    env: Mapping[str, str]
    ready: asyncio.Task[None] | None = None
    lock: Spawned | None = None  # the host-side lock holder, released when the run ends
    toolchain: str = ""  # `go version` on the host, recorded with every slice it builds
    runner: Runner | None = None  # container builds; None: the host's own toolchain
    image: str = ""  # the id of the build image (container builds)
    image_name: str = ""  # its name, as the profile gives it (images of one name must agree)


Setup = Callable[[HostSession], Coroutine[Any, Any, None]]
Opener = Callable[[Host], Awaitable[Transport]]


@dataclass
class Scheduler:
    """Hands out host sessions and moves slices off hosts that failed."""

    hosts: Sequence[Host]
    natives: Mapping[str, tuple[Platform, ...]]
    request: plan.PlanRequest
    the_plan: Plan
    opener: Opener
    setup: Setup
    reporter: Reporter
    excluded: dict[str, str] = field(default_factory=dict)
    estimates: Estimates = field(default_factory=Estimates)
    hedge: bool = True  # twins for stragglers (--no-hedge: none)
    clock: Clock = time.monotonic
    go_versions: dict[str, str] = field(default_factory=dict)  # `go version` as the check heard it
    queue: SliceQueue = field(init=False)
    _sessions: dict[str, HostSession] = field(default_factory=dict)
    _opening: dict[str, asyncio.Task[HostSession]] = field(default_factory=dict)
    _load: dict[str, int] = field(default_factory=dict)
    _warming: list[asyncio.Task[Any]] = field(default_factory=list)

    def __post_init__(self) -> None:
        for s in self.the_plan.slices:
            self._load[s.host] = self._load.get(s.host, 0) + 1
        usable = [h for h in self.hosts if not self.request.pin or h.name == self.request.pin]
        rules = placement.Rules(
            tuple(usable), self.natives, self.estimates, cross=not self.request.native_only
        )
        platforms = [s.platform for s in self.the_plan.slices]
        self.queue = SliceQueue(rules, platforms, self.hedge, self.clock, self._estimate)
        self.queue.excluded.update(self.excluded)

    def warm(self, names: Collection[str]) -> None:
        """Set these hosts up now, all at once; the queue gives their slots out as each is ready.

        A setup that fails is left for the host's first attempt to find (and move from).
        """
        for name in names:
            if name in self.excluded:
                continue
            self.queue.setting_up.add(name)
            self.queue.warmed.add(name)
            self.reporter.emit(HostSetup(name))
            task = asyncio.ensure_future(self.session(name))
            task.add_done_callback(functools.partial(self._warmed, name=name))
            self._warming.append(task)

    def _warmed(self, task: asyncio.Future[HostSession], name: str) -> None:
        if not task.cancelled():
            task.exception()  # looked at here; the slice's own attempt reports it
        self.reporter.emit(HostSetup(name, done=True))
        self.queue.ready(name)

    def _estimate(self) -> None:
        """Tell the reporter when the run is now expected to end."""
        self.reporter.emit(Estimate(round(self.queue.remaining(), 3), time.time()))

    def slice_on(self, platform: Platform, name: str) -> Slice:
        """`platform`'s slice on host `name` (native or cross, as that host is)."""
        host = next(h for h in self.hosts if h.name == name)
        cross = platform not in self.natives.get(name, ())
        return plan.make_slice(platform, host, cross, self.request)

    async def session(self, name: str) -> HostSession:
        """The ready session of `name`: connected, locked and synced (each done once)."""
        if name in self.excluded:
            msg = f"{name}: left out of this run: {self.excluded[name]}"
            raise InfraError(msg)
        if name not in self._opening:
            self._opening[name] = asyncio.create_task(self._open(name))
        session = await asyncio.shield(self._opening[name])
        assert session.ready is not None
        await asyncio.shield(session.ready)
        return session

    async def _open(self, name: str) -> HostSession:
        host = next(h for h in self.hosts if h.name == name)
        transport = await self.opener(host)
        env = self.the_plan.env.get(name) or plan.build_env(host, self.request)
        session = HostSession(host, transport, asyncio.Semaphore(host.capacity), env)
        session.ready = asyncio.create_task(self.setup(session))
        self._sessions[name] = session
        return session

    def exclude(self, name: str, reason: str) -> None:
        """Leave `name` out for the rest of the run (said once)."""
        if name not in self.excluded:
            self.excluded[name] = reason
            self.queue.exclude(name)
            self.reporter.emit(
                Note(f"{name} left out for the rest of this run: {reason}", "warning")
            )

    def reassign(self, slc: Slice, avoid: Collection[str] = ()) -> Slice | None:
        """The same platform planned onto the least loaded host that is left; None if none is.

        Hosts in `avoid` are not chosen (a reproducibility rebuild needs a different host).
        """
        moved = self.candidate(slc, avoid)
        if moved is not None:
            self._load[moved.host] = self._load.get(moved.host, 0) + 1
        return moved

    def candidate(self, slc: Slice, avoid: Collection[str] = ()) -> Slice | None:
        """Where `reassign` would put the slice, without counting it."""
        alive = [h for h in self.hosts if h.name not in self.excluded and h.name not in avoid]
        if not alive:
            return None
        loads = {h.name: self._load.get(h.name, 0) for h in alive}
        ordered = sorted(alive, key=lambda h: (loads[h.name] / h.capacity, self.hosts.index(h)))
        # A second build for comparison may leave a --host pin: it must be another host.
        pin = None if avoid else self.request.pin
        single = dataclasses.replace(self.request, platforms=(slc.platform,), pin=pin)
        try:
            return plan.make_plan(ordered, self.natives, single).slices[0]
        except PlanError:
            return None  # e.g. --native-only and no native host is left

    async def release(self) -> None:
        """Stop host setups still running (an interrupted run), release every workdir lock."""
        pending: list[asyncio.Task[Any]] = [t for t in self._opening.values() if not t.done()]
        pending += [t for t in self._warming if not t.done()]
        pending += [s.ready for s in self._sessions.values() if s.ready and not s.ready.done()]
        for task in pending:
            task.cancel()
        # Awaited here, so none is left pending or with an exception nobody looked at.
        await asyncio.gather(*pending, return_exceptions=True)
        for session in self._sessions.values():
            if session.lock is not None:
                with contextlib.suppress(Exception):
                    await session.lock.close()
                session.lock = None
            if session.runner is not None:
                session.runner.close()

    def toolchain(self, name: str) -> str:
        """The toolchain a host reported ('' if it has no session)."""
        session = self._sessions.get(name)
        return session.toolchain if session else ""
