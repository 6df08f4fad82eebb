"""Host-side fault tolerance: POSIX `sh` scripts and pure argv builders that run them.

Nothing is installed on build hosts: every helper is `sh -c SCRIPT NAME ARGS...`, quoted once
by the caller (`commands.to_shell`). The scripts need a POSIX shell (dash or bash), coreutils,
`find` and `od`; `setsid` and `flock` come from util-linux and fall back to `perl` (macOS and
other hosts without util-linux), `sha256sum` falls back to `shasum -a 256`.

Per attempt, under `<workdir>/.kdist/attempts/`, `guarded` keeps:

- `<attempt>.start`: touched before the build starts; `manifest` calls newer files fresh.
- `<attempt>.pgid`: the build's process group id while it runs (written by the group leader
  itself, so the group exists whenever the file does); removed when the build is over.
- `<attempt>.cancel`: created by `kill_attempt` and by the watchdog before they look for the
  pgid file; a build that has not started yet sees it and exits 143 instead of starting.

The build runs with `KDIST_ATTEMPT=<attempt>` in its environment; on Linux `kill_attempt` checks
it in `/proc/<pgid>/environ` so a stale pgid file never makes it signal a reused process id.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from kdist.remote.argv import NO_WORKDIR

EXIT_BUSY = 98  # hold_lock: another run holds the workdir lock
EXIT_NO_ARTIFACTS = 96  # manifest: the artifacts directory does not exist
EXIT_CANCELLED = 143  # guarded: cancelled before the build started (as if it got SIGTERM)

_ID = re.compile(r"[A-Za-z0-9._-]+")
_HEX64 = re.compile(r"[0-9a-f]{64}")
_HEXNAME = re.compile(r"(?:[0-9a-f]{2})+")

Kind = Literal["f", "l", "d", "o"]
_KINDS: dict[str, Kind] = {"f": "f", "l": "l", "d": "d", "o": "o"}

# Shell functions shared by the guard, its watchdog and kill_attempt. No single quotes here:
# this text is also embedded in a single-quoted shell word (the watchdog program).
STOP_FUNCTIONS = r"""
_kdist_live() {  # PGID: true while the process group has a member that is not a zombie
  kill -s 0 -- "-$1" 2>/dev/null || return 1
  [ -r /proc/self/stat ] || return 0
  _kg=$1
  for _kp in /proc/[0-9]*; do
    read -r _ks 2>/dev/null <"$_kp/stat" || continue
    set -- ${_ks##*") "}
    [ "$3" = "$_kg" ] && [ "$1" != Z ] && [ "$1" != X ] && return 0
  done
  return 1
}
_kdist_stop() {  # PGID GRACE: TERM the group, give it GRACE s, KILL it; false if it survives
  case $1 in ""|*[!0-9]*|0*|1) return 0 ;; esac
  _kdist_live "$1" || return 0
  _kt=0.1 _kh=10
  sleep 0.01 2>/dev/null || { _kt=1 _kh=1; }
  _kn=$(($2 * _kh))
  if [ "$_kn" -gt 0 ]; then
    kill -s TERM -- "-$1" 2>/dev/null
    kill -s CONT -- "-$1" 2>/dev/null
    while [ "$_kn" -gt 0 ] && _kdist_live "$1"; do sleep "$_kt"; _kn=$((_kn - 1)); done
  fi
  _kdist_live "$1" || return 0
  kill -s KILL -- "-$1" 2>/dev/null
  _kn=$((2 * _kh))
  while [ "$_kn" -gt 0 ] && _kdist_live "$1"; do sleep "$_kt"; _kn=$((_kn - 1)); done
  ! _kdist_live "$1"
}
"""

# The watchdog: `sh -c WATCHDOG kdist-watchdog BASE GRACE` with the SSH channel as stdin.
# BASE is `.kdist/attempts/<attempt>`. No single quotes (embedded in the guard, see above).
WATCHDOG_SCRIPT = (
    STOP_FUNCTIONS
    + r"""
while read -r _; do :; done
touch "$1.cancel" 2>/dev/null
[ -f "$1.pgid" ] || exit 0
read -r _pg 2>/dev/null <"$1.pgid"
_kdist_stop "$_pg" "$2"
"""
)

# The build's group leader: `sh -c BUILD kdist-build BASE ATTEMPT ARGV...`, run under setsid.
BUILD_WRAPPER = rf"""
echo "$$" >"$1.pgid.tmp" && mv -f "$1.pgid.tmp" "$1.pgid" || exit {NO_WORKDIR}
[ -e "$1.cancel" ] && exit {EXIT_CANCELLED}
KDIST_ATTEMPT=$2
export KDIST_ATTEMPT
shift 2
exec "$@"
"""

# `perl -e NEWGROUP -- ARGV...`: setsid's stand-in; becomes a group leader, then execs ARGV.
NEWGROUP_PERL = (
    r"setpgrp(0, 0) or die qq(kdist: setpgrp: $!\n); exec { $ARGV[0] } @ARGV;"
    r" print STDERR qq(kdist: $ARGV[0]: $!\n); exit 127"
)

# `sh -c GUARDED kdist-guarded WORKDIR ATTEMPT GRACE ARGV...`
GUARDED_SCRIPT = (
    STOP_FUNCTIONS
    + rf"""
cd "$1" 2>/dev/null || {{ echo "kdist: no directory $1" >&2; exit {NO_WORKDIR}; }}
a=$2 g=$3
shift 3
b=.kdist/attempts/$a
{{ mkdir -p .kdist/attempts && touch "$b.start"; }} 2>/dev/null ||
  {{ echo "kdist: cannot write $PWD/.kdist/attempts" >&2; exit {NO_WORKDIR}; }}
if command -v setsid >/dev/null 2>&1; then ng=setsid
elif command -v perl >/dev/null 2>&1; then ng=perl
else echo "kdist: the host needs setsid (util-linux) or perl to run a build" >&2; exit 127
fi
pl='{NEWGROUP_PERL}'
wd='{WATCHDOG_SCRIPT}'
bw='{BUILD_WRAPPER}'
rm -f "$b.pgid" "$b.pgid.tmp"
exec 3<&0 </dev/null
if [ "$ng" = setsid ]; then
  setsid sh -c "$wd" kdist-watchdog "$b" "$g" <&3 >/dev/null 2>&1 &
else
  perl -e "$pl" -- sh -c "$wd" kdist-watchdog "$b" "$g" <&3 >/dev/null 2>&1 &
fi
w=$!
exec 3<&-
if [ "$ng" = setsid ]; then
  setsid sh -c "$bw" kdist-build "$b" "$a" "$@"
else
  perl -e "$pl" -- sh -c "$bw" kdist-build "$b" "$a" "$@"
fi
st=$?
kill -s KILL -- "-$w" 2>/dev/null || kill -s KILL "$w" 2>/dev/null
wait "$w" 2>/dev/null
pg=
[ -f "$b.pgid" ] && read -r pg 2>/dev/null <"$b.pgid"
_kdist_stop "$pg" "$g"
rm -f "$b.pgid" "$b.pgid.tmp"
exit "$st"
"""
)

# `sh -c KILL_ATTEMPT kdist-kill WORKDIR ATTEMPT GRACE`
KILL_ATTEMPT_SCRIPT = (
    STOP_FUNCTIONS
    + r"""
LC_ALL=C
export LC_ALL
cd "$1" 2>/dev/null || exit 0
b=.kdist/attempts/$2
mkdir -p .kdist/attempts 2>/dev/null && touch "$b.cancel" 2>/dev/null
[ -f "$b.pgid" ] || exit 0
p=
read -r p 2>/dev/null <"$b.pgid"
case $p in ''|*[!0-9]*|0*|1) exit 0 ;; esac
if tr "\0" "\n" <"/proc/$p/environ" 2>/dev/null | grep -q .; then
  tr "\0" "\n" <"/proc/$p/environ" 2>/dev/null | grep -Fqx "KDIST_ATTEMPT=$2" || exit 0
fi
_kdist_stop "$p" "$3" && exit 0
echo "kdist: process group $p of attempt $2 survived SIGKILL" >&2
exit 1
"""
)

# `sh -c HOLD_LOCK kdist-lock WORKDIR RUN_ID WAIT`
HOLD_LOCK_SCRIPT = rf"""
LC_ALL=C
export LC_ALL
d=$1/.kdist
{{ mkdir -p "$d" && cd "$d" && touch lock; }} 2>/dev/null ||
  {{ echo "kdist: cannot create $d/lock" >&2; exit {NO_WORKDIR}; }}
exec 9>>lock
if command -v flock >/dev/null 2>&1; then
  if [ "$3" = 0 ]; then flock -n 9; else flock -w "$3" 9; fi
else
  perl -MFcntl=:flock -MTime::HiRes=time,sleep -e '
    open(my $f, ">>&=", 9) or exit 2;
    my $end = time + $ARGV[0];
    until (flock($f, LOCK_EX | LOCK_NB)) {{ exit 1 if time >= $end; sleep 0.1 }}
    exit 0' "$3"
fi
if [ $? -ne 0 ]; then
  o=
  [ -f owner ] && read -r o 2>/dev/null <owner
  echo "busy ${{o:-unknown}}"
  exit {EXIT_BUSY}
fi
echo "$2 $(uname -n) $(date +%s)" >"owner.$$" && mv -f "owner.$$" owner
echo "locked $2"
while read -r _; do :; done
exit 0
"""

# `sh -c MANIFEST kdist-manifest ARTIFACTS WORKDIR ATTEMPT MAX_SIZE`
MANIFEST_SCRIPT = rf"""
LC_ALL=C
export LC_ALL
m=$2/.kdist/attempts/$3.start
case $m in /*) ;; *) m=$PWD/$m ;; esac
[ -f "$m" ] || m=
cd "$1" 2>/dev/null || {{ echo "kdist: no artifacts directory $1" >&2; exit {EXIT_NO_ARTIFACTS}; }}
if command -v sha256sum >/dev/null 2>&1; then hs=sha256sum
elif command -v shasum >/dev/null 2>&1; then hs="shasum -a 256"
else hs=
fi
for n in * .[!.]* ..?*; do
  [ -e "$n" ] || [ -L "$n" ] || continue
  s=- h=- fr=0
  if [ -L "$n" ]; then k=l
  elif [ -f "$n" ]; then
    k=f
    s=$(stat -c %s -- "./$n" 2>/dev/null || stat -f %z -- "./$n" 2>/dev/null ||
        wc -c <"./$n" 2>/dev/null)
    s=$(echo $s)
    case $s in ''|*[!0-9]*) continue ;; esac
    if [ -n "$hs" ] && [ "$s" -le "$4" ]; then
      h=$($hs <"./$n" 2>/dev/null)
      h=${{h%% *}}
      case $h in *[!0-9a-f]*|'') h=- ;; esac
      [ ${{#h}} -eq 64 ] || h=-
    fi
  elif [ -d "$n" ]; then k=d
  else k=o
  fi
  if [ -n "$m" ] && [ -n "$(find "./$n" -prune -newer "$m" 2>/dev/null)" ]; then fr=1; fi
  x=$(printf %s "$n" | od -An -v -tx1 | tr -d " \n")
  printf "%s\t%s\t%s\t%s\t%s\n" "$k" "$s" "$h" "$fr" "$x"
done
exit 0
"""


@dataclass(frozen=True)
class ManifestEntry:
    """One entry directly inside an artifacts directory, as the host reported it."""

    kind: Kind  # f: regular file, l: symlink, d: directory, o: anything else
    size: int | None  # bytes, regular files only
    sha256: str | None  # hex digest; None for non-files, files over max_size or unreadable
    fresh: bool  # modified after the attempt's start marker
    name: str  # the file name (undecodable bytes kept as surrogate escapes)


def guarded(argv: Sequence[str], *, workdir: str, attempt: str, grace: int = 10) -> list[str]:
    """Run argv in workdir in its own process group, stopped when our stdin reaches EOF."""
    _check_id("attempt", attempt)
    _check_grace(grace)
    if not argv:
        msg = "guarded needs a command"
        raise ValueError(msg)
    return ["sh", "-c", GUARDED_SCRIPT, "kdist-guarded", workdir, attempt, str(grace), *argv]


# `sh -c MARK_START kdist-mark WORKDIR ATTEMPT`: what `guarded` does before a build starts, for
# builds that run elsewhere (a container): the marker that tells fresh artifacts from stale ones.
MARK_START_SCRIPT = rf"""
cd "$1" 2>/dev/null || {{ echo "kdist: no directory $1" >&2; exit {NO_WORKDIR}; }}
mkdir -p .kdist/attempts && touch ".kdist/attempts/$2.start"
"""


def mark_start(workdir: str, attempt: str) -> list[str]:
    """Touch the attempt's start marker in `workdir` (artifacts newer than it are fresh)."""
    _check_id("attempt", attempt)
    return ["sh", "-c", MARK_START_SCRIPT, "kdist-mark", workdir, attempt]


def kill_attempt(workdir: str, attempt: str, grace: int = 10) -> list[str]:
    """Stop a guarded attempt's process group: TERM, up to `grace` s, KILL (grace 0: KILL)."""
    _check_id("attempt", attempt)
    _check_grace(grace)
    return ["sh", "-c", KILL_ATTEMPT_SCRIPT, "kdist-kill", workdir, attempt, str(grace)]


def hold_lock(workdir: str, run_id: str, wait: float) -> list[str]:
    """Hold the workdir's exclusive lock until stdin EOF, waiting at most `wait` s for it."""
    _check_id("run id", run_id)
    if not math.isfinite(wait) or wait < 0:
        msg = f"lock wait must be a finite number of seconds >= 0, not {wait!r}"
        raise ValueError(msg)
    seconds = f"{wait:.3f}".rstrip("0").rstrip(".")
    return ["sh", "-c", HOLD_LOCK_SCRIPT, "kdist-lock", workdir, run_id, seconds]


def manifest(artifacts_dir: str, workdir: str, attempt: str, max_size: int) -> list[str]:
    """List the entries of artifacts_dir: kind, size, sha256, freshness and hex-encoded name."""
    _check_id("attempt", attempt)
    if isinstance(max_size, bool) or not isinstance(max_size, int) or max_size < 0:
        msg = f"max_size must be a byte count >= 0, not {max_size!r}"
        raise ValueError(msg)
    return [
        "sh",
        "-c",
        MANIFEST_SCRIPT,
        "kdist-manifest",
        artifacts_dir,
        workdir,
        attempt,
        str(max_size),
    ]


def parse_manifest(text: str) -> list[ManifestEntry]:
    """Parse `manifest` output; ValueError names the first malformed line."""
    entries: list[ManifestEntry] = []
    seen: set[str] = set()
    for number, line in enumerate(text.splitlines(), 1):
        try:
            entry = _parse_line(line)
        except ValueError as exc:
            msg = f"manifest line {number}: {exc}: {line!r}"
            raise ValueError(msg) from None
        if entry.name in seen:
            msg = f"manifest line {number}: duplicate name {entry.name!r}"
            raise ValueError(msg)
        seen.add(entry.name)
        entries.append(entry)
    return entries


def _parse_line(line: str) -> ManifestEntry:
    fields = line.split("\t")
    if len(fields) != 5:
        msg = f"expected 5 tab-separated fields, got {len(fields)}"
        raise ValueError(msg)
    kind_text, size_text, sha_text, fresh_text, name_hex = fields
    kind = _KINDS.get(kind_text)
    if kind is None:
        msg = f"unknown kind {kind_text!r}"
        raise ValueError(msg)
    if fresh_text not in ("0", "1"):
        msg = f"fresh must be 0 or 1, not {fresh_text!r}"
        raise ValueError(msg)
    size, sha256 = _parse_file_fields(kind, size_text, sha_text)
    return ManifestEntry(kind, size, sha256, fresh_text == "1", _parse_name(name_hex))


def _parse_file_fields(kind: Kind, size_text: str, sha_text: str) -> tuple[int | None, str | None]:
    if kind != "f":
        if size_text != "-" or sha_text != "-":
            msg = "size and sha256 must be '-' for anything but a regular file"
            raise ValueError(msg)
        return None, None
    if not size_text.isascii() or not size_text.isdigit():
        msg = f"bad size {size_text!r}"
        raise ValueError(msg)
    if sha_text == "-":
        return int(size_text), None
    if not _HEX64.fullmatch(sha_text):
        msg = f"bad sha256 {sha_text!r}"
        raise ValueError(msg)
    return int(size_text), sha_text


def _parse_name(name_hex: str) -> str:
    if not _HEXNAME.fullmatch(name_hex):
        msg = f"bad hex name {name_hex!r}"
        raise ValueError(msg)
    name = bytes.fromhex(name_hex).decode("utf-8", "surrogateescape")
    if name in (".", "..") or "/" in name or "\0" in name:
        msg = f"unsafe name {name!r}"
        raise ValueError(msg)
    return name


def _check_id(what: str, value: str) -> None:
    if not _ID.fullmatch(value):
        msg = f"{what} {value!r} may only contain letters, digits, '.', '_' and '-'"
        raise ValueError(msg)


def _check_grace(grace: int) -> None:
    if isinstance(grace, bool) or not isinstance(grace, int) or grace < 0:
        msg = f"grace must be a whole number of seconds >= 0, not {grace!r}"
        raise ValueError(msg)
