"""rsync carried in kdist's own process: byte-identical, concurrent on one connection, cancellable."""

from __future__ import annotations

import asyncio
import hashlib
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from kdist.config.inventory import load_inventory
from kdist.testing.devfarm import Farm
from kdist.transport import SshOptions, rsh
from kdist.transport.carrier import Handoff, Listener
from kdist.transport.ssh import SshTransport

pytestmark = pytest.mark.integration
MIB = 1 << 20


def _transport(farm: Farm, compress: bool = False) -> SshTransport:
    host = load_inventory(farm.inventory_path).host("h1")
    assert host is not None
    return SshTransport(host, SshOptions(compress=compress))


def _digests(folder: Path) -> dict[str, str]:
    return {
        str(path.relative_to(folder)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(folder.rglob("*"))
        if path.is_file()
    }


def _artifacts(folder: Path, sizes: list[int]) -> Path:
    folder.mkdir(parents=True)
    for index, size in enumerate(sizes):
        (folder / f"a{index}").write_bytes(os.urandom(size))
    return folder


def _descendants(pid: int) -> list[tuple[int, str]]:
    """(pid, command line) of every descendant of `pid`."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_bytes()
            except OSError:
                continue
            ppid = int(stat[stat.rfind(b")") + 2 :].split()[1])
            children.setdefault(ppid, []).append(int(entry.name))
    found, todo = [], list(children.get(pid, []))
    while todo:
        child = todo.pop()
        try:
            line = (Path("/proc") / str(child) / "cmdline").read_bytes().replace(b"\0", b" ")
        except OSError:
            continue
        found.append((child, line.decode(errors="replace")))
        todo.extend(children.get(child, []))
    return found


def _rsyncs_under(pid: int) -> list[str]:
    return [line for _, line in _descendants(pid) if "rsync" in line]


def test_carried_transfers_are_byte_identical(farm: Farm, tmp_path: Path) -> None:
    """A push and a pull through the carrier (empty, small and 24 MiB files) keep every byte."""
    src = _artifacts(tmp_path / "src", [0, 1, 4096, 24 * MIB + 7])
    remote = farm.host("h1").workdir / "carrier-identical"
    transport = _transport(farm)

    async def go() -> tuple[bool, bool]:
        await transport.connect()
        try:
            pushed = await transport.push(src, str(remote))
            pulled = await transport.pull(str(remote), tmp_path / "back")
            return pushed.ok, pulled.ok
        finally:
            await transport.close()

    assert asyncio.run(go()) == (True, True)
    assert _digests(remote) == _digests(src)
    assert _digests(tmp_path / "back") == _digests(src)


def test_concurrent_transfers_share_one_connection(farm: Farm, tmp_path: Path) -> None:
    """Six pulls at once over one connection: all intact, one login, no process but rsync."""
    sets = [
        _artifacts(farm.host("h1").workdir / f"carrier-set{i}", [3 * MIB + i]) for i in range(6)
    ]
    transport = _transport(farm)
    logins = farm.accepted_logins("h1")
    helpers: list[str] = []

    async def watch(done: asyncio.Event) -> None:
        while not done.is_set():  # what runs beside the rsyncs while they transfer
            running = [line for _, line in _descendants(os.getpid()) if "rsh.py" in line]
            helpers.extend(line for line in running if not line.startswith("rsync"))
            await asyncio.sleep(0.01)

    async def go() -> list[bool]:
        await transport.connect()
        done = asyncio.Event()
        watcher = asyncio.create_task(watch(done))
        try:
            pulls = [transport.pull(str(s), tmp_path / s.name) for s in sets]
            return [r.ok for r in await asyncio.gather(*pulls)]
        finally:
            done.set()
            await watcher
            await transport.close()

    assert asyncio.run(go()) == [True] * 6
    for s in sets:
        assert _digests(tmp_path / s.name) == _digests(s)
    assert farm.accepted_logins("h1") == logins + 1
    # A helper lives only while it hands its pipes over (milliseconds), never for a transfer:
    # seen at most a few times, not in every sample of a transfer that takes a while.
    assert len(helpers) <= 6 * 10, helpers[:3]


def test_a_cancelled_pull_leaves_no_process(farm: Farm, tmp_path: Path) -> None:
    """Cancelling a pull mid-transfer stops rsync here and rsync on the host; nothing lingers."""
    big = _artifacts(farm.host("h1").workdir / "carrier-big", [96 * MIB])
    transport = _transport(farm)
    sshd = int(farm.host("h1").pidfile.read_text())

    async def go() -> None:
        await transport.connect()
        started = asyncio.Event()

        def moved(count: int) -> None:
            if count > MIB:  # the host's rsync is sending: both ends run
                started.set()

        task = asyncio.create_task(transport.pull(str(big), tmp_path / "back", progress=moved))
        try:
            await asyncio.wait_for(started.wait(), 60)
            assert _rsyncs_under(os.getpid()) and _rsyncs_under(sshd)  # both ends are running
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
        finally:
            await transport.close()

    asyncio.run(go())
    deadline = time.monotonic() + 15
    while (_rsyncs_under(os.getpid()) or _rsyncs_under(sshd)) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _rsyncs_under(os.getpid()) == []
    assert _rsyncs_under(sshd) == []


def test_the_helper_hands_its_pipes_over_and_exits(tmp_path: Path) -> None:
    """rsh.py passes its stdin/stdout to the listener and exits 0; bytes still flow after it."""
    received: list[Handoff] = []
    taken = asyncio.Event()
    release = asyncio.Event()

    async def serve(handoff: Handoff) -> None:
        received.append(handoff)
        taken.set()
        await release.wait()

    async def go() -> tuple[int, bytes, Handoff]:
        listener = Listener(str(tmp_path / "s"), serve)
        listener.start()
        helper = subprocess.Popen(
            [sys.executable, "-I", rsh.__file__, str(tmp_path / "s"), "kdist", "rsync", "--server"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, env={rsh.TRANSFER_ENV: "t9"},
        )  # fmt: skip
        try:
            code = await asyncio.to_thread(helper.wait, 30)  # gone while the session is held
            await asyncio.wait_for(taken.wait(), 5)
            handoff = received[0]
            os.write(handoff.reads, b"from the host")  # what rsync would read
            received.pop().close()  # both ends: the helper's stdout sees EOF
            assert helper.stdout is not None
            data = await asyncio.to_thread(helper.stdout.read)
            return code, data, handoff
        finally:
            release.set()
            for item in received:
                item.close()
            await listener.close()
            helper.kill()
            helper.wait()
            for pipe in (helper.stdin, helper.stdout):
                if pipe is not None:
                    pipe.close()

    code, data, handoff = asyncio.run(go())
    assert code == 0
    assert data == b"from the host"
    assert (handoff.command, handoff.transfer) == ("rsync --server", "t9")
