"""The collect stage against a fake host: only verified regular files arrive, in one swap."""

from __future__ import annotations

import asyncio
import hashlib
import os
import time
from pathlib import Path

import pytest

from kdist.errors import HeadNodeError, IntegrityError, MissingArtifacts, TransferError
from kdist.model import Artifact, ArtifactRules, Limits, MiB, Platform, Slice
from kdist.remote import hostside
from kdist.stages.artifacts import Expected
from kdist.stages.collect import MAX_ARTIFACT_BYTES, collect_slice
from kdist.testing.builders import host
from kdist.testing.fake import Call, FakeTransport, Reply, binary

AMD64 = Platform("linux", "amd64")
WORKDIR = "/w/tree"
ARTIFACTS = f"{WORKDIR}/bin/linux/amd64"
SLICE = Slice(AMD64, "h1", False, WORKDIR, ("make", "linux", "amd64"), ARTIFACTS)
ATTEMPT = "run1-linux-amd64-1"


@pytest.fixture
def fake(tmp_path: Path) -> FakeTransport:
    """A fake h1 whose guarded build of ATTEMPT already ran."""
    transport = FakeTransport(host("h1", "linux/amd64"), tmp_path / "h1")
    transport.path(ARTIFACTS).mkdir(parents=True)
    return transport


def build(fake: FakeTransport, files: dict[str, bytes]) -> None:
    """Run the slice's guarded build on the fake host, leaving `files` in the artifacts folder."""
    fake.on(["make"], Reply(files={f"bin/linux/amd64/{n}": b for n, b in files.items()}))
    argv = hostside.guarded(SLICE.argv, workdir=WORKDIR, attempt=ATTEMPT)
    asyncio.run(fake.run(argv, cwd=WORKDIR))


def collect(fake: FakeTransport, out: Path, expected: Expected = None) -> tuple[Artifact, ...]:
    """Collect SLICE into out/bin/linux/amd64."""
    dest = out / "bin/linux/amd64"
    return asyncio.run(collect_slice(fake, SLICE, dest, expected, out, ATTEMPT))


def test_verified_files_arrive_with_modes_kdist_decides(
    fake: FakeTransport, tmp_path: Path
) -> None:
    """A binary and a data file (opted in) arrive as 0755 and 0644, hashed, relative to out."""
    build(fake, {"tool": binary(AMD64), "README": b"hello\n"})
    arts = collect(fake, tmp_path / "out", ArtifactRules(data=("README",)))
    dest = tmp_path / "out/bin/linux/amd64"
    assert [a.path for a in arts] == ["bin/linux/amd64/README", "bin/linux/amd64/tool"]
    assert (dest / "tool").stat().st_mode & 0o7777 == 0o755
    assert (dest / "README").stat().st_mode & 0o7777 == 0o644


def test_the_platform_folder_is_replaced_whole(fake: FakeTransport, tmp_path: Path) -> None:
    """What an older build left in the platform folder is gone after a new collect."""
    old = tmp_path / "out/bin/linux/amd64"
    old.mkdir(parents=True)
    (old / "leftover").write_text("old")
    build(fake, {"tool": binary(AMD64)})
    collect(fake, tmp_path / "out")
    assert sorted(os.listdir(old)) == ["tool"]
    assert [p.name for p in old.parent.iterdir()] == ["amd64"]  # no staging, no .old


def test_a_symlink_is_refused_before_anything_is_pulled(
    fake: FakeTransport, tmp_path: Path
) -> None:
    """A symlink among the artifacts is an integrity violation; nothing is pulled."""
    build(fake, {"tool": binary(AMD64)})
    (fake.path(ARTIFACTS) / "link").symlink_to("/etc/shadow")
    with pytest.raises(IntegrityError, match="symlink"):
        collect(fake, tmp_path / "out")
    assert not any(c.op == "pull" for c in fake.calls)


def test_a_stale_file_is_refused(fake: FakeTransport, tmp_path: Path) -> None:
    """A file the attempt did not write (older than its start) is refused as stale."""
    stale = fake.path(ARTIFACTS) / "old-tool"
    stale.write_bytes(binary(AMD64))
    os.utime(stale, (time.time() - 3600, time.time() - 3600))
    build(fake, {"tool": binary(AMD64)})
    with pytest.raises(IntegrityError, match="stale"):
        collect(fake, tmp_path / "out")


def test_a_setuid_file_is_refused(fake: FakeTransport, tmp_path: Path) -> None:
    """A setuid bit on a pulled file is evidence of tampering: refused, nothing moved in."""
    build(fake, {"tool": binary(AMD64)})
    (fake.path(ARTIFACTS) / "tool").chmod(0o4755)
    with pytest.raises(IntegrityError, match="setuid"):
        collect(fake, tmp_path / "out")
    assert not (tmp_path / "out/bin/linux/amd64").exists()


def test_a_missing_expected_binary_fails_the_build(fake: FakeTransport, tmp_path: Path) -> None:
    """The build exited 0 but did not make an expected binary: a build failure, named."""
    build(fake, {"kubectl": binary(AMD64)})
    with pytest.raises(MissingArtifacts, match="kubelet"):
        collect(fake, tmp_path / "out", expected=("kubectl", "kubelet"))


def test_unexpected_extras_are_dropped(fake: FakeTransport, tmp_path: Path) -> None:
    """Files nobody asked for are not published."""
    build(fake, {"kubectl": binary(AMD64), "extra": binary(AMD64)})
    arts = collect(fake, tmp_path / "out", expected=("kubectl",))
    assert [a.path for a in arts] == ["bin/linux/amd64/kubectl"]
    assert sorted(os.listdir(tmp_path / "out/bin/linux/amd64")) == ["kubectl"]


def test_no_artifacts_folder_is_a_build_failure(fake: FakeTransport, tmp_path: Path) -> None:
    """A build that left no artifacts folder at all fails the slice (not the host)."""
    fake.path(ARTIFACTS).rmdir()
    with pytest.raises(MissingArtifacts, match="left no"):
        collect(fake, tmp_path / "out")


def test_an_empty_artifacts_folder_is_a_build_failure(fake: FakeTransport, tmp_path: Path) -> None:
    """A generic build that produced nothing fails the slice."""
    with pytest.raises(MissingArtifacts, match="no artifacts"):
        collect(fake, tmp_path / "out")


def is_manifest(call: Call) -> bool:
    """True for the artifact manifest helper."""
    return call.argv[:4] == tuple(hostside.manifest("/", "/", "a", 0, 0)[:4])


def test_a_file_changed_after_listing_is_refused(fake: FakeTransport, tmp_path: Path) -> None:
    """The pulled bytes must hash to what the host listed."""
    build(fake, {"tool": binary(AMD64)})
    lie = "\t".join(["f", "64", "0" * 64, "1", b"tool".hex()])
    fake.on(is_manifest, Reply(output=lie))
    with pytest.raises(IntegrityError, match="changed between listing and pull"):
        collect(fake, tmp_path / "out")


@pytest.mark.parametrize(
    ("listing", "needle"),
    [
        ("garbage", "malformed artifact list"),
        ("\n".join(f"d\t-\t-\t1\t{(b'n%05d' % i).hex()}" for i in range(10_001)), "than 10000"),
        ("\t".join(["f", str(MAX_ARTIFACT_BYTES + 1), "-", "1", b"tool".hex()]), "over"),
    ],
)
def test_a_hostile_listing_is_refused(
    fake: FakeTransport, tmp_path: Path, listing: str, needle: str
) -> None:
    """Malformed, endless or oversized listings are integrity violations."""
    fake.on(is_manifest, Reply(output=listing))
    with pytest.raises(IntegrityError, match=needle):
        collect(fake, tmp_path / "out")


def test_a_failed_pull_is_a_transfer_error(fake: FakeTransport, tmp_path: Path) -> None:
    """rsync failing on the host's side is the host's transfer failure, and no staging is left."""
    build(fake, {"tool": binary(AMD64)})
    fake.pull_reply = Reply(returncode=12, output="rsync: connection unexpectedly closed")
    with pytest.raises(TransferError, match="rsync exit 12"):
        collect(fake, tmp_path / "out")
    assert list((tmp_path / "out/bin/linux").iterdir()) == []


# --- limits on what a host lists and offers ----------------------------------------------------


def _collect(fake: FakeTransport, out: Path, limits: Limits) -> tuple[Artifact, ...]:
    """Collect SLICE into out/bin/linux/amd64 within `limits`."""
    dest = out / "bin/linux/amd64"
    return asyncio.run(collect_slice(fake, SLICE, dest, None, out, ATTEMPT, limits=limits))


def test_an_endless_manifest_is_stopped_at_its_limit(fake: FakeTransport, tmp_path: Path) -> None:
    """A host printing an endless artifact list: integrity failure naming host and limit."""
    line = "\t".join(["f", "1", "0" * 64, "1", b"x".hex()]) + "\n"
    fake.on(is_manifest, Reply(output=line * 200_000))
    with pytest.raises(IntegrityError, match=r"h1: linux/amd64: .* manifest_bytes limit \(1 MiB\)"):
        _collect(fake, tmp_path / "out", Limits(manifest_bytes=MiB))
    assert not (tmp_path / "out").exists() or list((tmp_path / "out").rglob("*")) == []


def test_too_many_artifacts_are_refused_before_any_is_hashed(
    fake: FakeTransport, tmp_path: Path
) -> None:
    """More entries than artifact_files: refused by the host script's count, nothing pulled."""
    build(fake, {f"f{n}": b"x" for n in range(6)})
    with pytest.raises(IntegrityError, match=r"more than 5 entries .* artifact_files limit"):
        _collect(fake, tmp_path / "out", Limits(artifact_files=5))
    assert [c.op for c in fake.calls].count("pull") == 0


def test_too_many_bytes_of_artifacts_are_refused_before_the_pull(
    fake: FakeTransport, tmp_path: Path
) -> None:
    """Files that together pass artifact_bytes are refused from the list alone."""
    build(fake, {"a": b"x" * 600, "b": b"y" * 600})
    with pytest.raises(IntegrityError, match="holds 1200 bytes, over the artifact_bytes limit"):
        _collect(fake, tmp_path / "out", Limits(artifact_bytes=1000))
    assert [c.op for c in fake.calls].count("pull") == 0


def test_one_artifact_over_its_limit_is_refused(fake: FakeTransport, tmp_path: Path) -> None:
    """A file over artifact_file_bytes gets no digest from the host, and is refused."""
    build(fake, {"big": b"x" * 2000})
    listing = "\t".join(["f", "2000", "-", "1", b"big".hex()])
    fake.on(is_manifest, Reply(output=listing))
    with pytest.raises(IntegrityError, match="over the artifact_file_bytes limit"):
        _collect(fake, tmp_path / "out", Limits(artifact_file_bytes=1000))


def test_a_pull_that_would_not_fit_is_a_head_node_error(
    fake: FakeTransport, tmp_path: Path
) -> None:
    """A listed size beyond the output disk's free space: HeadNodeError, nothing pulled or left."""
    huge = 1 << 50  # a petabyte: more than any test machine has free
    listing = "\t".join(["f", str(huge), "0" * 64, "1", b"tool".hex()])
    fake.on(is_manifest, Reply(output=listing))
    limits = Limits(artifact_file_bytes=huge, artifact_bytes=huge)
    with pytest.raises(HeadNodeError, match="not enough free space to pull"):
        _collect(fake, tmp_path / "out", limits)
    assert [c.op for c in fake.calls].count("pull") == 0
    assert [p.name for p in (tmp_path / "out/bin/linux").iterdir()] == []


def test_a_file_added_after_the_listing_is_never_pulled(
    fake: FakeTransport, tmp_path: Path
) -> None:
    """Only the names the host listed (and the limits counted) are asked for in the pull."""
    build(fake, {"tool": binary(AMD64), "late": b"x" * 1000})
    listing = "\t".join(["f", str(len(binary(AMD64))), _sha(binary(AMD64)), "1", b"tool".hex()])
    fake.on(is_manifest, Reply(output=listing))
    got = collect(fake, tmp_path / "out")
    assert [a.path.rsplit("/", 1)[-1] for a in got] == ["tool"]
    assert sorted(p.name for p in (tmp_path / "out/bin/linux/amd64").iterdir()) == ["tool"]


def _sha(data: bytes) -> str:
    """Hex sha256 of `data`."""
    return hashlib.sha256(data).hexdigest()
