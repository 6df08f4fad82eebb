# shellcheck shell=sh
# Stop a guarded build from outside, over a fresh SSH channel (stop-group.sh is put in front):
#   sh -c KILL_ATTEMPT kdist-kill WORKDIR ATTEMPT GRACE
# SIGTERM to the attempt's process group, GRACE seconds, SIGKILL (GRACE 0: SIGKILL at once).
# Exits 0 when nothing of the attempt is left running, 1 when its group survived SIGKILL.
attempt=$2
grace=$3
LC_ALL=C
export LC_ALL

# No workdir: no build of ours can be running there.
cd "$1" 2>/dev/null || exit 0
attempt_base=.kdist/attempts/$attempt
# Cancel first, then look for the pgid: a build that has not started yet sees the marker and
# does not start (build-wrapper.sh), so there is no window in which it escapes.
mkdir -p .kdist/attempts 2>/dev/null && touch "$attempt_base.cancel" 2>/dev/null
[ -f "$attempt_base.pgid" ] || exit 0
build_pgid=
read -r build_pgid 2>/dev/null <"$attempt_base.pgid"
# Never `kill -- -1` (every process we may signal) or -0 (our own group).
case $build_pgid in "" | *[!0-9]* | 0* | 1) exit 0 ;; esac

# Where the leader's environment is readable (Linux /proc, same user), it must carry our
# attempt id; otherwise the pgid file is stale and the kernel gave the number to someone else.
environ=/proc/$build_pgid/environ
if tr "\0" "\n" <"$environ" 2>/dev/null | grep -q .; then
  tr "\0" "\n" <"$environ" 2>/dev/null | grep -Fqx "KDIST_ATTEMPT=$attempt" || exit 0
fi

kdist_stop_group "$build_pgid" "$grace" && exit 0
echo "kdist: process group $build_pgid of attempt $attempt survived SIGKILL" >&2
exit 1
