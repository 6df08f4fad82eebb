"""The transport contract, run against the local transport and against real sshd hosts."""

from __future__ import annotations

import asyncio
import re
import subprocess
import time
from collections.abc import Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

from kdist.config.inventory import load_inventory
from kdist.errors import (
    CommandTimeout,
    ConnectError,
    ConnectionLost,
    HeadNodeError,
    OutputTooLarge,
)
from kdist.model import LOCAL_HOST, CommandResult, Host, Limits
from kdist.testing.devfarm import DEFAULT_PORT, Farm
from kdist.transport import STDERR_KEPT, SshOptions, Transport, open_transport

pytestmark = pytest.mark.integration
T = TypeVar("T")


def _farm_host(farm: Farm, name: str) -> Host:
    host = load_inventory(farm.inventory_path).host(name)
    assert host is not None
    return host


@pytest.fixture(params=["local", "ssh"])
def transport(request: pytest.FixtureRequest, farm: Farm) -> Iterator[Transport]:
    """A connected transport of each kind (the contract must hold for both)."""
    host = LOCAL_HOST if request.param == "local" else _farm_host(farm, "h1")
    opened = open_transport(host)
    asyncio.run(opened.connect()) if request.param == "local" else None
    yield opened


def _run(coro_factory: Callable[[], Coroutine[Any, Any, T]]) -> T:
    return asyncio.run(coro_factory())


def test_run_streams_output_and_keeps_exit_code(transport: Transport, tmp_path: Path) -> None:
    """run() returns the exit code as data and streams every line, stdout and stderr merged."""
    lines: list[str] = []

    async def go():  # type: ignore[no-untyped-def]
        await transport.connect()
        try:
            return await transport.run(
                ["sh", "-c", "echo one; echo two >&2; exit 3"], sink=lines.append
            )
        finally:
            await transport.close()

    result = _run(go)
    assert result.returncode == 3
    assert lines == ["one", "two"]


def test_a_flood_stops_at_max_output_and_a_long_line_is_cut(transport: Transport) -> None:
    """max_output stops a command that never ends; a 4 MB line arrives cut to the line limit."""
    lines: list[str] = []

    async def go() -> None:
        await transport.connect()
        try:
            with pytest.raises(OutputTooLarge, match="printed more than 1048576 characters"):
                await transport.run(["yes", "spam"], max_output=1 << 20)
            long = "head -c 4194304 /dev/zero | tr '\\0' x; echo; echo done"
            done = await transport.run(["sh", "-c", long], sink=lines.append)
            assert done.ok
        finally:
            await transport.close()

    start = time.monotonic()
    _run(go)
    assert time.monotonic() - start < 60
    assert lines[-1] == "done" and len(lines) == 2
    assert lines[0].endswith(
        f"[kdist: {4194304 - Limits().line_limit} more characters of this line dropped]"
    )


def test_stdout_only_keeps_stderr_apart(transport: Transport) -> None:
    """Output kdist parses comes from stdout alone; stderr (a login shell's noise) is kept apart."""
    script = "echo noise >&2; echo data; head -c 200000 /dev/zero | tr '\\0' e >&2; echo more"

    async def go() -> tuple[CommandResult, CommandResult]:
        await transport.connect()
        try:
            apart = await transport.run(["sh", "-c", script], stdout_only=True, max_output=1 << 20)
            merged = await transport.run(["sh", "-c", "echo noise >&2; echo data"])
            return apart, merged
        finally:
            await transport.close()

    apart, merged = _run(go)
    assert apart.ok and apart.stdout.splitlines() == ["data", "more"]
    assert apart.stderr.startswith("e") and len(apart.stderr) <= STDERR_KEPT  # its end, bounded
    assert "noise" in merged.stdout and "data" in merged.stdout  # merged, as a terminal shows


def test_cwd_env_and_stdin_arrive_literally(transport: Transport, tmp_path: Path) -> None:
    """Working directory, environment values and stdin with shell metacharacters arrive unchanged."""
    odd = tmp_path / "dir with 'quotes' and $(x)"
    odd.mkdir()
    value = "a b;c $(rm -rf /) 'q' \"d\""

    async def go():  # type: ignore[no-untyped-def]
        await transport.connect()
        try:
            here = await transport.run(["pwd"], cwd=str(odd))
            env = await transport.run(["printenv", "KDIST_T"], env={"KDIST_T": value})
            cat = await transport.run(["cat"], stdin="line1\nline2\n")
            return here, env, cat
        finally:
            await transport.close()

    here, env, cat = _run(go)
    assert here.stdout == str(odd)
    assert env.stdout == value
    assert cat.stdout == "line1\nline2"


def test_push_then_pull_round_trip(transport: Transport, tmp_path: Path) -> None:
    """push mirrors a tree (excluding _output/ and .git/, deleting extras) and pull brings files back."""
    src = tmp_path / "src"
    (src / "pkg").mkdir(parents=True)
    (src / "pkg/a.go").write_text("package a\n")
    (src / "_output").mkdir()
    (src / "_output/junk").write_text("x")
    (src / ".git").mkdir()
    (src / ".git/HEAD").write_text("ref")
    dest = tmp_path / "remote tree"
    back = tmp_path / "back"
    back.mkdir()

    async def go():  # type: ignore[no-untyped-def]
        await transport.connect()
        try:
            dest.mkdir()
            (dest / "stale.txt").write_text("old")
            pushed = await transport.push(src, str(dest))
            pulled = await transport.pull(str(dest / "pkg"), back)
            return pushed, pulled
        finally:
            await transport.close()

    pushed, pulled = _run(go)
    assert pushed.ok and pulled.ok, (pushed, pulled)
    assert (dest / "pkg/a.go").read_text() == "package a\n"
    assert not (dest / "_output").exists() and not (dest / ".git").exists()
    assert not (dest / "stale.txt").exists()
    assert (back / "a.go").read_text() == "package a\n"


def test_pull_skips_symlinks_and_fifos(transport: Transport, tmp_path: Path) -> None:
    """pull copies regular files only: a symlink to /etc/passwd or a FIFO never arrives."""
    import os

    remote = tmp_path / "artifacts"
    remote.mkdir()
    (remote / "ok").write_bytes(b"\x7fELF")
    (remote / "passwd").symlink_to("/etc/passwd")
    os.mkfifo(remote / "fifo")
    back = tmp_path / "back"
    back.mkdir()

    async def go():  # type: ignore[no-untyped-def]
        await transport.connect()
        try:
            return await transport.pull(str(remote), back)
        finally:
            await transport.close()

    _run(go)
    assert sorted(p.name for p in back.iterdir()) == ["ok"]


def test_pull_only_brings_the_names_asked_for(transport: Transport, tmp_path: Path) -> None:
    """pull(only=...) asks for those names alone: a file added after the listing never comes."""
    remote = tmp_path / "artifacts"
    remote.mkdir()
    odd = "two words\nand a newline"
    for name in ("listed", odd, "added-later", "-looks-like-an-option"):
        (remote / name).write_bytes(name.encode())
    back = tmp_path / "back"
    back.mkdir()

    async def go() -> None:
        await transport.connect()
        try:
            done = await transport.pull(
                str(remote), back, only=["listed", odd, "-looks-like-an-option"]
            )
            assert done.ok, done.stdout
        finally:
            await transport.close()

    _run(go)
    assert sorted(p.name for p in back.iterdir()) == sorted(
        ["listed", odd, "-looks-like-an-option"]
    )


def test_one_connection_carries_commands_and_rsync(farm: Farm, tmp_path: Path) -> None:
    """Many commands plus push and pull over SshTransport cost exactly one sshd login."""
    host = _farm_host(farm, "h2")
    before = farm.accepted_logins("h2")
    src = tmp_path / "src"
    src.mkdir()
    (src / "f").write_text("x")

    async def go() -> None:
        transport = open_transport(host)
        await transport.connect()
        try:
            await asyncio.gather(*(transport.run(["true"]) for _ in range(8)))
            await transport.push(src, str(tmp_path / "d"))
            await transport.pull(str(tmp_path / "d"), tmp_path)
        finally:
            await transport.close()

    asyncio.run(go())
    assert farm.accepted_logins("h2") - before == 1


def test_push_and_pull_report_the_bytes_they_move(farm: Farm, tmp_path: Path) -> None:
    """Over SSH, push and pull tell their progress callback the bytes moved, rising to the total."""
    host = _farm_host(farm, "h3")
    src = tmp_path / "src"
    src.mkdir()
    (src / "blob").write_bytes(bytes(range(256)) * 4096)  # 1 MiB that does not compress
    pushed: list[int] = []
    pulled: list[int] = []

    async def go() -> None:
        transport = open_transport(host)
        await transport.connect()
        try:
            await transport.push(src, str(tmp_path / "d"), progress=pushed.append)
            await transport.pull(str(tmp_path / "d"), tmp_path / "back", progress=pulled.append)
        finally:
            await transport.close()

    asyncio.run(go())
    for counts in (pushed, pulled):
        assert counts == sorted(counts)
        assert counts[-1] > 1 << 20  # the file plus rsync's own protocol
    assert (tmp_path / "back/blob").read_bytes() == (src / "blob").read_bytes()


def test_changed_host_key_is_refused(tmp_path: Path) -> None:
    """A host whose key is not the one in known_hosts is refused, naming the host."""
    with Farm(tmp_path / "farm", 1, first_address=91) as solo:
        solo.rekey_host("h1")
        host = _farm_host(solo, "h1")

        async def go() -> None:
            await open_transport(host).connect()

        with pytest.raises(ConnectError, match=r"h1 .*host key"):
            asyncio.run(go())


def test_missing_known_hosts_is_refused(farm: Farm, tmp_path: Path) -> None:
    """Without a known_hosts file there is nothing to verify against, so kdist refuses to connect."""
    from dataclasses import replace

    host = replace(_farm_host(farm, "h1"), known_hosts=(tmp_path / "nope",))
    with pytest.raises(ConnectError, match="known_hosts"):
        asyncio.run(open_transport(host).connect())


def test_unreachable_host_fails_fast(tmp_path: Path) -> None:
    """A loopback address with nothing listening is reported unreachable, naming the host."""
    kh = tmp_path / "known_hosts"
    kh.write_text("")
    host = Host(name="ghost", address="127.0.0.99", port=DEFAULT_PORT, known_hosts=(kh,))
    with pytest.raises(ConnectError, match=r"ghost .*unreachable"):
        asyncio.run(open_transport(host, SshOptions(connect_timeout=3)).connect())


def test_accept_new_host_keys_records_unknown_but_never_changed_keys(tmp_path: Path) -> None:
    """--accept-new-host-keys trusts a host with no recorded key once, records it, and still refuses a changed key."""
    from dataclasses import replace

    with Farm(tmp_path / "farm", 1, first_address=93) as solo:
        kh = tmp_path / "fresh_known_hosts"
        host = replace(_farm_host(solo, "h1"), known_hosts=(kh,))
        with pytest.raises(ConnectError, match="known_hosts"):
            asyncio.run(open_transport(host).connect())

        async def first() -> str:
            transport = open_transport(host, SshOptions(accept_new_host_keys=True))
            await transport.connect()
            try:
                return (await transport.run(["echo", "hi"])).stdout
            finally:
                await transport.close()

        assert asyncio.run(first()) == "hi"
        assert kh.read_text().startswith(f"[127.0.0.93]:{solo.port} ssh-ed25519 ")

        async def strict() -> None:
            transport = open_transport(host)
            await transport.connect()
            await transport.close()

        asyncio.run(strict())  # the recorded key now verifies without the flag
        solo.rekey_host("h1")
        with pytest.raises(ConnectError, match="host key"):
            asyncio.run(open_transport(host, SshOptions(accept_new_host_keys=True)).connect())
        assert len(kh.read_text().splitlines()) == 1


def test_a_timeout_stops_the_command_and_raises_command_timeout(
    transport: Transport, tmp_path: Path
) -> None:
    """Past its timeout a command is given up on with CommandTimeout (not an OSError)."""
    marker = tmp_path / "finished"

    async def go() -> None:
        await transport.connect()
        try:
            await transport.run(["sh", "-c", f"sleep 5; touch '{marker}'"], timeout=0.5)
        finally:
            await transport.close()

    start = time.monotonic()
    with pytest.raises(CommandTimeout, match=r"sh did not finish within 0\.5s") as caught:
        _run(go)
    assert not isinstance(caught.value, OSError)
    assert time.monotonic() - start < 4
    if transport.host.local:  # over SSH only a guard stops it (tests/unit/test_hostside.py)
        time.sleep(5)
        assert not marker.exists()  # the process group was killed, not left running


def test_no_rsync_here_is_a_head_node_error(
    transport: Transport, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without rsync on this machine, push raises HeadNodeError (no build host is blamed)."""
    src = tmp_path / "src"
    src.mkdir()
    empty = tmp_path / "bin"
    empty.mkdir()

    async def go() -> None:
        await transport.connect()
        try:
            monkeypatch.setenv("PATH", str(empty))
            await transport.push(src, str(tmp_path / "dest"))
        finally:
            await transport.close()

    with pytest.raises(HeadNodeError, match="rsync"):
        _run(go)


def test_pull_into_a_read_only_folder_is_a_head_node_error(
    transport: Transport, tmp_path: Path
) -> None:
    """rsync that cannot write into the local folder raises HeadNodeError naming the folder."""
    remote = tmp_path / "artifacts"
    remote.mkdir()
    (remote / "tool").write_bytes(b"x" * 1000)
    back = tmp_path / "back"
    back.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(back)], check=True)

    async def go() -> None:
        await transport.connect()
        try:
            await transport.pull(str(remote), back)
        finally:
            await transport.close()

    try:
        with pytest.raises(HeadNodeError, match=re.escape(f"cannot write {back}")):
            _run(go)
    finally:
        subprocess.run(["umount", "-l", str(back)], check=False)


def test_a_dropped_connection_raises_connection_lost(tmp_path: Path) -> None:
    """A host going down while a command runs raises ConnectionLost, naming the host."""
    with Farm(tmp_path / "farm", 1, first_address=95) as solo:
        host = _farm_host(solo, "h1")

        async def go() -> None:
            transport = open_transport(host)
            await transport.connect()
            try:
                running = asyncio.create_task(transport.run(["sleep", "30"]))
                await asyncio.sleep(0.5)
                await asyncio.to_thread(solo.stop_host, "h1")
                await asyncio.wait_for(running, 20)
            finally:
                await transport.close()

        with pytest.raises(ConnectionLost, match=r"h1 .*connection lost"):
            asyncio.run(go())
