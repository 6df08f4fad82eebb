# shellcheck shell=sh
# The guard around a build on a build host (stop-group.sh is put in front of this file):
#   sh -c GUARD kdist-guarded WORKDIR ATTEMPT GRACE WATCHDOG BUILD_WRAPPER ARGV...
# Runs ARGV in WORKDIR as a process group of its own and stops that whole group (SIGTERM,
# GRACE seconds, SIGKILL) when the build ends, when our stdin (the SSH channel) reaches EOF,
# or when kill-attempt.sh is run for ATTEMPT. WATCHDOG and BUILD_WRAPPER are the texts of
# watchdog.sh and build-wrapper.sh (nothing is installed on the host). Exits with the build's
# status. Under WORKDIR/.kdist/attempts/ it keeps ATTEMPT.start (newer files are fresh),
# ATTEMPT.pgid (while the build runs) and ATTEMPT.cancel (written by whoever stops it).
EXIT_NO_WORKDIR=97  # kdist.remote.argv.NO_WORKDIR
EXIT_NO_TOOL=127    # the shell's "command not found"
workdir=$1
attempt=$2
grace=$3
watchdog=$4
build_wrapper=$5
shift 5

cd "$workdir" 2>/dev/null || {
  echo "kdist: no directory $workdir" >&2
  exit "$EXIT_NO_WORKDIR"
}
attempt_base=.kdist/attempts/$attempt
{ mkdir -p .kdist/attempts && touch "$attempt_base.start"; } 2>/dev/null || {
  echo "kdist: cannot write $PWD/.kdist/attempts" >&2
  exit "$EXIT_NO_WORKDIR"
}

# The build needs a process group of its own, or it could not be stopped as a whole.
# setsid is util-linux; perl's setpgrp stands in for it elsewhere (macOS, busybox hosts).
if command -v setsid >/dev/null 2>&1; then
  new_group_tool=setsid
elif command -v perl >/dev/null 2>&1; then
  new_group_tool=perl
else
  echo "kdist: the host needs setsid (util-linux) or perl to run a build" >&2
  exit "$EXIT_NO_TOOL"
fi
# `perl -e "$new_group_perl" -- ARGV...`: become a process group leader, then exec ARGV.
# shellcheck disable=SC2016 # Perl code: its $ signs are Perl's, not the shell's
new_group_perl='setpgrp(0, 0) or die qq(kdist: setpgrp: $!\n); exec { $ARGV[0] } @ARGV;
print STDERR qq(kdist: $ARGV[0]: $!\n); exit 127'

# A pgid file left by an earlier run of this attempt id is not ours.
rm -f "$attempt_base.pgid" "$attempt_base.pgid.tmp"

# The channel goes to the watchdog alone (through fd 3); the build reads /dev/null, so it
# can neither consume the channel's EOF nor wait for input that never comes.
exec 3<&0 </dev/null
if [ "$new_group_tool" = setsid ]; then
  setsid sh -c "$watchdog" kdist-watchdog "$attempt_base" "$grace" <&3 >/dev/null 2>&1 &
else
  perl -e "$new_group_perl" -- sh -c "$watchdog" kdist-watchdog "$attempt_base" "$grace" \
    <&3 >/dev/null 2>&1 &
fi
watchdog_pid=$!
exec 3<&-

if [ "$new_group_tool" = setsid ]; then
  setsid sh -c "$build_wrapper" kdist-build "$attempt_base" "$attempt" "$@"
else
  perl -e "$new_group_perl" -- sh -c "$build_wrapper" kdist-build "$attempt_base" "$attempt" "$@"
fi
build_status=$?

# The build is over, so the watchdog has nothing left to guard (it leads its own group;
# where it could not get one, its pid alone is killed).
kill -s KILL -- "-$watchdog_pid" 2>/dev/null || kill -s KILL "$watchdog_pid" 2>/dev/null
wait "$watchdog_pid" 2>/dev/null

# Stop whatever the build left running in its group (a daemon, a background job), so nothing
# outlives the build or keeps its output open.
build_pgid=
[ -f "$attempt_base.pgid" ] && read -r build_pgid 2>/dev/null <"$attempt_base.pgid"
kdist_stop_group "$build_pgid" "$grace"
rm -f "$attempt_base.pgid" "$attempt_base.pgid.tmp"
exit "$build_status"
