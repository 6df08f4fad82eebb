"""Pulled files get kdist's modes; setuid, setgid and sticky bits are refused."""

from __future__ import annotations

import shutil
import stat
from pathlib import Path

import pytest

from kdist.errors import IntegrityError
from kdist.model import Platform
from kdist.stages.collect import set_modes, verify_staging

LS = Path("/bin/ls")
AMD64 = Platform("linux", "amd64")


def _staged(tmp_path: Path, mode: int) -> Path:
    staging = tmp_path / "staging"
    staging.mkdir()
    shutil.copyfile(LS, staging / "kubectl")
    (staging / "kubectl").chmod(mode)
    return staging


@pytest.mark.parametrize(
    ("mode", "shown"), [(0o4755, "-rwsr-xr-x"), (0o2755, "-rwxr-sr-x"), (0o1755, "-rwxr-xr-t")]
)
def test_special_bits_are_an_integrity_violation(tmp_path: Path, mode: int, shown: str) -> None:
    """A setuid, setgid or sticky file from a host is refused, naming the file, host and mode."""
    staging = _staged(tmp_path, mode)
    with pytest.raises(IntegrityError) as caught:
        verify_staging(staging, AMD64, ("kubectl",), "h2")
    assert str(caught.value) == (
        f"h2: linux/amd64: 'kubectl' has mode {shown} (setuid, setgid or sticky bit); refused"
    )


def test_plain_modes_pass_verification(tmp_path: Path) -> None:
    """An ordinary executable passes, whatever other permission bits the host gave it."""
    staging = _staged(tmp_path, 0o700)
    assert verify_staging(staging, AMD64, ("kubectl",), "h2") == ["kubectl"]


def test_set_modes_gives_executables_0755_and_data_0644(tmp_path: Path) -> None:
    """Binaries and scripts become 0755, anything else 0644, regardless of the host's bits."""
    staging = _staged(tmp_path, 0o777)
    (staging / "run.sh").write_text("#!/bin/sh\necho hi\n")
    (staging / "run.sh").chmod(0o600)
    (staging / "notes.txt").write_text("data\n")
    (staging / "notes.txt").chmod(0o777)
    set_modes(staging, ["kubectl", "run.sh", "notes.txt"])
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in staging.iterdir()}
    assert modes == {"kubectl": 0o755, "run.sh": 0o755, "notes.txt": 0o644}
