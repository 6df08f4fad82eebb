# shellcheck shell=sh
# Hold the exclusive lock of a workdir for as long as our stdin (an SSH channel) stays open:
#   sh -c HOLD_LOCK kdist-lock WORKDIR RUN_ID WAIT
# Waits at most WAIT seconds (0: not at all) for another run's lock. Prints `locked RUN_ID`
# once it holds the lock, or `busy OWNER` and exits 98 when another run keeps it. The kernel
# drops the lock when this process dies, so a run that crashed never leaves a stale lock.
EXIT_NO_WORKDIR=97  # kdist.remote.argv.NO_WORKDIR
EXIT_BUSY=98        # kdist.remote.hostside.EXIT_BUSY
run_id=$2
wait_seconds=$3
LC_ALL=C
export LC_ALL

lock_dir=$1/.kdist
{ mkdir -p "$lock_dir" && cd "$lock_dir" && touch lock; } 2>/dev/null || {
  echo "kdist: cannot create $lock_dir/lock" >&2
  exit "$EXIT_NO_WORKDIR"
}
# fd 9 stays open, and so keeps the lock, until this shell exits.
exec 9>>lock

# take_lock: flock(1) from util-linux, else the same flock(2) call from perl (macOS).
take_lock() {
  if command -v flock >/dev/null 2>&1; then
    if [ "$wait_seconds" = 0 ]; then flock -n 9; else flock -w "$wait_seconds" 9; fi
  else
    # shellcheck disable=SC2016 # Perl code: its $ signs are Perl's, not the shell's
    perl -MFcntl=:flock -MTime::HiRes=time,sleep -e '
      open(my $f, ">>&=", 9) or exit 2;
      my $end = time + $ARGV[0];
      until (flock($f, LOCK_EX | LOCK_NB)) { exit 1 if time >= $end; sleep 0.1 }
      exit 0' "$wait_seconds"
  fi
}

if ! take_lock; then
  holder=
  [ -f owner ] && read -r holder 2>/dev/null <owner
  echo "busy ${holder:-unknown}"
  exit "$EXIT_BUSY"
fi
# Who holds the lock, for the `busy` answer another run gets (written, then renamed).
echo "$run_id $(uname -n) $(date +%s)" >"owner.$$" && mv -f "owner.$$" owner
echo "locked $run_id"
# Nothing is ever sent on the channel: reading it only waits for its end.
while read -r _; do :; done
exit 0
