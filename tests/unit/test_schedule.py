"""Dynamic placement: learned estimates, the LPT queue, cross only when it pays, hedging, ETA."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from kdist.cli.documents import exit_status
from kdist.cli.options import ReleaseOptions, RunOptions, parse
from kdist.engine import pipeline, placement
from kdist.engine.estimate import DEFAULT_SECONDS, Estimates, History, learn
from kdist.engine.job import Job, RunResult
from kdist.engine.journal import load_history, save_history
from kdist.engine.plan import make_plan
from kdist.engine.queue import SliceQueue
from kdist.errors import ExitStatus
from kdist.events import Estimate, Hedged, Note
from kdist.model import Host, Limits, Platform, Status
from kdist.testing.builders import FakeFarm, host, job
from kdist.testing.fake import Reply, binary
from kdist.testing.reporter import RecordingReporter

AMD64 = Platform("linux", "amd64")
SEVEN = ("linux/amd64", "linux/arm64", "linux/s390x", "linux/ppc64le", "linux/386",
         "linux/arm", "linux/riscv64")  # fmt: skip
# The case: slices of 5, 5, 10, 10, 20, 30 and 40 s; the longest asked for last.
SECONDS = dict(zip(SEVEN, (5.0, 5.0, 10.0, 10.0, 20.0, 30.0, 40.0), strict=True))
FOUR = tuple(host(f"h{i}") for i in range(1, 5))  # interchangeable: every platform cross


def history(seconds: dict[tuple[str, str], float]) -> History:
    """A history with one sample per (platform, host)."""
    learned = History()
    for (platform, name), value in seconds.items():
        learned = learned.add(platform, name, value)
    return learned


def rules(hosts: tuple[Host, ...], estimates: Estimates, **natives: str) -> placement.Rules:
    """Placement rules over `hosts`, with native platforms per host name."""
    native = {name: (Platform.parse(p),) for name, p in natives.items()}
    return placement.Rules(hosts, native, estimates)


def platforms(*names: str) -> tuple[Platform, ...]:
    """Platforms from their names."""
    return tuple(Platform.parse(n) for n in names)


def test_without_history_every_slice_is_the_documented_default() -> None:
    """No history: DEFAULT_SECONDS everywhere, so the plan keeps the requested order."""
    estimates = learn(History())
    assert estimates.seconds("linux/amd64", "h1") == DEFAULT_SECONDS
    timed = placement.simulate(rules(FOUR, estimates), platforms(*SEVEN))
    assert [str(t.platform) for t in timed][:4] == list(SEVEN[:4])


def test_lpt_puts_the_longest_slice_first_and_meets_the_lower_bound() -> None:
    """With history the 40 s slice starts at once; the makespan is max(40, 120/4) = 40."""
    learned = history({(p, "h1"): s for p, s in SECONDS.items()})
    timed = placement.simulate(rules(FOUR, learn(learned)), platforms(*SEVEN))
    first = min(timed, key=lambda t: (t.start, str(t.platform)))
    assert max(t.end for t in timed) == pytest.approx(40.0)
    assert [t.start for t in timed if str(t.platform) == "linux/riscv64"] == [0.0]
    assert first.start == 0.0


def test_plan_shows_expected_times_and_the_critical_path(tmp_path: Path) -> None:
    """make_plan is pure: the same (hosts, history) give the same times and critical path."""
    estimates = learn(history({(p, "h1"): s for p, s in SECONDS.items()}))
    req = job(tmp_path, platforms=",".join(SEVEN)).request()
    first, again = make_plan(FOUR, {}, req, estimates), make_plan(FOUR, {}, req, estimates)
    assert first == again
    assert first.makespan == pytest.approx(40.0)
    assert first.expected["linux-riscv64"] == (0.0, 40.0)
    assert first.critical == ("linux-riscv64",)


def test_speed_factors_are_learned_and_a_new_host_counts_as_its_peers() -> None:
    """h2 takes twice as long as h1: a platform only h1 built is expected to take 2x on h2."""
    learned = history({
        ("linux/amd64", "h1"): 10.0, ("linux/amd64", "h2"): 20.0,
        ("linux/arm64", "h1"): 30.0, ("linux/arm64", "h2"): 60.0,
        ("linux/s390x", "h1"): 8.0, ("linux/s390x", "h3"): 8.0,
    })  # fmt: skip
    estimates = learn(learned)
    assert estimates.seconds("linux/amd64", "h2") == 20.0  # seen: its own median
    assert estimates.seconds("linux/s390x", "h2") == pytest.approx(16.0, rel=0.05)
    assert estimates.speed["h2"] == pytest.approx(2 * estimates.speed["h1"])
    assert estimates.seconds("linux/arm64", "h9") == pytest.approx(
        estimates.base["linux/arm64"]
    )  # a host never seen is a typical (median) one
    assert estimates.seconds("linux/riscv64", "h1") > 0  # never built: the median platform


def test_history_is_written_and_read_back(tmp_path: Path) -> None:
    """The history survives a run in OUTPUT/.kdist/history.json; a damaged file is empty."""
    learned = history({("linux/amd64", "h1"): 12.5}).add("linux/amd64", "h1", 13.5)
    save_history(tmp_path, learned)
    assert load_history(tmp_path) == learned
    (tmp_path / ".kdist/history.json").write_text("{not json")
    assert load_history(tmp_path) == History()


def test_cross_only_when_it_finishes_sooner_than_waiting_for_a_native_host() -> None:
    """h2 is native for both; h1 cross-builds the second only while that is quicker."""
    hosts = (host("h1"), host("h2"))
    natives = {"h2": platforms("linux/arm64", "linux/s390x"), "h1": platforms("linux/amd64")}
    wanted = platforms("linux/arm64", "linux/s390x")
    even = learn(history({("linux/arm64", "h2"): 30.0, ("linux/s390x", "h2"): 30.0}))
    timed = placement.simulate(placement.Rules(hosts, natives, even), wanted)
    assert {(str(t.platform), t.host, t.cross) for t in timed} == {
        ("linux/arm64", "h2", False), ("linux/s390x", "h1", True),
    }  # fmt: skip
    slow_h1 = Estimates(direct=even.direct, base=even.base, speed={"h1": 3.0, "h2": 1.0})
    timed = placement.simulate(placement.Rules(hosts, natives, slow_h1), wanted)
    assert {t.host for t in timed} == {"h2"}  # 90 s across vs 60 s waiting: it waits
    native_only = placement.Rules(hosts, natives, even, cross=False)
    assert {t.host for t in placement.simulate(native_only, wanted)} == {"h2"}


def test_the_queue_grants_slots_longest_first_on_a_fake_clock() -> None:
    """One slot, three slices waiting: granted 40, 20, then 5 s; the ETA follows the clock."""
    now = [100.0]
    learned = history({("linux/amd64", "h1"): 5.0, ("linux/arm64", "h1"): 40.0,
                       ("linux/s390x", "h1"): 20.0})  # fmt: skip
    wanted = platforms("linux/amd64", "linux/arm64", "linux/s390x")
    order: list[str] = []

    async def scenario() -> None:
        queue = SliceQueue(rules((host("h1"),), learn(learned)), wanted, clock=lambda: now[0])
        busy = await queue.acquire(wanted[2])  # the first asker gets the idle slot
        assert busy == "h1"
        loop = asyncio.get_running_loop()
        waiters = [loop.create_task(queue.acquire(p), name=str(p)) for p in wanted[:2]]
        await asyncio.sleep(0)
        assert queue.remaining() == pytest.approx(20 + 40 + 5)
        now[0] += 20
        queue.release(wanted[2], "h1")
        while waiters:
            done, _ = await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                waiters.remove(task)
                order.append(task.get_name())
                assert queue.remaining() == pytest.approx(45.0 if len(order) == 1 else 5.0)
                queue.release(Platform.parse(task.get_name()), "h1")

    asyncio.run(scenario())
    assert order == ["linux/arm64", "linux/amd64"]


# --- the run: hedging and failover on fake hosts ---------------------------------------------


@pytest.fixture
def source(tmp_path: Path) -> Path:
    """A source tree of one Go file."""
    (tmp_path / "src").mkdir()
    (tmp_path / "src/main.go").write_text("package main\n")
    return tmp_path / "src"


def quick_hedge(source: Path, **changes: object) -> Job:
    """A release of linux/amd64 whose stragglers are hedged without the 5 s margin."""
    return job(source, limits=Limits(backoff=0.0, hedge_margin=0.0), **changes)  # type: ignore[arg-type]


def two_amd64(tmp_path: Path, source: Path) -> FakeFarm:
    """Two amd64 hosts; history says linux/amd64 takes 0.2 s on either."""
    save_history(
        source / "_output", history({("linux/amd64", "h1"): 0.2, ("linux/amd64", "h2"): 0.2})
    )
    farm = FakeFarm(tmp_path / "farm", [host("h1", "linux/amd64"), host("h2", "linux/amd64")])
    farm["h2"].on(
        ["make", "linux", "amd64"], Reply(files={"bin/linux/amd64/tool": binary(AMD64, b"h2")})
    )
    return farm


def run(the_job: Job, farm: FakeFarm, reporter: RecordingReporter) -> RunResult:
    """One run on the fake farm."""
    return asyncio.run(pipeline.run(the_job, farm.hosts, farm.factory, reporter))


def test_a_straggler_gets_a_twin_that_wins_and_the_straggler_is_stopped(
    tmp_path: Path, source: Path
) -> None:
    """h1 hangs: past its estimate a twin starts on idle h2; h2's binary is published, h1 killed."""
    farm = two_amd64(tmp_path, source)
    farm["h1"].on(["make"], Reply(hang=True))
    reporter = RecordingReporter()
    result = run(quick_hedge(source), farm, reporter)
    assert result.ok
    [built] = result.results
    assert built.slice.host == "h2" and built.hedge is not None
    assert (built.hedge.host, built.hedge.twin, built.hedge.winner) == ("h1", "h2", "h2")
    assert built.hedge.stopped == "h1" and built.hedge.after >= 0.3  # 1.5 x 0.2 s
    assert len(farm["h1"].killed) == 1  # the host-side guard was told to kill its group
    assert (source / "_output/bin/linux/amd64/tool").read_bytes().endswith(b"h2")
    staging = [p.name for p in (source / "_output/bin/linux").iterdir() if p.name != "amd64"]
    assert staging == []  # the loser's staging folder is gone
    log = (source / "_output/logs/linux-amd64.log").read_text()
    assert "[twin on h2] $ make linux amd64" in log  # one log, the twin's lines marked
    hedges = [e for e in reporter.events if isinstance(e, Hedged)]
    assert [h.winner for h in hedges] == ["", "h2"]
    learned = load_history(source / "_output").samples
    assert learned[("linux/amd64", "h1")][-1] >= 0.3  # the straggler's time was learned


def test_when_the_straggler_finishes_first_the_twin_is_stopped(
    tmp_path: Path, source: Path
) -> None:
    """h1 is late but done before h2's slower twin: h1's binary stays, the twin is killed."""
    farm = two_amd64(tmp_path, source)
    farm["h1"].on(["make"], Reply(delay=0.6, files={"bin/linux/amd64/tool": binary(AMD64, b"h1")}))
    farm["h2"].on(["make"], Reply(hang=True))
    result = run(quick_hedge(source), farm, RecordingReporter())
    [built] = result.results
    assert result.ok and built.slice.host == "h1"
    assert built.hedge is not None and built.hedge.stopped == "h2"
    assert len(farm["h2"].killed) == 1 and farm["h1"].killed == []
    assert (source / "_output/bin/linux/amd64/tool").read_bytes().endswith(b"h1")


def test_a_straggler_caught_sending_a_wrong_binary_is_not_forgotten_when_its_twin_wins(
    tmp_path: Path, source: Path
) -> None:
    """h1 is late, then sends an arm64 binary; h2's twin wins: h1 left out, the run exits 4."""
    farm = two_amd64(tmp_path, source)
    wrong = Reply(delay=0.6, files={"bin/linux/amd64/tool": binary(Platform("linux", "arm64"))})
    farm["h1"].on(["make"], wrong)
    farm["h2"].on(["make"], Reply(delay=1.2, files={"bin/linux/amd64/tool": binary(AMD64, b"h2")}))
    reporter = RecordingReporter()
    result = run(quick_hedge(source), farm, reporter)
    [built] = result.results
    assert built.ok and built.slice.host == "h2"
    assert any("h1: linux/amd64: tool is a linux/arm64 binary" in v for v in built.violations)
    assert exit_status(result) is ExitStatus.INTEGRITY_ERROR and not result.ok
    assert any("h1 left out" in e.text for e in reporter.events if isinstance(e, Note))


def test_no_hedge_never_starts_a_twin(tmp_path: Path, source: Path) -> None:
    """--no-hedge: the late build is waited for; h2 never builds."""
    farm = two_amd64(tmp_path, source)
    farm["h1"].on(["make"], Reply(delay=0.6, files={"bin/linux/amd64/tool": binary(AMD64, b"h1")}))
    reporter = RecordingReporter()
    result = run(quick_hedge(source, hedge=False), farm, reporter)
    assert result.ok and result.results[0].hedge is None
    assert farm["h2"].runs(["make"]) == []
    assert not [e for e in reporter.events if isinstance(e, Hedged)]


def test_failover_goes_back_through_the_queue(tmp_path: Path, source: Path) -> None:
    """h1's connection drops during the build: h1 is left out, the slice is rebuilt on h2."""
    farm = two_amd64(tmp_path, source)
    farm["h1"].on(["make"], Reply(drop=True))
    result = run(quick_hedge(source), farm, RecordingReporter())
    [built] = result.results
    assert result.ok and built.slice.host == "h2" and built.attempts == 2
    assert built.hedge is None


def test_the_eta_is_reported_and_reaches_zero(tmp_path: Path, source: Path) -> None:
    """Estimate events follow the run; the run's document keeps how the estimate moved."""
    farm = two_amd64(tmp_path, source)
    reporter = RecordingReporter()
    result = run(quick_hedge(source, platforms="linux/amd64,linux/arm64"), farm, reporter)
    estimates = [e.remaining for e in reporter.events if isinstance(e, Estimate)]
    assert result.ok and estimates and estimates[-1] == 0.0
    assert max(estimates) > 0.0
    assert result.estimates and result.estimates[-1][1] == 0.0
    assert all(r.status is Status.OK for r in result.results)


def test_slices_that_ask_at_once_are_granted_longest_first(tmp_path: Path, source: Path) -> None:
    """One slot, three slices asking in the same turn: built in LPT order, not in asking order."""
    learned = history({("linux/amd64", "h1"): 1.0, ("linux/arm64", "h1"): 3.0,
                       ("linux/s390x", "h1"): 2.0})  # fmt: skip
    save_history(source / "_output", learned)
    farm = FakeFarm(tmp_path / "farm", [host("h1", "linux/amd64")])
    the_job = quick_hedge(source, platforms="linux/amd64,linux/arm64,linux/s390x")
    assert run(the_job, farm, RecordingReporter()).ok
    built = [c.argv[2] for c in farm["h1"].runs(["make"])]
    assert built == ["arm64", "s390x", "amd64"]


def test_no_hedge_is_an_option_whose_default_lives_in_run_options() -> None:
    """`--no-hedge` turns hedging off; without it RunOptions' default (on) holds."""
    on = parse(["release", "--source", "."]).command
    off = parse(["release", "--source", ".", "--no-hedge"]).command
    assert isinstance(on, ReleaseOptions) and isinstance(off, ReleaseOptions)
    assert on.run.hedge is RunOptions().hedge is True
    assert off.run.hedge is False


def test_go_version_is_asked_once_per_host(tmp_path: Path, source: Path) -> None:
    """The host's setup takes the toolchain check's answer instead of asking again."""
    farm = FakeFarm(tmp_path / "farm", [host("h1", "linux/amd64")])
    result = run(job(source), farm, RecordingReporter())
    assert result.ok and len(farm["h1"].runs(["go", "version"])) == 1
    assert result.results[0].record is not None
    assert result.results[0].record.toolchain == "go1.22.4"


def test_the_eta_of_an_overdue_build_is_not_zero() -> None:
    """Past its estimate a build is expected by its straggling point, then a whole estimate on."""
    now = [0.0]
    learned = learn(history({("linux/amd64", "h1"): 10.0}))
    wanted = platforms("linux/amd64")

    async def scenario() -> list[float]:
        queue = SliceQueue(rules((host("h1"),), learned), wanted, clock=lambda: now[0])
        assert await queue.acquire(wanted[0]) == "h1"
        seen = []
        for moment in (4.0, 12.0, 20.0):
            now[0] = moment
            seen.append(queue.remaining())
        return seen

    assert asyncio.run(scenario()) == pytest.approx([6.0, 3.0, 10.0])  # straggles at 15 s


def test_the_first_host_ready_takes_the_longest_slice(tmp_path: Path, source: Path) -> None:
    """h1's sync is slow: h2, set up first, takes arm64 (the longest), though the plan said h1."""
    learned = history({("linux/arm64", "h1"): 3.0, ("linux/amd64", "h1"): 1.0})
    save_history(source / "_output", learned)
    farm = FakeFarm(tmp_path / "farm", [host("h1", "linux/amd64"), host("h2", "linux/amd64")])
    farm["h1"].push_reply = Reply(delay=0.5)
    result = run(
        quick_hedge(source, platforms="linux/amd64,linux/arm64"), farm, RecordingReporter()
    )
    assert result.ok
    assert result.plan.expected["linux-arm64"] == (0.0, 3.0)
    arm64 = next(r for r in result.results if str(r.slice.platform) == "linux/arm64")
    assert arm64.slice.host == "h2" and farm["h2"].runs(["make"])[0].argv[2] == "arm64"


def test_a_farm_of_200_hosts_starts_every_slice_at_once() -> None:
    """28 slices on 200 single-slot hosts: each on a host of its own, all at t=0."""
    hosts = tuple(host(f"h{i}", "linux/amd64") for i in range(200))
    wanted = [Platform(o, a) for o in ("linux", "windows", "freebsd", "darwin")
              for a in ("amd64", "arm64", "386", "arm", "s390x", "ppc64le", "riscv64")]  # fmt: skip
    natives = {h.name: h.platforms or () for h in hosts}
    timed = placement.simulate(placement.Rules(hosts, natives, Estimates()), wanted)
    assert len(timed) == 28 and {t.start for t in timed} == {0.0}
    assert len({t.host for t in timed}) == 28


def test_a_platform_without_history_is_never_hedged(tmp_path: Path, source: Path) -> None:
    """linux/amd64 never built: its estimate is a guess (the median platform), so no twin."""
    save_history(source / "_output", history({("linux/arm64", "h1"): 0.1}))
    farm = FakeFarm(tmp_path / "farm", [host("h1", "linux/amd64"), host("h2", "linux/amd64")])
    farm["h1"].on(["make"], Reply(delay=0.6, files={"bin/linux/amd64/tool": binary(AMD64)}))
    result = run(quick_hedge(source), farm, RecordingReporter())  # 0.15 s, were it known
    assert result.ok and result.results[0].hedge is None
    assert farm["h2"].runs(["make"]) == []
