# shellcheck shell=sh
# What guard.sh does before a build starts, for builds that run elsewhere (in a container):
#   sh -c MARK_START kdist-mark WORKDIR ATTEMPT
# Touches the attempt's start marker; manifest.sh calls the artifacts newer than it fresh, so
# stale artifacts from an earlier build are never taken for this attempt's.
EXIT_NO_WORKDIR=97  # kdist.remote.argv.NO_WORKDIR
workdir=$1
attempt=$2

cd "$workdir" 2>/dev/null || {
  echo "kdist: no directory $workdir" >&2
  exit "$EXIT_NO_WORKDIR"
}
mkdir -p .kdist/attempts && touch ".kdist/attempts/$attempt.start"
