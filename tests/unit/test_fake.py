"""FakeTransport keeps the transport contract: the same results and errors as a real host."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from kdist.errors import CommandTimeout, ConnectError, ConnectionLost
from kdist.model import Platform
from kdist.remote import hostside
from kdist.remote.probe import parse_probe, probe
from kdist.testing.builders import host
from kdist.testing.fake import Call, FakeTransport, Reply


@pytest.fixture
def fake(tmp_path: Path) -> FakeTransport:
    """A fake arm64 host."""
    return FakeTransport(host("h1", "linux/arm64"), tmp_path / "h1")


def test_rules_match_by_prefix_or_predicate_newest_first(fake: FakeTransport) -> None:
    """The newest matching rule answers; `times` limits how often; calls are recorded in order."""
    fake.on(["make"], Reply(returncode=2))
    fake.on(lambda call: call.argv[-1] == "test", Reply(output="ok\nfine"), times=1)
    lines: list[str] = []

    async def go() -> list[int]:
        first = await fake.run(["make", "test"], sink=lines.append)
        second = await fake.run(["make", "test"])
        other = await fake.run(["true"])
        return [first.returncode, second.returncode, other.returncode]

    assert asyncio.run(go()) == [0, 2, 0]
    assert lines == ["ok", "fine"]
    assert [c.argv for c in fake.runs()] == [("make", "test"), ("make", "test"), ("true",)]


def test_errors_are_the_contract_classes(fake: FakeTransport) -> None:
    """A refused login, a timeout and a dropped link raise what real transports raise."""
    fake.on(["sleep"], Reply(hang=True))
    fake.on(["boom"], Reply(drop=True))
    with pytest.raises(CommandTimeout, match=r"did not finish within 0\.01s"):
        asyncio.run(fake.run(["sleep", "9"], timeout=0.01))
    with pytest.raises(ConnectionLost, match="h1"):
        asyncio.run(fake.run(["boom"]))
    with pytest.raises(ConnectionLost):
        asyncio.run(fake.run(["true"]))  # the link stays down
    fake.refuse = "authentication failed"
    with pytest.raises(ConnectError, match="h1: authentication failed"):
        asyncio.run(fake.connect())


def test_a_guarded_build_is_matched_by_its_own_argv(fake: FakeTransport) -> None:
    """Rules see the build command inside the host-side guard, with its attempt id."""
    seen: list[Call] = []

    def answer(call: Call) -> Reply:
        seen.append(call)
        return Reply(files={"out/tool": b"x"})

    fake.on(["go", "build"], answer)
    argv = hostside.guarded(["go", "build", "./..."], workdir="/w", attempt="r-1")
    assert asyncio.run(fake.run(argv, cwd="/w")).ok
    assert seen[0].argv == ("go", "build", "./...") and seen[0].attempt == "r-1"
    assert fake.path("/w/out/tool").read_bytes() == b"x"


def test_push_and_pull_copy_like_rsync(fake: FakeTransport, tmp_path: Path) -> None:
    """push mirrors the tree without _output/.git; pull brings regular files only."""
    src = tmp_path / "src"
    (src / "_output").mkdir(parents=True)
    (src / "a.go").write_text("package a\n")
    (src / "_output" / "junk").write_text("x")
    back = tmp_path / "back"
    back.mkdir()

    async def go() -> None:
        await fake.push(src, "/w/tree")
        fake.path("/w/tree/link").symlink_to("a.go")
        await fake.pull("/w/tree", back)

    asyncio.run(go())
    assert not fake.path("/w/tree/_output").exists()
    assert sorted(p.name for p in back.iterdir()) == ["a.go"]


def test_the_probe_reports_the_fake_platform(tmp_path: Path) -> None:
    """The built-in probe answer parses to the platform the fake was given."""
    fake = FakeTransport(host("h9"), tmp_path, platform=Platform("linux", "s390x"))
    result = asyncio.run(fake.run(probe("/w")))
    facts = parse_probe(result.stdout)
    assert facts.platform == Platform("linux", "s390x") and not facts.problems()
