"""Unit tests for kdist.remote.argv and the probe: argv shapes, scripts run for real by `sh -c`."""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path

import pytest

from kdist.remote.argv import (
    NO_WORKDIR,
    in_dir,
    mkdir,
    remove,
    rsync_pull,
    rsync_push,
    to_shell,
    write_file,
)
from kdist.remote.probe import MIN_FREE_KB, parse_probe, probe

HOSTILE = "a b  'single' \"double\" $(touch pwned) `touch pwned2` ; touch pwned3 && x=$HOME \\ *"


def _remote(argv: Sequence[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    """Run argv the way a remote login shell would: quoted once, then `sh -c`."""
    return subprocess.run(
        ["sh", "-c", to_shell(argv)], cwd=cwd, capture_output=True, text=True, check=False
    )


def _no_side_effects(folder: Path) -> None:
    for name in ("pwned", "pwned2", "pwned3"):
        assert not (folder / name).exists(), name


def _run_in(
    argv: Sequence[str], cwd: str | None, env: Mapping[str, str], where: Path
) -> subprocess.CompletedProcess[str]:
    return _remote(in_dir(argv, cwd, env), where)


def test_in_dir_argv_shape_with_cwd() -> None:
    """in_dir is `sh -c SCRIPT kdist CWD NAME=VALUE... ARGV...` with env sorted by name."""
    argv = in_dir(["make", "cross"], "/w/tree", {"B": "2", "A": "1"})
    assert argv[:2] == ["sh", "-c"]
    assert 'cd "$1"' in argv[2]
    assert f"exit {NO_WORKDIR}" in argv[2]
    assert argv[2].endswith('exec env -- "$@"')
    assert argv[3:] == ["kdist", "/w/tree", "A=1", "B=2", "make", "cross"]


def test_in_dir_argv_shape_without_cwd() -> None:
    """Without a cwd there is no `cd` and no directory argument."""
    argv = in_dir(["true"], None, {"X": "1"})
    assert argv[:2] == ["sh", "-c"]
    assert argv[2].endswith('exec env -- "$@"')
    assert argv[3:] == ["kdist", "X=1", "true"]


def test_in_dir_hides_the_ssh_session_from_the_build(tmp_path: Path) -> None:
    """SSH_CLIENT, SSH_CONNECTION, BASH_ENV and ENV never reach the command; PATH does."""
    script = 'printf "%s|%s|%s|%s|%s" "${SSH_CLIENT-}" "${SSH_CONNECTION-}" "${BASH_ENV-}" "${ENV-}" "${PATH:+path}"'
    done = subprocess.run(
        ["sh", "-c", to_shell(in_dir(["sh", "-c", script], str(tmp_path), {}))],
        capture_output=True,
        text=True,
        check=False,
        env={
            **os.environ,
            "SSH_CLIENT": "10.0.0.1 5 22",
            "SSH_CONNECTION": "x",
            "BASH_ENV": "/b",
            "ENV": "/e",
        },
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == "||||path"


@pytest.mark.skipif(
    not Path("/etc/bash.bashrc").is_file() or not shutil.which("bash"),
    reason="needs bash and a Debian-style /etc/bash.bashrc",
)
def test_a_nounset_bash_in_the_build_reads_no_startup_file(tmp_path: Path) -> None:
    """A login bash that execs the wrapper as sshd would leaves `bash -o nounset` quiet."""
    command = to_shell(in_dir(["bash", "-o", "nounset", "-c", "echo built"], str(tmp_path), {}))
    done = subprocess.run(
        ["bash", "--norc", "-c", command],  # the login shell: its own rc files are not ours
        capture_output=True,
        text=True,
        check=False,
        env={"PATH": os.environ["PATH"], "SSH_CLIENT": "10.0.0.1 5 22", "SHLVL": "0"},
    )
    assert done.returncode == 0, done.stderr
    assert (done.stdout, done.stderr) == ("built\n", "")


def test_in_dir_refuses_an_assignment_as_command() -> None:
    """A first command word containing '=' would be read by env as an assignment: refused."""
    with pytest.raises(ValueError, match="assignment"):
        in_dir(["FOO=bar", "make"], "/w", {})


def test_in_dir_allows_equals_in_later_words() -> None:
    """Only argv[0] is special; later words with '=' are ordinary arguments."""
    assert in_dir(["make", "A=1"], None, {})[-2:] == ["make", "A=1"]


def test_hostile_cwd_arrives_literally(tmp_path: Path) -> None:
    """A working directory full of shell syntax is entered as-is, nothing in it is run."""
    name = "dir with spaces 'q' \"dq\" $(touch pwned) ; touch pwned3 `touch pwned2`"
    workdir = tmp_path / name
    workdir.mkdir()
    done = _run_in(["pwd"], str(workdir), {}, tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout == f"{workdir}\n"
    _no_side_effects(tmp_path)
    _no_side_effects(workdir)


@pytest.mark.parametrize(
    "value",
    [HOSTILE, "", "line1\nline2", "=starts-with-equals", "ends with backslash\\", "ümlaut ✓"],
)
def test_hostile_env_value_arrives_literally(tmp_path: Path, value: str) -> None:
    """An env value with spaces, quotes, `$(...)`, backticks and `;` reaches the command intact."""
    done = _run_in(["printenv", "X"], str(tmp_path), {"X": value}, tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout == value + "\n"
    _no_side_effects(tmp_path)


def test_hostile_argv_words_arrive_literally(tmp_path: Path) -> None:
    """Command arguments are passed one word each, without any shell expansion."""
    words = [HOSTILE, "two words", "*", "$PATH"]
    done = _run_in(["printf", "<%s>", *words], str(tmp_path), {}, tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout == "".join(f"<{w}>" for w in words)
    _no_side_effects(tmp_path)


def test_several_env_values_and_cwd_together(tmp_path: Path) -> None:
    """The cwd and several env variables arrive together, and the command sees all of them."""
    done = _run_in(
        ["sh", "-c", 'printf "%s|%s|%s" "$PWD" "$A" "$B"'],
        str(tmp_path),
        {"A": "x y", "B": "$(id)"},
        Path("/"),
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == f"{tmp_path}|x y|$(id)"


def test_missing_cwd_exits_with_no_workdir(tmp_path: Path) -> None:
    """A working directory that does not exist makes the wrapper exit NO_WORKDIR, command unrun."""
    marker = tmp_path / "ran"
    done = _run_in(["touch", str(marker)], str(tmp_path / "gone"), {}, tmp_path)
    assert done.returncode == NO_WORKDIR
    assert "kdist: no directory" in done.stderr
    assert str(tmp_path / "gone") in done.stderr
    assert not marker.exists()


def test_command_exit_status_passes_through(tmp_path: Path) -> None:
    """The wrapper execs the command, so its exit status is the command's."""
    done = _run_in(["sh", "-c", "exit 7"], str(tmp_path), {}, tmp_path)
    assert done.returncode == 7


def test_rsync_push_shape() -> None:
    """Push uses --delete and --protect-args, skips _output and .git, ends `-- SRC/ kdist:DEST/`."""
    argv = rsync_push("kdist-relay 3", Path("/home/me/src"), "/var/tmp/kdist/t1")
    assert argv[0] == "rsync"
    assert "--delete" in argv
    assert "--protect-args" in argv
    assert "--exclude=/_output/" in argv
    assert "--exclude=/.git/" in argv
    assert "--rsh=kdist-relay 3" in argv
    assert argv[-3:] == ["--", "/home/me/src/", "kdist:/var/tmp/kdist/t1/"]
    assert argv.index("--rsh=kdist-relay 3") < argv.index("--")


def test_rsync_push_without_rsh_is_local() -> None:
    """Without an --rsh helper the destination is a plain local path."""
    argv = rsync_push(None, Path("/src"), "/dst")
    assert not any(a.startswith("--rsh") for a in argv)
    assert argv[-3:] == ["--", "/src/", "/dst/"]


def test_rsync_pull_shape_refuses_links_devices_and_archive() -> None:
    """Pull copies regular files only: no --links, --devices, --specials, -a or recursion."""
    argv = rsync_pull("relay", "/w/t/_output/local/bin/linux/arm64", Path("/out/tmp"))
    forbidden = {"--links", "-l", "--devices", "--specials", "-D", "-a", "--archive", "--recursive"}
    assert forbidden.isdisjoint(argv)
    assert not any(a.startswith("-") and not a.startswith("--") and len(a) > 2 for a in argv)
    assert "--protect-args" in argv
    assert f"--max-size={2 << 30}" in argv and "--dirs" in argv and "--exclude=*/" in argv
    assert "--chmod=go-w" in argv
    assert argv[-3:] == ["--", "kdist:/w/t/_output/local/bin/linux/arm64/", "/out/tmp/"]


def test_rsync_pull_of_listed_names_reads_them_from_a_file() -> None:
    """files_from: rsync is told to take NUL-separated names from that local file."""
    argv = rsync_pull("relay", "/w/out", Path("/out/tmp"), files_from=Path("/tmp/names"))
    assert "--files-from=/tmp/names" in argv and "--from0" in argv
    assert argv.index("--from0") < argv.index("--")


def test_small_argv_builders() -> None:
    """The mkdir and remove argv end options with `--` so a path is never an option."""
    assert mkdir("-x") == ["mkdir", "-p", "--", "-x"]
    assert remove("/w/t") == ["rm", "-rf", "--", "/w/t"]


def test_write_file_writes_stdin_atomically(tmp_path: Path) -> None:
    """write_file stores stdin at the path, creating parents, leaving no temp file."""
    target = tmp_path / "a b" / "c;d" / "defs"
    done = subprocess.run(
        ["sh", "-c", to_shell(write_file(str(target)))],
        input="KUBE_GIT_VERSION='v1.2.3'\n",
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert target.read_text(encoding="utf-8") == "KUBE_GIT_VERSION='v1.2.3'\n"
    assert [p.name for p in target.parent.iterdir()] == ["defs"]


def test_probe_runs_locally_and_parses(tmp_path: Path) -> None:
    """The real probe script, run locally, reports amd64, the tools present and a usable workdir."""
    if platform.machine() not in ("x86_64", "amd64"):
        pytest.skip("the probe's arch check is written for an x86-64 test machine")
    workdir = tmp_path / "work dir" / "$(touch pwned)"
    done = _remote(probe(str(workdir)), tmp_path)
    assert done.returncode == 0, done.stderr
    facts = parse_probe(done.stdout)
    assert facts.arch == "amd64"
    assert facts.os == "linux"
    assert facts.platform is not None
    assert str(facts.platform) == "linux/amd64"
    assert set(facts.tools) == {"make", "go", "rsync", "git"}
    for tool in ("make", "rsync", "git", "go"):
        assert bool(facts.tools[tool]) == (shutil.which(tool) is not None), tool
    assert facts.workdir_ok is True
    assert workdir.is_dir()
    assert isinstance(facts.disk_free_kb, int)
    assert facts.disk_free_kb > 0
    _no_side_effects(tmp_path)


def test_probe_reports_an_unwritable_workdir(tmp_path: Path) -> None:
    """A workdir that cannot be created (a file is in the way) gives workdir_ok False."""
    blocker = tmp_path / "file"
    blocker.write_text("", encoding="utf-8")
    done = _remote(probe(str(blocker / "sub")), tmp_path)
    facts = parse_probe(done.stdout)
    assert facts.workdir_ok is False
    assert "workdir not writable" in facts.problems()


def test_parse_probe_good_host_has_no_problems() -> None:
    """A complete probe output parses to facts without problems."""
    facts = parse_probe(
        "arch=aarch64\nos=Linux\ntool.make=GNU Make 4.3\ntool.go=go version go1.22.1 linux/arm64\n"
        "tool.rsync=rsync  version 3.2.7\ntool.git=git version 2.43.0\nworkdir_ok=1\n"
        f"disk_free_kb={MIN_FREE_KB * 4}\n"
    )
    assert (facts.arch, facts.os) == ("arm64", "linux")
    assert facts.tools["go"] == "go version go1.22.1 linux/arm64"
    assert facts.disk_free_kb == MIN_FREE_KB * 4
    assert facts.problems() == []


def test_parse_probe_missing_tools_are_problems() -> None:
    """Empty tool lines (and absent ones) are reported as `<tool> not found`."""
    facts = parse_probe("arch=x86_64\nos=Linux\ntool.make=\ntool.rsync=rsync 3\nworkdir_ok=1\n")
    problems = facts.problems()
    assert "make not found" in problems
    assert "go not found" in problems
    assert "rsync not found" not in problems
    assert "unknown architecture" not in problems


def test_parse_probe_unknown_arch_is_a_problem() -> None:
    """An unrecognised `uname -m` gives no arch, no platform and an `unknown architecture`."""
    facts = parse_probe(
        "arch=sparc64\nos=Linux\ntool.make=m\ntool.go=g\ntool.rsync=r\nworkdir_ok=1\n"
    )
    assert facts.arch == ""
    assert facts.platform is None
    assert facts.problems() == ["unknown architecture"]


def test_parse_probe_low_disk_and_bad_workdir() -> None:
    """Too little free space, or an unwritable workdir, is reported."""
    tools = "tool.make=m\ntool.go=g\ntool.rsync=r\narch=x86_64\nos=Linux\n"
    low = parse_probe(tools + "workdir_ok=1\ndisk_free_kb=2048\n")
    assert low.problems() == ["only 2 MiB free in workdir"]
    bad = parse_probe(tools + "workdir_ok=0\ndisk_free_kb=\n")
    assert bad.disk_free_kb is None
    assert bad.problems() == ["workdir not writable"]


def test_parse_probe_ignores_noise_lines() -> None:
    """Lines without '=' (e.g. a login banner) are ignored; values keep later '=' signs."""
    facts = parse_probe("Welcome to host!\narch=x86_64\ntool.go=go version x=y\n")
    assert facts.arch == "amd64"
    assert facts.tools == {"go": "go version x=y"}


def test_compress_reaches_rsync_argv_over_ssh_only() -> None:
    """--compress adds rsync's --compress (zstd or zlib, negotiated) to transfers over SSH only."""
    push = rsync_push("relay", Path("/src"), "/dst", compress=True)
    pull = rsync_pull("relay", "/w/bin", Path("/out"), compress=True)
    for argv in (push, pull):
        assert "--compress" in argv and argv.index("--compress") < argv.index("--")
    assert "--compress" not in rsync_push("relay", Path("/src"), "/dst")
    assert "--compress" not in rsync_pull("relay", "/w/bin", Path("/out"))
    assert "--compress" not in rsync_push(None, Path("/src"), "/dst", compress=True)  # a local copy
