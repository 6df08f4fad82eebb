# shellcheck shell=sh
# The leader of the build's process group, started by guard.sh under setsid (or perl setpgrp):
#   sh -c BUILD_WRAPPER kdist-build ATTEMPT_BASE ATTEMPT ARGV...
# Its own pid is the group id; it records it, then becomes the build (exec ARGV).
EXIT_NO_WORKDIR=97  # kdist.remote.argv.NO_WORKDIR
EXIT_CANCELLED=143  # kdist.remote.hostside.EXIT_CANCELLED: as if the build got SIGTERM
attempt_base=$1
attempt=$2
shift 2

# Write, then rename: whoever reads the pgid file reads a whole number, and the group exists
# whenever the file does.
pgid_file=$attempt_base.pgid
if ! { echo "$$" >"$pgid_file.tmp" && mv -f "$pgid_file.tmp" "$pgid_file"; }; then
  exit "$EXIT_NO_WORKDIR"
fi

# kill_attempt or the watchdog came first: do not start at all.
[ -e "$attempt_base.cancel" ] && exit "$EXIT_CANCELLED"

# kill-attempt.sh finds this in /proc/<pgid>/environ, so a stale pgid file whose number the
# kernel gave to another process never makes it signal that process.
KDIST_ATTEMPT=$attempt
export KDIST_ATTEMPT
exec "$@"
