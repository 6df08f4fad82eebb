"""`kdist.cli.main.main([...])` in process, on fake hosts: option errors and every exit code."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import jsonschema
import pytest

from kdist.cli import documents
from kdist.cli.main import Transports, main
from kdist.cli.options import Farm
from kdist.engine.estimate import History
from kdist.engine.journal import save_history
from kdist.engine.prepare import TransportFactory
from kdist.errors import ExitStatus
from kdist.model import Platform
from kdist.remote.argv import remove_tree
from kdist.testing.builders import FakeFarm, host
from kdist.testing.fake import Call, Reply, binary

PROFILE = """\
name: tool
layout: generic
platforms: [linux/amd64, linux/arm64]
build: make {os} {arch}
artifacts: bin/{os}/{arch}
"""


@pytest.fixture
def source(tmp_path: Path) -> Path:
    """A generic project with a kdist.yaml."""
    tree = tmp_path / "src"
    tree.mkdir()
    (tree / "kdist.yaml").write_text(PROFILE)
    (tree / "main.go").write_text("package main\n")
    (tree / "Makefile").write_text("all:\n")  # the profile runs make (preflight looks)
    return tree


@pytest.fixture
def inventory(tmp_path: Path) -> Path:
    """An inventory naming h1 (amd64) and h2 (arm64)."""
    known = tmp_path / "known_hosts"
    known.write_text("")
    path = tmp_path / "hosts.yaml"
    path.write_text(
        f"defaults: {{known_hosts: {known}}}\n"
        "hosts:\n  h1: {platforms: [linux/amd64]}\n  h2: {platforms: [linux/arm64]}\n"
    )
    return path


@pytest.fixture
def farm(tmp_path: Path) -> FakeFarm:
    """The fake hosts behind the inventory."""
    return FakeFarm(tmp_path / "farm", [host("h1", "linux/amd64"), host("h2", "linux/arm64")])


def via(farm: FakeFarm) -> Transports:
    """The `transports` argument of main: every host is reached through `farm`."""

    def transports(_: Farm) -> TransportFactory:
        return farm.factory

    return transports


def kdist(farm: FakeFarm, *argv: str | Path) -> int:
    """main(argv) on the fake farm."""
    return main([str(a) for a in argv], transports=via(farm))


def test_a_release_exits_0_and_prints_one_json_document(
    farm: FakeFarm, source: Path, inventory: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A good release: exit 0, the JSON document lists both slices and both tarballs."""
    code = kdist(farm, "--json", "release", "--source", source, "--hosts", inventory)
    doc = json.loads(capsys.readouterr().out)
    assert code == ExitStatus.OK
    assert [s["host"] for s in doc["slices"]] == ["h1", "h2"]
    assert len(doc["tarballs"]) == 2 and doc["ok"]


def test_json_after_the_command_is_the_same(
    farm: FakeFarm, source: Path, inventory: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`release --json` prints the same document as `--json release`."""
    assert kdist(farm, "release", "--source", source, "--hosts", inventory, "--json") == 0
    assert json.loads(capsys.readouterr().out)["ok"]


def test_dry_run_connects_nowhere(
    farm: FakeFarm, source: Path, inventory: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """-n prints the plan and opens no connection (every host declares its platforms)."""
    code = kdist(farm, "release", "-n", "--json", "--source", source, "--hosts", inventory)
    assert code == 0 and farm.calls("connect") == {"h1": 0, "h2": 0}
    plan = json.loads(capsys.readouterr().out)
    assert [s["command"] for s in plan["slices"]] == ["make linux amd64", "make linux arm64"]


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["release", "--platforms", "linux/amd46"], "amd46"),
        (["release", "--idle-timeout", "soon"], "invalid float"),
        (["release", "--rebuild", "--resume"], "not allowed with"),
        (["frobnicate"], "invalid choice"),
        (["release", "--source", "/nonexistent/tree"], "not a directory"),
    ],
)
def test_option_errors_exit_2(
    farm: FakeFarm, argv: list[str], needle: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Bad options are configuration errors (exit 2) that say what is wrong."""
    assert kdist(farm, *argv) == ExitStatus.CONFIG_ERROR
    assert needle in capsys.readouterr().err


def test_help_and_version_exit_0(farm: FakeFarm, capsys: pytest.CaptureFixture[str]) -> None:
    """--help and --version are not errors."""
    assert kdist(farm, "--version") == 0
    assert kdist(farm, "release", "--help") == 0
    assert "--idle-timeout" in capsys.readouterr().out


def test_an_unknown_host_is_a_config_error(
    farm: FakeFarm, source: Path, inventory: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--host naming no inventory host: exit 2, naming the hosts there are."""
    assert kdist(farm, "release", "--source", source, "--hosts", inventory, "--host", "h9") == 2
    assert "h1, h2" in capsys.readouterr().err


def test_a_build_failure_exits_1(farm: FakeFarm, source: Path, inventory: Path) -> None:
    """The compiler says no on h2: exit 1."""
    farm["h2"].on(["make"], Reply(returncode=2, output="undefined: x"))
    assert kdist(farm, "-q", "release", "--source", source, "--hosts", inventory) == 1


def test_no_host_left_exits_3(
    farm: FakeFarm, source: Path, inventory: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Both hosts unreachable: exit 3, and the error names them."""
    farm["h1"].refuse = farm["h2"].refuse = "unreachable: connection refused"
    assert kdist(farm, "release", "--source", source, "--hosts", inventory) == 3
    assert "h1: unreachable" in capsys.readouterr().out


def test_an_integrity_violation_exits_4(farm: FakeFarm, source: Path, inventory: Path) -> None:
    """h1 returns an arm64 binary for linux/amd64: exit 4."""
    wrong = Reply(files={"bin/linux/amd64/tool": binary(Platform("linux", "arm64"))})
    farm["h1"].on(["make"], wrong)
    argv: list[str | Path] = ["release", "--source", source, "--hosts", inventory, "--platforms", "linux/amd64"]
    assert kdist(farm, *argv, "--attempts", "1") == 4


def test_an_unwritable_output_exits_2_before_any_login(
    farm: FakeFarm, source: Path, inventory: Path, tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    """An --output that is a file: a preflight error (exit 2) naming it, no connect."""
    out = tmp_path / "out"
    out.write_text("a file, not a folder")
    code = kdist(farm, "release", "--source", source, "--hosts", inventory, "--output", out)
    err = capsys.readouterr().err
    assert code == ExitStatus.CONFIG_ERROR
    assert err == f"kdist: error: --output {out}: not a folder\n"
    assert farm.calls("connect") == {"h1": 0, "h2": 0}


def _explode(call: Call) -> Reply:
    raise RuntimeError("a bug in kdist")


def test_a_bug_exits_70_without_a_traceback(
    farm: FakeFarm, source: Path, inventory: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """An unexpected exception is an internal error (70): one line, no traceback."""
    farm["h1"].on(["make"], _explode)
    assert kdist(farm, "release", "--source", source, "--hosts", inventory) == 70
    err = capsys.readouterr().err
    assert "internal error" in err and "a bug in kdist" in err and "Traceback" not in err


def test_debug_shows_the_traceback_of_a_bug(
    farm: FakeFarm, source: Path, inventory: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """With --debug (before or after the command) the traceback is printed too."""
    farm["h1"].on(["make"], _explode)
    assert kdist(farm, "release", "--debug", "--source", source, "--hosts", inventory) == 70
    assert "Traceback" in capsys.readouterr().err


def _interrupt(call: Call) -> Reply:
    os.kill(os.getpid(), signal.SIGINT)  # the user presses Ctrl-C while the build runs
    return Reply(hang=True)


def test_an_interrupt_exits_130_and_stops_the_builds(
    farm: FakeFarm, source: Path, inventory: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Ctrl-C during a build: exit 130, kill sent to the running attempt, nothing published."""
    farm["h1"].on(["make"], _interrupt)
    argv: list[str | Path] = ["release", "--source", source, "--hosts", inventory, "--platforms", "linux/amd64"]
    caller = signal.signal(signal.SIGINT, signal.default_int_handler)  # as an interactive shell starts us
    assert kdist(farm, *argv) == ExitStatus.INTERRUPTED
    err = capsys.readouterr().err
    assert err.splitlines()[-2:] == [
        "kdist: h1: stopped the build of linux/amd64 (attempt 1)",
        "kdist: interrupted",
    ]
    assert "Traceback" not in err
    assert len(farm["h1"].killed) == 1
    assert not (source / "_output/release-tars").exists()
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # the caller's, kept
    signal.signal(signal.SIGINT, caller)


def test_the_program_ignores_a_ctrl_c_that_comes_after_main(monkeypatch: pytest.MonkeyPatch) -> None:
    """`kdist` exits with main's status; a late second Ctrl-C cannot turn 130 into a SIGINT death."""
    import kdist.cli.main as cli_main

    monkeypatch.setattr(cli_main, "main", lambda: int(ExitStatus.INTERRUPTED))
    saved = {s: signal.getsignal(s) for s in cli_main.STOP_SIGNALS}
    try:
        with pytest.raises(SystemExit) as done:
            cli_main.entry()
        assert done.value.code == 130
        assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
        os.kill(os.getpid(), signal.SIGINT)  # the late Ctrl-C: nothing happens
    finally:
        for signum, handler in saved.items():
            signal.signal(signum, handler)


def test_hosts_check_exits_3_when_a_host_is_down(
    farm: FakeFarm, inventory: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`hosts check --json`: one row per host, exit 3 with h2 unreachable."""
    farm["h2"].refuse = "unreachable"
    assert kdist(farm, "hosts", "check", "--hosts", inventory, "--json") == 3
    rows = json.loads(capsys.readouterr().out)["hosts"]
    assert [(r["host"], r["status"]) for r in rows] == [("h1", "ok"), ("h2", "unreachable")]


def test_build_then_package_then_clean(
    farm: FakeFarm,
    source: Path,
    inventory: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """`release`, then `package` repacks the same tarballs, then `clean --remote` removes all."""
    # Not a git tree: without SOURCE_DATE_EPOCH each command would stamp its own second.
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    assert kdist(farm, "release", "--source", source, "--hosts", inventory, "-q") == 0
    sums = (source / "_output/release-tars/SHA256SUMS").read_text()
    assert kdist(farm, "package", "--source", source, "--json") == 0
    assert (source / "_output/release-tars/SHA256SUMS").read_text() == sums
    capsys.readouterr()
    assert kdist(farm, "clean", "--remote", "--source", source, "--hosts", inventory) == 0
    assert not (source / "_output").exists()
    removed = farm["h1"].runs(remove_tree("")[:4])
    assert [c.argv[-1].startswith("/var/tmp/kdist/src-") for c in removed] == [True]


def test_build_puts_binaries_where_the_project_does(
    farm: FakeFarm, source: Path, inventory: Path
) -> None:
    """`build --host h2` without --platform builds h2's own platform into the tree."""
    assert kdist(farm, "build", "--source", source, "--hosts", inventory, "--host", "h2") == 0
    assert (source / "bin/linux/arm64/tool").is_file()


def test_package_without_binaries_exits_2(
    farm: FakeFarm, source: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`package` with nothing built says where it looked."""
    assert kdist(farm, "package", "--source", source) == 2
    assert "build first" in capsys.readouterr().err


def test_dry_run_prints_the_plan_as_text(
    farm: FakeFarm, source: Path, inventory: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """-n without --json prints each slice's command, each host's workdir and what follows."""
    argv: list[str | Path] = ["release", "-n", "--source", source, "--hosts", inventory, "--platforms", "linux/s390x"]
    assert kdist(farm, *argv) == 0
    out = capsys.readouterr().out
    assert "make linux s390x" in out and "h1: workdir /var/tmp/kdist/src-" in out
    assert "then: package into" in out and "note: linux/s390x: no native host" in out


def test_dry_run_shows_each_slice_env_and_private_tree(
    farm: FakeFarm, source: Path, inventory: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """-n prints every slice's env (platform_env for its kind of build) and its private tree."""
    (source / "kdist.yaml").write_text(
        PROFILE.replace("bin/{os}/{arch}", "_output/bin")
        + "platform_env: {linux/arm64: {cross: {CC: aarch64-linux-gnu-gcc}, native: {N: '1'}}}\n"
    )
    argv: list[str | Path] = ["release", "-n", "--source", source, "--hosts", inventory, "--host", "h1"]
    assert kdist(farm, *argv) == 0
    out = capsys.readouterr().out
    arm64 = next(line for line in out.splitlines() if line.startswith("linux/arm64 on h1: env "))
    amd64 = next(line for line in out.splitlines() if line.startswith("linux/amd64 on h1: env "))
    assert "CC=aarch64-linux-gnu-gcc" in arm64 and " N=1" not in arm64
    assert "CC=" not in amd64
    assert "linux/arm64 on h1: builds in /var/tmp/kdist/src-" in out
    assert "/.kdist/slots/linux-arm64 (hard links)" in out
    assert "h1: git     the head node's answers: " in out and "/.kdist/git -> " in out
    assert kdist(farm, *argv, "--json") == 0
    doc = json.loads(capsys.readouterr().out)
    jsonschema.validate(doc, json.loads(documents.SCHEMA.read_text()))
    assert {s["platform"]: "CC=aarch64" in s["env"] for s in doc["slices"]} == {
        "linux/amd64": False, "linux/arm64": True,
    }  # fmt: skip


def test_dry_run_shows_expected_times_and_the_critical_path_from_history(
    farm: FakeFarm, source: Path, inventory: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """-n reads OUTPUT's build history: start and end per slice, the makespan, the critical path."""
    learned = History().add("linux/amd64", "h1", 30.0).add("linux/arm64", "h2", 50.0)
    save_history(source / "_output", learned)
    assert kdist(farm, "release", "-n", "--json", "--source", source, "--hosts", inventory) == 0
    plan = json.loads(capsys.readouterr().out)
    times = {s["platform"]: (s["expected_start"], s["expected_end"]) for s in plan["slices"]}
    assert times == {"linux/amd64": (0.0, 30.0), "linux/arm64": (0.0, 50.0)}
    assert plan["expected_seconds"] == 50.0 and plan["critical_path"] == ["linux-arm64"]
    assert kdist(farm, "release", "-n", "--source", source, "--hosts", inventory) == 0
    assert "expected: 50s; critical path: linux/arm64 on h2 0-50s" in capsys.readouterr().out


def test_quick_release_builds_only_this_machine_platform(
    farm: FakeFarm, source: Path, inventory: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """quick-release plans linux/<this arch> only, with no unit tests."""
    assert (
        kdist(farm, "quick-release", "-n", "--json", "--source", source, "--hosts", inventory) == 0
    )
    plan = json.loads(capsys.readouterr().out)
    assert len(plan["slices"]) == 1 and plan["slices"][0]["platform"].startswith("linux/")
    assert not any("unit tests" in line for line in plan["after"])


def test_a_bad_source_date_epoch_is_a_config_error(
    farm: FakeFarm, source: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    """SOURCE_DATE_EPOCH must be a number of seconds."""
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "yesterday")
    assert kdist(farm, "release", "-n", "--source", source) == 2
    assert "SOURCE_DATE_EPOCH" in capsys.readouterr().err


def test_package_dry_run_and_unknown_platforms(
    farm: FakeFarm, source: Path, inventory: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`package -n` lists what it would write; a platform not in the output is refused."""
    assert kdist(farm, "release", "-q", "--source", source, "--hosts", inventory) == 0
    assert kdist(farm, "package", "-n", "--source", source) == 0
    assert "tool-linux-arm64.tar.gz" in capsys.readouterr().out
    assert kdist(farm, "package", "--source", source, "--platforms", "linux/s390x") == 2
    assert "no binaries for linux/s390x" in capsys.readouterr().err
    assert kdist(farm, "package", "--source", source) == 0
    assert "tool-linux-amd64.tar.gz" in capsys.readouterr().out


def test_clean_dry_run_and_a_failing_host(
    farm: FakeFarm, source: Path, inventory: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`clean -n` prints the commands; a host that fails to clean makes `clean` exit 3."""
    assert kdist(farm, "clean", "-n", "--remote", "--source", source, "--hosts", inventory) == 0
    out = capsys.readouterr().out
    assert "local: rm -rf --" in out and "h2: sh -c" in out
    farm["h2"].refuse = "unreachable"
    argv: list[str | Path] = ["clean", "--remote", "--json", "--source", source, "--hosts", inventory]
    assert kdist(farm, *argv) == 3
    doc = json.loads(capsys.readouterr().out)
    assert [h["error"] != "" for h in doc["hosts"]] == [False, True]


def test_hosts_check_table(
    farm: FakeFarm, inventory: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`hosts check` without --json prints one row per host and exits 0 when all are usable."""
    assert kdist(farm, "hosts", "check", "--hosts", inventory) == 0
    out = capsys.readouterr().out
    assert "h1" in out and "h2" in out and "go1.22.4" in out


def test_the_inventory_comes_from_kdist_hosts(
    farm: FakeFarm, source: Path, inventory: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without --hosts, $KDIST_HOSTS names the inventory."""
    monkeypatch.setenv("KDIST_HOSTS", str(inventory))
    assert kdist(farm, "release", "-q", "--source", source) == 0
    assert farm.calls("connect") == {"h1": 1, "h2": 1}


def test_every_json_document_follows_the_schema(
    farm: FakeFarm, source: Path, inventory: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """release, -n, hosts list, hosts check, package and clean print schema-valid documents."""
    schema = json.loads(documents.SCHEMA.read_text())
    validator = jsonschema.Draft202012Validator(schema)
    runs: list[list[str | Path]] = [
        ["release", "--source", source, "--hosts", inventory],
        ["release", "-n", "--source", source, "--hosts", inventory],
        ["hosts", "list", "--hosts", inventory],
        ["hosts", "check", "--hosts", inventory],
        ["package", "--source", source],
        ["clean", "--source", source, "--hosts", inventory],
    ]
    kinds = []
    for argv in runs:
        capsys.readouterr()
        assert kdist(farm, "--json", *argv) == 0, capsys.readouterr().err
        doc = json.loads(capsys.readouterr().out)
        validator.validate(doc)
        kinds.append(doc["kind"])
    assert kinds == ["run", "plan", "hosts", "hosts-check", "package", "clean"]


def test_a_closed_stdout_ends_quietly_with_141(tmp_path: Path, inventory: Path) -> None:
    """`kdist hosts list --json | head -c0`: no traceback, no internal error, SIGPIPE's 141."""
    import subprocess
    import sys

    reader = subprocess.Popen(  # the reader closes its end before kdist writes
        [sys.executable, "-m", "kdist", "hosts", "list", "--json", "--hosts", str(inventory)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[2])},
    )
    assert reader.stdout is not None and reader.stderr is not None
    reader.stdout.close()
    err = reader.stderr.read().decode()
    assert reader.wait(timeout=60) == int(ExitStatus.OUTPUT_CLOSED)  # 141
    assert "Traceback" not in err and "internal error" not in err and "Exception" not in err


def test_dry_run_shows_the_compressed_sync(
    farm: FakeFarm, source: Path, inventory: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """-n --compress prints the rsync command each host's sync runs, with --compress."""
    argv: list[str | Path] = ["release", "-n", "--json", "--compress", "--source", source, "--hosts", inventory]
    assert kdist(farm, *argv) == 0
    plan = json.loads(capsys.readouterr().out)
    assert all("--compress" in host["sync"] for host in plan["hosts"])
