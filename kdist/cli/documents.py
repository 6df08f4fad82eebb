"""Pure views of a plan and of a run: the JSON documents and the exit status.

Every document has `schema_version` and `kind`; `document.schema.json` beside this module is
the JSON Schema they follow (a test validates real documents against it). A change that
removes or renames a field, or changes its meaning, raises SCHEMA_VERSION.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kdist.config.version import version_warnings
from kdist.engine import plan
from kdist.errors import ExitStatus, KdistError
from kdist.model import (
    REPRODUCE_ALL,
    Host,
    Inventory,
    Layout,
    Plan,
    Platform,
    Slice,
    SliceResult,
    Status,
)
from kdist.packaging.images import RELEASE_IMAGES, describe, image_specs
from kdist.packaging.verify import Report
from kdist.remote.argv import in_dir, rsync_push, to_shell
from kdist.stages.gitrepo import MIRROR
from kdist.text import inert_tree

if TYPE_CHECKING:
    from kdist.engine.job import Job, RunResult

SCHEMA_VERSION = 1
LOGS = "logs"  # OUTPUT/logs: a log per slice, and RUN_DOCUMENT
RUN_DOCUMENT = "run.json"  # OUTPUT/logs/run.json: the last run's document, as --json prints it
SCHEMA = Path(__file__).with_name("document.schema.json")


def dumps(doc: dict[str, Any]) -> str:
    """A document as JSON text; the final guard: host text in it is inert, valid UTF-8."""
    return json.dumps(inert_tree(doc), indent=2)


def timestamp(unix: float) -> str:
    """A Unix time as RFC 3339 UTC with milliseconds (`2026-01-02T03:04:05.678Z`)."""
    moment = datetime.fromtimestamp(unix, timezone.utc)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def envelope(kind: str, started: float, finished: float, status: ExitStatus) -> dict[str, Any]:
    """The fields every document starts with: what it is, when, and how the command ended."""
    return {
        "schema_version": SCHEMA_VERSION,
        "kind": kind,
        "started": timestamp(started),
        "finished": timestamp(finished),
        "exit_status": int(status),
        "exit_class": status.name.lower(),
    }


def error_document(
    exc: KdistError, problems: Sequence[str], started: float, finished: float
) -> dict[str, Any]:
    """The document of a command that stopped before it could run (preflight, options)."""
    return {
        **envelope("error", started, finished, exc.exit_status),
        "ok": False,
        "error": type(exc).__name__,
        "problems": list(problems),
    }


def plan_summary(
    job: Job, hosts: Sequence[Host], the_plan: Plan, started: float, finished: float
) -> dict[str, Any]:
    """The plan as data: per slice the exact command sent, per host the sync and the env."""
    by_name = {h.name: h for h in hosts}
    slices = [
        {
            "platform": str(s.platform),
            "host": s.host,
            "cross": s.cross,
            "workdir": s.workdir,
            "tree": s.tree or None,
            "command": to_shell(s.argv),
            "remote_command": to_shell(in_dir(s.argv, s.workdir, slice_env(s, the_plan))),
            "artifacts": s.artifacts,
            "env": _env_words(slice_env(s, the_plan)),
            "expected_start": the_plan.expected.get(s.key, (0.0, 0.0))[0],
            "expected_end": the_plan.expected.get(s.key, (0.0, 0.0))[1],
        }
        for s in the_plan.slices
    ]
    if job.container is not None:
        for doc, s in zip(slices, the_plan.slices, strict=True):
            doc["container_command"] = to_shell(_container_words(job, s, the_plan))
    host_docs = [_host_doc(job, by_name[name], the_plan) for name in the_plan.hosts]
    return {
        **envelope("plan", started, finished, ExitStatus.OK),
        "project": job.profile.name,
        "version": job.version.version,
        "source": str(job.source),
        "slices": slices,
        "hosts": host_docs,
        "after": _after(job, the_plan),
        "expected_seconds": round(the_plan.makespan, 3),
        "critical_path": list(the_plan.critical),
        "images": planned_images(job, tuple(s.platform for s in the_plan.slices)),
        "notes": version_warnings(job.version) + list(the_plan.notes),
    }


def planned_images(job: Job, platforms: tuple[Platform, ...] = ()) -> list[dict[str, Any]]:
    """The server images a run would make: name, platform, tags and base (nothing resolved)."""
    if job.images is None or not job.package or job.profile.layout is not Layout.KUBERNETES:
        return []
    specs = image_specs(job.images, job.version.version, job.platforms or platforms)
    return [
        {
            "name": s.name,
            "platform": str(s.platform),
            "tags": list(s.tags),
            "base": s.base,
            "base_from": s.base_from,
        }
        for s in specs
    ]


def _container_words(job: Job, s: Slice, the_plan: Plan) -> list[str]:
    """The `docker run` a container build amounts to; run-time facts stay placeholders."""
    from kdist.stages import container  # docker is imported only for container builds

    assert job.container is not None
    user = "<uid:gid owning the workdir>"
    box = container.Box(
        image=job.container.image,
        argv=s.argv,
        workdir=s.workdir,
        env={**slice_env(s, the_plan), **container.cache_env()},
        user=user,
        network=job.container.network,
        volume=container.cache_volume(job.profile.name, "<uid>"),
        labels=container.labels(run="<run>", attempt=f"<run>-{s.key}-1", tree=job.tree_id,
                                host=s.host, project=job.profile.name),
        mount=s.tree,
    )  # fmt: skip
    return box.docker_run()


def slice_env(s: Slice, the_plan: Plan) -> Mapping[str, str]:
    """The environment a slice builds with (its own, else its host's)."""
    return s.env or the_plan.env[s.host]


def _after(job: Job, the_plan: Plan) -> list[str]:
    steps: list[str] = []
    if job.reproduce:
        count = "every slice" if job.reproduce == REPRODUCE_ALL else f"{job.reproduce} slice(s)"
        steps.append(f"rebuild {count} on a second host and compare every binary")
    if job.profile.smoke:
        steps.append(f"smoke test each binary on a native host: {to_shell(job.profile.smoke)}")
    if job.run_tests and job.profile.test:
        steps.append(f"unit tests on {the_plan.test_host}: {to_shell(job.profile.test)}")
    if job.package and job.profile.package:
        steps.append(f"package on this machine: {to_shell(job.profile.package)}")
    elif job.package:
        steps.append(f"package into {job.output / 'release-tars'} (checksummed, all or nothing)")
    if job.package:
        signed = f", signed with {job.sign_key}" if job.sign_key else ""
        steps.append(f"SBOM per platform and provenance beside the tarballs{signed}")
    return steps


def _host_doc(job: Job, host: Host, the_plan: Plan) -> dict[str, Any]:
    workdir = plan.tree_workdir(host, job.request())
    sync = (
        "(builds in place)"
        if host.local
        else to_shell(rsync_push("<kdist-relay>", job.source, workdir, compress=job.compress))
    )
    env = _env_words(the_plan.env[host.name])
    return {
        "name": host.name,
        "address": host.address,
        "workdir": workdir,
        "sync": sync,
        "env": env,
        "git": _git_doc(job, host, workdir),
    }


def _git_doc(job: Job, host: Host, workdir: str) -> str:
    """What the host's tree gets of git: the head node's answers, or nothing (removed)."""
    if host.local:
        return "(the checkout's own .git)"
    if not job.profile.git_answers:
        return f"none (git_answers: false; {workdir}/.git is removed)"
    mirror = job.output / MIRROR
    return f"the head node's answers: {mirror} -> {workdir}/{MIRROR}, {workdir}/.git"


def _env_words(env: Mapping[str, str]) -> str:
    return " ".join(f"{k}={v}" for k, v in sorted(env.items()))


def _slice_doc(job: Job, r: SliceResult) -> dict[str, Any]:
    return {
        "platform": str(r.slice.platform),
        "host": r.slice.host,
        "cross": r.slice.cross,
        "status": r.status.value,
        "phase": r.phase,
        "duration": round(r.duration, 3),
        "error": r.error,
        "log": r.log,
        "log_tail": list(r.excerpt),
        "attempts": r.attempts,
        "violations": list(r.violations),
        "reused": r.reused,
        "image": r.image,
        "binaries": str(job.dest(r.slice.platform)),
        "artifacts": [{"path": a.path, "sha256": a.sha256, "size": a.size} for a in r.artifacts],
        "attempt": r.record.attempt if r.record else None,
        "host_key": r.record.host_key if r.record else None,
        "toolchain": r.record.toolchain if r.record else None,
        "reproducibility": _reproduction_doc(r),
        "hedge": _hedge_doc(r),
        "smoke": [
            {"binary": s.binary, "host": s.host or None, "ok": s.ok if s.tested else None}
            for s in r.smoke
        ],
    }


def _reproduction_doc(r: SliceResult) -> dict[str, Any] | None:
    rep = r.reproduction
    if rep is None:
        return None
    return {
        "agreed": rep.agreed,
        "host": rep.record.host if rep.record else None,
        "differences": list(rep.differences),
        "reports": list(rep.reports),
        "error": rep.error,
    }


def verify_summary(report: Report, started: float, finished: float) -> dict[str, Any]:
    """The JSON document of `kdist verify`."""
    status = ExitStatus.OK if report.ok else ExitStatus.INTEGRITY_ERROR
    return {
        **envelope("verify", started, finished, status),
        "ok": report.ok,
        "folder": str(report.folder),
        "findings": [{"file": f.file, "ok": f.ok, "message": f.message} for f in report.findings],
    }


def run_summary(job: Job, result: RunResult) -> dict[str, Any]:
    """The JSON document of a finished run."""
    failed = [r for r in result.results if not r.ok]
    if result.ok:
        title = f"{'release' if job.package else 'build'} ok: {job.version.version}"
    elif failed:
        hosts = ", ".join(sorted({r.slice.host for r in failed}))
        title = f"FAILED: {len(failed)} of {len(result.results)} slices failed (on {hosts})"
    elif violations := [v for r in result.results for v in r.violations]:
        title = f"FAILED: integrity violation, nothing published: {violations[0]}"
    elif result.test_error:
        title = f"FAILED: {result.test_error.splitlines()[0]}"
    else:
        title = f"FAILED: packaging: {result.package_error}"
    return {
        **envelope("run", result.started, result.finished, exit_status(result)),
        "ok": result.ok,
        "title": title,
        "command": "release" if job.package else "build",
        "run_id": result.run_id,
        "project": job.profile.name,
        "version": job.version.version,
        "tree_state": job.version.tree_state,
        "output": str(job.output),
        "logs": str(job.output / LOGS),
        "plan": [
            {"platform": str(s.platform), "host": s.host, "cross": s.cross}
            for s in result.plan.slices
        ],
        "slices": [_slice_doc(job, r) for r in result.results],
        "tarballs": [
            {"name": name, "path": str(Path(job.output, "release-tars", name)), "sha256": digest}
            for name, digest in result.tarballs
        ],
        "images": [describe(b, job.output / RELEASE_IMAGES) for b in result.images],
        "package_error": result.package_error,
        "tests": _tests_doc(result),
        "toolchain": result.toolchain,
        "schedule": _schedule_doc(result),
        "notes": result.notes,
    }


def _schedule_doc(result: RunResult) -> dict[str, Any]:
    """What the plan expected, and how the estimate of the end moved during the run."""
    return {
        "expected_seconds": round(result.plan.makespan, 3),
        "critical_path": list(result.plan.critical),
        "eta": [
            {"at": timestamp(at), "remaining": round(left, 3), "finish": timestamp(at + left)}
            for at, left in result.estimates
        ],
        "hedges": [_hedge_doc(r) for r in result.results if r.hedge is not None],
    }


def _hedge_doc(r: SliceResult) -> dict[str, Any] | None:
    if r.hedge is None:
        return None
    return {
        "platform": str(r.slice.platform),
        "host": r.hedge.host,
        "twin": r.hedge.twin,
        "after": r.hedge.after,
        "winner": r.hedge.winner,
        "stopped": r.hedge.stopped,
    }


def _tests_doc(result: RunResult) -> dict[str, Any] | None:
    if result.tests is None and not result.test_error:
        return None
    ran = result.tests
    return {
        "host": result.plan.test_host,
        "ok": not result.test_error,
        "duration": round(ran.duration, 3) if ran else None,
        "error": result.test_error,
    }


def exit_status(result: RunResult) -> ExitStatus:
    """0 only for a complete run; otherwise the gravest failure class wins."""
    statuses = {r.status for r in result.results}
    if Status.INTEGRITY in statuses or any(r.violations for r in result.results):
        return ExitStatus.INTEGRITY_ERROR
    if Status.FAILED in statuses or result.package_error or result.test_error:
        return ExitStatus.BUILD_FAILED
    if statuses - {Status.OK}:
        return ExitStatus.INFRA_FAILED
    return ExitStatus.OK


HOST_COLUMNS = ("host", "address", "port", "user", "platforms", "capacity", "labels", "via")


def host_row(host: Host) -> list[str]:
    """One row of `kdist hosts list`."""
    if host.local:
        return [host.name, "(this machine)", "", "", "(detect)", str(host.capacity), "", ""]
    platforms = ",".join(map(str, host.platforms)) if host.platforms is not None else "(detect)"
    return [
        host.name,
        host.address,
        str(host.port),
        host.user or "",
        platforms,
        str(host.capacity),
        ",".join(host.labels),
        ",".join(hop.alias for hop in host.jump),
    ]


def hosts_document(inventory: Inventory) -> dict[str, Any]:
    """`kdist hosts list --json`: every host as kdist will reach it."""
    return {"source": inventory.source, "hosts": [_listed(host) for host in inventory.hosts]}


def _listed(host: Host) -> dict[str, Any]:
    return {
        "name": host.name,
        "local": host.local,
        "alias": host.alias or host.address,
        "address": host.address,
        "port": host.port,
        "user": host.user,
        "platforms": None if host.platforms is None else [str(p) for p in host.platforms],
        "capacity": host.capacity,
        "labels": list(host.labels),
        "workdir": host.workdir,
        "identity_files": [str(p) for p in host.identity_files],
        "known_hosts": [str(p) for p in host.known_hosts],
        "jump": [
            {"alias": hop.alias, "address": hop.address, "port": hop.port, "user": hop.user}
            for hop in host.jump
        ],
        "connect_timeout": host.connect_timeout,
        "from_inventory": sorted(host.written),
    }
