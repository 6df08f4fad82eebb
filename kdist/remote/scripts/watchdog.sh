# shellcheck shell=sh
# The guard's watchdog (stop-group.sh is put in front of this file):
#   sh -c WATCHDOG kdist-watchdog ATTEMPT_BASE GRACE
# Its stdin is the SSH channel of the build; ATTEMPT_BASE is `.kdist/attempts/<attempt>` in the
# workdir. When the channel closes (kdist stopped the build, died, or lost the network), it
# stops the build's process group: SIGTERM, GRACE seconds, SIGKILL.
attempt_base=$1
grace=$2

# Nothing is ever sent on the channel: reading it only waits for its end.
while read -r _; do :; done

# A build that has not started yet sees the cancel marker and does not start.
touch "$attempt_base.cancel" 2>/dev/null
[ -f "$attempt_base.pgid" ] || exit 0
build_pgid=
read -r build_pgid 2>/dev/null <"$attempt_base.pgid"
kdist_stop_group "$build_pgid" "$grace"
