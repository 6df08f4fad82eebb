"""SBOM, provenance, signatures and `kdist verify` on a small release made here."""

from __future__ import annotations

import hashlib
import io
import json
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest
from spdx_tools.spdx.parser.parse_anything import parse_file
from spdx_tools.spdx.validation.document_validator import validate_full_spdx_document

from kdist.model import (
    Artifact,
    BuildRecord,
    Layout,
    Platform,
    Profile,
    Reproduction,
    Slice,
    SliceResult,
    SmokeTest,
    Status,
    VersionInfo,
)
from kdist.packaging import buildinfo, provenance, sbom, signing
from kdist.packaging.verify import verify_release
from tests import goimage

MODINFO = "path\texample.com/app\nmod\texample.com/app\t(devel)\t\ndep\texample.com/semver\tv0.2.0\t\n"
PLATFORM = Platform("linux", "amd64")
VERSION = VersionInfo("v1.2.3", "0123456789abcdef0123456789abcdef01234567", "clean", "1", "2", 1700000000)
PROFILE = Profile("app", Layout.GENERIC, (PLATFORM,), ("make",), "bin/{os}/{arch}")


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _record(host: str) -> BuildRecord:
    return BuildRecord(
        attempt=f"run-linux-amd64-1-{host}", host=host, address="127.0.0.1", port=22,
        host_key="SHA256:abc", toolchain="go1.22.4", argv=("make", "GOOS=linux"),
        env={"VERSION": "v1.2.3"}, workdir="/w", cross=False, started=1700000100.0,
        finished=1700000200.0,
    )  # fmt: skip


def _result(binary: bytes) -> SliceResult:
    slc = Slice(PLATFORM, "h1", False, "/w", ("make",), "bin/linux/amd64")
    art = Artifact("bin/linux/amd64/app", _sha256(binary), len(binary))
    rep = Reproduction(_record("h2"), True)
    smoke = (SmokeTest("app", "h1", ("/w/app", "--version"), True, "app v1.2.3"),)
    return SliceResult(slc, Status.OK, 1.0, artifacts=(art,), record=_record("h1"),
                       reproduction=rep, smoke=smoke)  # fmt: skip


@pytest.fixture(scope="module")
def key(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A release signing key and an allowed_signers file that trusts it."""
    folder = tmp_path_factory.mktemp("key")
    path = folder / "release_key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "rel", "-f", str(path)],
                   check=True)  # fmt: skip
    allowed = folder / "allowed_signers"
    allowed.write_text(f'release@example namespaces="kdist" {path.with_suffix(".pub").read_text()}')
    return path, allowed


def _write_release(out: Path, key: Path) -> Path:
    """An output folder as kdist leaves it: a binary, its tarball, SBOM, provenance, sums, sigs."""
    binary = goimage.elf(0x1000, lambda _: goimage.inline_blob("go1.22.4", MODINFO))
    (out / "bin/linux/amd64").mkdir(parents=True)
    (out / "bin/linux/amd64/app").write_bytes(binary)
    tars = out / "release-tars"
    tars.mkdir()
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as archive:
        member = tarfile.TarInfo("app/app")
        member.size = len(binary)
        archive.addfile(member, io.BytesIO(binary))
    (tars / "app-linux-amd64.tar.gz").write_bytes(buf.getvalue())
    info = buildinfo.read_file(out / "bin/linux/amd64/app")
    doc = sbom.document("app", "v1.2.3", "linux/amd64",
                        [sbom.Binary("bin/linux/amd64/app", _sha256(binary), info)], 1700000000)  # fmt: skip
    sbom_name = sbom.file_name("app", "linux/amd64")
    (tars / sbom_name).write_bytes(sbom.dumps(doc))
    release = provenance.Release("app", VERSION, PROFILE, ("linux/amd64",), "ff" * 32, "run",
                                 1700000000.0, 1700000300.0)  # fmt: skip
    tarballs = [("app-linux-amd64.tar.gz", _sha256(buf.getvalue()))]
    statement = provenance.statement(
        release, [_result(binary)], tarballs, [(sbom_name, _sha256((tars / sbom_name).read_bytes()))]
    )
    (tars / provenance.FILE_NAME).write_bytes(provenance.dumps(statement))
    for algorithm in ("sha256", "sha512"):
        lines = [f"{hashlib.new(algorithm, p.read_bytes()).hexdigest()}  {p.name}"
                 for p in sorted(tars.iterdir())]  # fmt: skip
        (tars / f"{algorithm.upper()}SUMS").write_text("\n".join(lines))
    for name in ("SHA256SUMS", "SHA512SUMS", provenance.FILE_NAME):
        signing.sign_file(key, tars / name)
    return out


@pytest.fixture
def release(tmp_path: Path, key: tuple[Path, Path]) -> Path:
    """A fresh, signed release in tmp_path/out."""
    return _write_release(tmp_path / "out", key[0])


def _flip(path: Path, offset: int = -40) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x01
    path.write_bytes(bytes(data))


def test_sbom_is_valid_spdx_listing_the_dependency(release: Path) -> None:
    """The SBOM passes the SPDX tools' validation and lists the binary's modules and Go."""
    path = release / "release-tars" / "app-linux-amd64.spdx.json"
    document = parse_file(str(path))
    assert validate_full_spdx_document(document) == []
    versions = {p.name: p.version for p in document.packages}
    assert versions["example.com/semver"] == "v0.2.0"
    assert versions["stdlib"] == "go1.22.4"
    assert versions["app"] == "v1.2.3"


def test_provenance_is_an_in_toto_slsa_statement(release: Path) -> None:
    """Statement v1 with SLSA v1: subjects with sha256, the host, its key and the times."""
    doc = json.loads((release / "release-tars" / provenance.FILE_NAME).read_text())
    assert doc["_type"] == "https://in-toto.io/Statement/v1"
    assert doc["predicateType"] == "https://slsa.dev/provenance/v1"
    names = [s["name"] for s in doc["subject"]]
    assert names == ["app-linux-amd64.tar.gz", "bin/linux/amd64/app"]
    predicate = doc["predicate"]
    assert set(predicate) == {"buildDefinition", "runDetails"}
    definition = predicate["buildDefinition"]
    assert set(definition) == {"buildType", "externalParameters", "internalParameters",
                               "resolvedDependencies"}  # fmt: skip
    build = definition["internalParameters"]["slices"][0]["build"]
    assert build["host"] == {"name": "h1", "address": "127.0.0.1", "port": 22,
                             "hostKeyFingerprint": "SHA256:abc"}  # fmt: skip
    assert build["startedOn"] == "2023-11-14T22:15:00Z"
    source = definition["resolvedDependencies"][0]
    assert source["digest"] == {"sha256": "ff" * 32, "gitCommit": VERSION.commit}
    run = predicate["runDetails"]
    assert set(run["metadata"]) == {"invocationId", "startedOn", "finishedOn"}
    assert run["byproducts"][0]["name"] == "app-linux-amd64.spdx.json"


def test_fresh_release_verifies(release: Path, key: tuple[Path, Path]) -> None:
    """Every check passes on an untouched release, signatures against the allowed signers."""
    report = verify_release(release, key[1])
    assert report.ok, report.failures
    assert any("Good \"kdist\" signature for release@example" in f.message for f in report.findings)


def test_signatures_verify_with_plain_ssh_keygen(release: Path, key: tuple[Path, Path]) -> None:
    """`ssh-keygen -Y verify` itself accepts each published signature."""
    tars = release / "release-tars"
    for name in ("SHA256SUMS", "SHA512SUMS", provenance.FILE_NAME):
        done = subprocess.run(
            ["ssh-keygen", "-Y", "verify", "-f", str(key[1]), "-I", "release@example",
             "-n", "kdist", "-s", str(tars / f"{name}.sig")],
            input=(tars / name).read_bytes(), capture_output=True, check=False,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr


@pytest.mark.parametrize(
    "victim",
    ["release-tars/app-linux-amd64.tar.gz", "bin/linux/amd64/app", "release-tars/SHA256SUMS.sig",
     "release-tars/provenance.intoto.json", "release-tars/app-linux-amd64.spdx.json"],
)  # fmt: skip
def test_one_flipped_byte_is_named(release: Path, key: tuple[Path, Path], victim: str) -> None:
    """A byte flipped in a tarball, a binary, a signature, the provenance or an SBOM fails."""
    _flip(release / victim)
    report = verify_release(release, key[1])
    assert not report.ok
    named = {f.file for f in report.failures}
    assert Path(victim).name in named or victim in named, report.failures


def test_binary_is_checked_inside_the_tarball_when_only_release_files_are_there(
    release: Path, key: tuple[Path, Path], tmp_path: Path
) -> None:
    """With only the release files downloaded, a binary subject is found inside its tarball."""
    download = tmp_path / "download" / "v1.2.3"
    shutil.copytree(release / "release-tars", download)
    report = verify_release(download, key[1])
    assert report.ok, report.failures
    assert any("inside app-linux-amd64.tar.gz:app/app" in f.message for f in report.findings)


def test_signature_of_another_key_is_refused(
    release: Path, key: tuple[Path, Path], tmp_path: Path
) -> None:
    """A release re-signed by a key not in allowed_signers fails on each signature."""
    other = tmp_path / "other"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(other)], check=True)
    tars = release / "release-tars"
    signing.sign_file(other, tars / "SHA256SUMS")
    report = verify_release(release, key[1])
    assert [f.file for f in report.failures] == ["SHA256SUMS.sig"]


def test_unsigned_release_fails_when_signers_are_required(release: Path, key: tuple[Path, Path]) -> None:
    """Removing the signatures is caught when --allowed-signers is given."""
    for sig in (release / "release-tars").glob("*.sig"):
        sig.unlink()
    assert not verify_release(release, key[1]).ok
    assert verify_release(release, None).ok


def test_unusable_signing_key_is_a_configuration_error(tmp_path: Path) -> None:
    """A key file that is not a key fails before any build, as a configuration error."""
    bogus = tmp_path / "key"
    bogus.write_text("not a key\n")
    from kdist.errors import ConfigError

    with pytest.raises(ConfigError, match="--sign-key"):
        signing.check_key(bogus)


def test_verify_document_matches_the_schema(release: Path, key: tuple[Path, Path]) -> None:
    """`kdist verify --json` prints a kind=verify document that the published schema accepts."""
    import jsonschema

    from kdist.cli import documents

    _flip(release / "bin/linux/amd64/app")
    doc = documents.verify_summary(verify_release(release, key[1]), 1700000000.0, 1700000001.0)
    schema = json.loads(documents.SCHEMA.read_text())
    jsonschema.Draft202012Validator(schema).validate(doc)
    assert doc["kind"] == "verify" and doc["exit_status"] == 4 and doc["ok"] is False
