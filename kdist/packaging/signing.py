"""SSH signatures over release files, made and checked by OpenSSH's own `ssh-keygen -Y`.

A release is signed as `ssh-keygen -Y sign -n kdist -f KEY` signs, so a downstream user
needs nothing but OpenSSH to check it (`ssh-keygen -Y verify -n kdist`). The key may be a
private key file, or a public key whose private half is in the running ssh-agent.
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

from kdist.errors import ConfigError, PackageError

NAMESPACE = "kdist"
SUFFIX = ".sig"
TIMEOUT = 60.0  # seconds for one ssh-keygen call


@dataclass(frozen=True)
class Checked:
    """The outcome of checking one signature."""

    ok: bool
    message: str  # ssh-keygen's own words (the signer's principal and key fingerprint)


def _keygen(args: list[str], data: bytes) -> subprocess.CompletedProcess[bytes]:
    # A fresh environment without a terminal: ssh-keygen must never wait for a passphrase.
    env = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "SSH_AUTH_SOCK")}
    return subprocess.run(
        ["ssh-keygen", *args], input=data, capture_output=True, timeout=TIMEOUT, check=False,
        env=env, start_new_session=True,
    )  # fmt: skip


def signature(key: Path, data: bytes) -> bytes:
    """The armored SSH signature of `data` by `key`, namespace kdist."""
    try:
        done = _keygen(["-Y", "sign", "-n", NAMESPACE, "-f", str(key)], data)
    except (OSError, subprocess.TimeoutExpired) as exc:
        msg = f"--sign-key {key}: ssh-keygen could not sign: {exc}"
        raise PackageError(msg) from exc
    if done.returncode != 0 or b"BEGIN SSH SIGNATURE" not in done.stdout:
        why = done.stderr.decode(errors="replace").strip().splitlines()
        msg = f"--sign-key {key}: ssh-keygen could not sign: {why[-1] if why else 'no output'}"
        raise PackageError(msg)
    return done.stdout


def check_key(key: Path) -> None:
    """Sign a test message now, so an unusable key fails before anything is built (exit 2)."""
    if not key.is_file():
        msg = f"--sign-key {key}: no such file"
        raise ConfigError(msg)
    try:
        signature(key, b"kdist signing key check\n")
    except PackageError as exc:
        raise ConfigError(str(exc)) from exc


def sign_file(key: Path, path: Path) -> Path:
    """Write `<path>.sig` beside `path` and return it."""
    sig = path.with_name(path.name + SUFFIX)
    sig.write_bytes(signature(key, path.read_bytes()))
    sig.chmod(0o644)
    return sig


def verify_file(path: Path, sig: Path, allowed_signers: Path | None) -> Checked:
    """Check `sig` over `path`: against the allowed signers when given, else the key it names.

    Without allowed signers only the signature's integrity is checked (ssh-keygen
    `check-novalidate`): any key could have made it, which the message says.
    """
    data = path.read_bytes()
    if allowed_signers is None:
        done = _keygen(["-Y", "check-novalidate", "-n", NAMESPACE, "-s", str(sig)], data)
        return _checked(done, "signer not checked (no --allowed-signers)")
    found = _keygen(["-Y", "find-principals", "-s", str(sig), "-f", str(allowed_signers)], b"")
    principals = found.stdout.decode(errors="replace").split()
    if found.returncode != 0 or not principals:
        return Checked(False, f"unreadable signature, or a signer not in {allowed_signers}")
    args = ["-Y", "verify", "-f", str(allowed_signers), "-I", principals[0], "-n", NAMESPACE]
    return _checked(_keygen([*args, "-s", str(sig)], data), "")


def _checked(done: subprocess.CompletedProcess[bytes], note: str) -> Checked:
    text = (done.stdout + done.stderr).decode(errors="replace").strip()
    lines = [line for line in text.splitlines() if line.strip()]
    message = "; ".join(lines) if lines else f"ssh-keygen exit {done.returncode}"
    if done.returncode != 0:
        return Checked(False, message)
    return Checked(True, message + (f"; {note}" if note else ""))
