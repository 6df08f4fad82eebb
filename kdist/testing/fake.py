"""A build host that opens no socket: `FakeTransport` obeys the transport contract in memory.

Commands are answered by scripted replies, matched by argv (a prefix, or any predicate), and
every call is recorded. A fake host has a folder on this machine standing for its file system
(`root`), so a scripted build can leave files that `pull` then copies, and `push` copies the
source tree there. The host-side helpers kdist runs (the build guard, the workdir lock, the
artifact manifest, kill, write, remove, the probe, `go version`) are answered the way a real
POSIX host would answer them, unless a rule says otherwise. Faults are scripted too: a refused
connection, a command that hangs, a connection that drops, a busy lock, a failing transfer.

    fake = FakeTransport(host, root=tmp_path / "h1")
    fake.on(["make"], Reply(files={"bin/linux/amd64/tool": binary(Platform("linux", "amd64"))}))
"""

from __future__ import annotations

import asyncio
import hashlib
import posixpath
import shutil
import stat
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from kdist.aio import wait_for
from kdist.errors import CommandTimeout, ConnectError, ConnectionLost, OutputTooLarge
from kdist.model import UNAME_TO_GOARCH, CommandResult, Host, Platform, TransferDeadline
from kdist.remote import hostside, probe
from kdist.remote.argv import (
    SYNC_EXCLUDES,
    mkdir,
    remove,
    remove_tree,
    write_file,
)
from kdist.transport import READ_CHUNK, LineReader, LineSink, OutputCollector, Progress, Spawned

GO_VERSION = "go1.22.4"
FAKE_HOST_KEY = "SHA256:fake-host-key"
_CLOCK_TICK = 0.02
_GOARCH_TO_UNAME = {arch: uname for uname, arch in reversed(UNAME_TO_GOARCH.items())}


@dataclass(frozen=True)
class Call:
    """One thing asked of a fake host, in order: connect, run, spawn, push, pull, close."""

    op: str
    argv: tuple[str, ...] = ()  # run/spawn: the command (the build itself, inside the guard)
    cwd: str | None = None
    env: Mapping[str, str] = field(default_factory=dict)
    stdin: str | None = None
    path: str = ""  # push: the destination on the host; pull: the source on the host
    attempt: str = ""  # a guarded build's attempt id
    timeout: float | None = None  # run: its timeout; push/pull: the deadline's total
    held: bool = False  # run with hold_stdin (a guarded build, watched by the build stage)


@dataclass(frozen=True)
class Reply:
    """How a scripted command behaves."""

    returncode: int = 0
    output: str = ""  # streamed line by line to the caller's sink
    files: Mapping[str, bytes] = field(default_factory=dict)  # written under cwd before it exits
    delay: float = 0.0  # seconds it takes
    hang: bool = False  # never exits by itself: a timeout, a kill or cancellation ends it
    drop: bool = False  # the connection breaks while it runs (ConnectionLost)


Matcher = Sequence[str] | Callable[[Call], bool]
Answer = Reply | Callable[[Call], Reply]


@dataclass
class _Rule:
    matcher: Matcher
    answer: Answer
    times: int | None  # None: every time

    def matches(self, call: Call) -> bool:
        if callable(self.matcher):
            return self.matcher(call)
        prefix = tuple(self.matcher)
        return call.argv[: len(prefix)] == prefix


class FakeTransport:
    """The transport contract against a scripted host; see the module docstring."""

    def __init__(
        self,
        host: Host,
        root: Path | None = None,
        *,
        platform: Platform | None = None,
        refuse: str = "",
    ) -> None:
        self.host = host
        self.host_key = FAKE_HOST_KEY  # what the provenance records for a fake host
        self.root = root if root is not None else Path("/")  # None: paths are this machine's
        self.platform = platform or (host.platforms[0] if host.platforms else None)
        self.refuse = refuse  # connect raises ConnectError with this text
        self.calls: list[Call] = []
        self.busy = ""  # the lock holder says the workdir is locked by this run
        self.push_reply: Reply | None = None  # None: copy the tree into root
        self.pull_reply: Reply | None = None  # None: copy the regular files out of root
        self.killed: list[str] = []  # attempts kill_attempt was sent for
        self.spawned: list[FakeSpawned] = []  # lock holders and other long-lived commands
        self.connected = False
        self._lost = ""
        self._rules: list[_Rule] = []
        self._starts: dict[str, float] = {}  # attempt -> when its guard started (mtime clock)
        self._kills: dict[str, asyncio.Event] = {}

    # --- scripting ------------------------------------------------------------------------

    def on(self, matcher: Matcher, answer: Answer, *, times: int | None = None) -> FakeTransport:
        """Answer commands that match (argv prefix or predicate); newest rule first."""
        self._rules.insert(0, _Rule(matcher, answer, times))
        return self

    def drop(self, reason: str = "connection reset by peer") -> None:
        """Break the connection now: every later call raises ConnectionLost."""
        self._lost = reason

    def runs(self, prefix: Sequence[str] = ()) -> list[Call]:
        """The recorded `run` calls whose argv starts with `prefix`."""
        want = tuple(prefix)
        return [c for c in self.calls if c.op == "run" and c.argv[: len(want)] == want]

    def path(self, remote: str) -> Path:
        """Where a path of the fake host lives on this machine."""
        return self.root / posixpath.normpath(remote).lstrip("/")

    # --- the transport contract -----------------------------------------------------------

    async def connect(self) -> None:
        """Succeed, or raise ConnectError when told to refuse."""
        self.calls.append(Call("connect"))
        if self.refuse:
            msg = f"{self.host.name}: {self.refuse}"
            raise ConnectError(msg)
        self.connected = True

    async def run(
        self,
        argv: Sequence[str],
        *,
        cwd: str | None = None,
        env: Mapping[str, str] | None = None,
        stdin: str | None = None,
        sink: LineSink | None = None,
        timeout: float | None = None,
        hold_stdin: bool = False,
        max_output: int | None = None,
        stdout_only: bool = False,  # a fake host's shell prints nothing of its own
    ) -> CommandResult:
        """Answer argv from the rules or the built-in host helpers."""
        self._check_link(argv)
        call = self._record("run", argv, cwd, env, stdin, timeout=timeout, held=hold_stdin)
        start = time.monotonic()
        collector = OutputCollector(sink, max_output=max_output)
        try:
            code = await wait_for(self._perform(call, collector), timeout)
        except asyncio.TimeoutError as exc:
            msg = f"{self.host.name}: {argv[0]} did not finish within {timeout:g}s; stopped"
            raise CommandTimeout(msg) from exc
        except OutputTooLarge as exc:
            msg = f"{self.host.name}: {argv[0]} printed more than {exc.limit} characters; stopped"
            raise OutputTooLarge(exc.limit, msg) from exc
        return CommandResult(tuple(argv), code, collector.text(), "", time.monotonic() - start)

    async def spawn(self, argv: Sequence[str]) -> Spawned:
        """Start a lock holder (or any scripted long-lived command)."""
        self._check_link(argv)
        call = self._record("spawn", argv, None, None, None)
        if list(argv[:4]) == _HELPERS["lock"]:
            run_id = argv[5]
            lines = [f"busy {self.busy}\n" if self.busy else f"locked {run_id}\n"]
        else:
            lines = (self._scripted(call) or Reply()).output.splitlines(keepends=True)
        spawned = FakeSpawned(lines)
        self.spawned.append(spawned)
        return spawned

    async def push(
        self,
        src: Path,
        dest: str,
        *,
        progress: Progress | None = None,
        deadline: TransferDeadline | None = None,
    ) -> CommandResult:
        """Copy the tree `src` into `dest` on the fake host (or answer as scripted)."""
        self._check_link(("rsync",))
        total = deadline.total if deadline else None
        self.calls.append(Call("push", path=dest, timeout=total))
        if self.push_reply is not None:
            return await self._reply_only(("rsync",), self.push_reply, total)
        target = self.path(dest)
        ignore = shutil.ignore_patterns(*(p.strip("/") for p in SYNC_EXCLUDES))
        shutil.copytree(src, target, symlinks=True, dirs_exist_ok=True, ignore=ignore)
        if progress is not None:  # the bytes of the files, as if they had crossed the wire
            progress(sum(f.stat().st_size for f in target.rglob("*") if f.is_file()))
        return CommandResult(("rsync",), 0)

    async def pull(
        self,
        src: str,
        dest: Path,
        *,
        progress: Progress | None = None,
        deadline: TransferDeadline | None = None,
        only: Sequence[str] | None = None,
    ) -> CommandResult:
        """Copy the regular files under `src` (or just `only`) into `dest`, as rsync would."""
        self._check_link(("rsync",))
        total = deadline.total if deadline else None
        self.calls.append(Call("pull", path=src, timeout=total))
        if self.pull_reply is not None:
            return await self._reply_only(("rsync",), self.pull_reply, total)
        folder = self.path(src)
        if not folder.is_dir():
            text = f'rsync: [sender] change_dir "{src}" failed: No such file or directory (2)'
            return CommandResult(("rsync",), 23, text)
        moved = 0
        for entry in sorted(folder.iterdir()):
            if only is not None and entry.name not in only:
                continue  # --files-from: what was not asked for never comes
            if entry.is_file() and not entry.is_symlink():  # no --links, no specials
                shutil.copy2(entry, dest / entry.name)
                moved += entry.stat().st_size
        if progress is not None:
            progress(moved)
        return CommandResult(("rsync",), 0)

    async def forward_socket(self, remote_path: str) -> str:
        """The fake host's socket path as it is (nothing listens there)."""
        self.calls.append(Call("forward", path=remote_path))
        return str(self.path(remote_path))

    async def close(self) -> None:
        """Forget the connection; safe to call twice."""
        self.calls.append(Call("close"))
        self.connected = False

    # --- how the fake host answers --------------------------------------------------------

    def _check_link(self, argv: Sequence[str]) -> None:
        if self._lost:
            msg = f"{self.host.name}: connection lost while running {argv[0]}: {self._lost}"
            raise ConnectionLost(msg)

    def _record(
        self,
        op: str,
        argv: Sequence[str],
        cwd: str | None,
        env: Mapping[str, str] | None,
        stdin: str | None,
        *,
        timeout: float | None = None,
        held: bool = False,
    ) -> Call:
        command, attempt = _unwrap(argv)
        call = Call(op, command, cwd, dict(env or {}), stdin, "", attempt, timeout, held)
        self.calls.append(call)
        return call

    def _scripted(self, call: Call) -> Reply | None:
        for rule in self._rules:
            if rule.times == 0 or not rule.matches(call):
                continue
            if rule.times is not None:
                rule.times -= 1
            return rule.answer(call) if callable(rule.answer) else rule.answer
        return None

    async def _perform(self, call: Call, collector: OutputCollector) -> int:
        if call.attempt:
            # File times come from the kernel's coarse clock, up to a tick behind time.time().
            self._starts[call.attempt] = time.time() - _CLOCK_TICK
        reply = self._scripted(call)
        if reply is None:
            return self._builtin(call, collector)
        return await self._play(call, reply, collector)

    async def _play(self, call: Call, reply: Reply, collector: OutputCollector) -> int:
        for chunk in _chunks(reply.output):
            collector.feed_text(chunk)
            await asyncio.sleep(0)  # a stream arrives in pieces; others run meanwhile
        collector.close()
        if reply.delay:
            await asyncio.sleep(reply.delay)
        if reply.drop:
            self.drop()
            self._check_link(call.argv)
        if reply.hang:
            killed = self._kills.setdefault(call.attempt, asyncio.Event())
            await killed.wait()  # only kill_attempt (or a timeout, or cancel) gets past this
            return 143
        base = self.path(call.cwd or "/")
        for name, content in reply.files.items():
            target = base / name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(content)
            target.chmod(0o755)
        return reply.returncode

    async def _reply_only(
        self, argv: tuple[str, ...], reply: Reply, timeout: float | None
    ) -> CommandResult:
        collector = OutputCollector(None)
        try:
            code = await wait_for(self._play(Call("run", argv), reply, collector), timeout)
        except asyncio.TimeoutError as exc:
            msg = f"{self.host.name}: rsync did not finish within {timeout:g}s; stopped"
            raise CommandTimeout(msg) from exc
        return CommandResult(argv, code, collector.text())

    def _builtin(self, call: Call, collector: OutputCollector) -> int:
        """A POSIX host's answer to kdist's own helpers; anything else exits 0 silently."""
        argv = call.argv
        head = list(argv[:4])
        if head == _HELPERS["manifest"]:
            return self._manifest(argv[4], argv[6], int(argv[8]), collector)
        if head == _HELPERS["kill"]:
            self.killed.append(argv[5])
            self._kills.setdefault(argv[5], asyncio.Event()).set()
            return 0
        if head == _HELPERS["write"]:
            target = self.path(argv[4])
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(call.stdin or "")
            return 0
        if head == _HELPERS["probe"]:
            collector.feed(self._probe_text())
            return 0
        if head == _HELPERS["remove_tree"] or argv[:3] == tuple(remove("")[:3]):
            shutil.rmtree(self.path(argv[-1]), ignore_errors=True)
            return 0
        if argv[:3] == tuple(mkdir("")[:3]):
            self.path(argv[-1]).mkdir(parents=True, exist_ok=True)
            return 0
        if argv[:2] == ("go", "version"):
            arch = self.platform.arch if self.platform else "amd64"
            collector.feed(f"go version {GO_VERSION} linux/{arch}")
        return 0

    def _manifest(
        self, artifacts: str, attempt: str, max_entries: int, collector: OutputCollector
    ) -> int:
        folder = self.path(artifacts)
        if not folder.is_dir():
            return hostside.EXIT_NO_ARTIFACTS
        entries = sorted(folder.iterdir())
        if len(entries) > max_entries:  # the script counts before it hashes anything
            collector.feed(f"more than {max_entries} entries")
            return hostside.EXIT_TOO_MANY
        since = self._starts.get(attempt)
        for entry in entries:
            collector.feed(_manifest_line(entry, since))
        return 0

    def _probe_text(self) -> str:
        arch = self.platform.arch if self.platform else ""
        return "\n".join(
            [
                f"arch={_GOARCH_TO_UNAME.get(arch, '')}",
                "os=Linux",
                "tool.make=GNU Make 4.3",
                f"tool.go=go version {GO_VERSION} linux/{arch}",
                "tool.rsync=rsync  version 3.2.7  protocol version 31",
                "tool.git=git version 2.43.0",
                "workdir_ok=1",
                "disk_free_kb=104857600",
            ]
        )


class FakeSpawned:
    """A long-lived fake command: says its lines, then stays quiet until closed."""

    def __init__(self, lines: Sequence[str]) -> None:
        pieces = _chunks("".join(lines))

        async def read(size: int) -> str:
            return next(pieces, "")

        self._lines = LineReader(read)  # cut at the line limit, as a real transport does
        self.closed = False

    async def readline(self) -> str:
        """The next scripted line ('' once they are said)."""
        return await self._lines.readline()

    async def close(self) -> None:
        """End it."""
        self.closed = True


# The first four words of each helper (sh -c SCRIPT NAME) identify it, whatever its arguments.
_HELPERS = {
    "guarded": hostside.guarded(["true"], workdir="/", attempt="a")[:4],
    "kill": hostside.kill_attempt("/", "a")[:4],
    "lock": hostside.hold_lock("/", "a", 0)[:4],
    "manifest": hostside.manifest("/", "/", "a", 0, 0)[:4],
    "write": write_file("/")[:4],
    "remove_tree": remove_tree("/")[:4],
    "probe": probe.probe("/")[:4],
}
_GUARD_WORDS = len(hostside.guarded(["true"], workdir="/", attempt="a")) - 1


def _chunks(text: str) -> Iterator[str]:
    """`text` in pieces, as a transport reads a stream."""
    for start in range(0, len(text), READ_CHUNK):
        yield text[start : start + READ_CHUNK]


def _unwrap(argv: Sequence[str]) -> tuple[tuple[str, ...], str]:
    """(the command itself, its attempt id) for a guarded build; (argv, '') otherwise."""
    if list(argv[:4]) == _HELPERS["guarded"]:
        return tuple(argv[_GUARD_WORDS:]), argv[5]
    return tuple(argv), ""


def _manifest_line(entry: Path, since: float | None) -> str:
    info = entry.lstat()
    fresh = "1" if since is not None and info.st_mtime >= since else "0"
    name = entry.name.encode("utf-8", "surrogateescape").hex()
    if stat.S_ISLNK(info.st_mode):
        kind, size, digest = "l", "-", "-"
    elif stat.S_ISREG(info.st_mode):
        kind, size = "f", str(info.st_size)
        digest = hashlib.sha256(entry.read_bytes()).hexdigest()
    elif stat.S_ISDIR(info.st_mode):
        kind, size, digest = "d", "-", "-"
    else:
        kind, size, digest = "o", "-", "-"
    return "\t".join((kind, size, digest, fresh, name))


def binary(platform: Platform, body: bytes = b"") -> bytes:
    """The first bytes of an executable for `platform` (ELF, PE or Mach-O), then `body`."""
    if platform.os == "windows":
        machine = {"386": 0x14C, "amd64": 0x8664, "arm64": 0xAA64, "arm": 0x1C4}[platform.arch]
        head = bytearray(0x40 + 6)
        head[:2] = b"MZ"
        head[0x3C:0x40] = (0x40).to_bytes(4, "little")
        head[0x40:0x44] = b"PE\0\0"
        head[0x44:0x46] = machine.to_bytes(2, "little")
        return bytes(head) + body
    machines = {"386": 3, "arm": 40, "amd64": 62, "arm64": 183, "s390x": 22, "riscv64": 243,
                "ppc64le": 21, "loong64": 258}  # fmt: skip
    big = platform.arch == "s390x"
    head = bytearray(64)
    head[:4] = b"\x7fELF"
    head[4] = 1 if platform.arch in ("386", "arm") else 2
    head[5] = 2 if big else 1
    head[18:20] = machines[platform.arch].to_bytes(2, "big" if big else "little")
    return bytes(head) + body
