# shellcheck shell=sh
# List what a build left directly inside its artifacts directory, one tab-separated line each:
#   sh -c MANIFEST kdist-manifest ARTIFACTS WORKDIR ATTEMPT MAX_SIZE MAX_ENTRIES
# KIND (f file, l symlink, d directory, o other), SIZE and SHA256 (files only, else "-"; no
# digest over MAX_SIZE bytes or without a sha256 tool), FRESH (1 when modified after the
# attempt's start marker) and the NAME as hex bytes, so any byte in a name survives.
# A directory with more than MAX_ENTRIES entries is not listed at all: the script prints their
# count and exits 95, before it hashes anything, so a build that left 200,000 files costs seconds.
# kdist/remote/hostside.py parses it (parse_manifest) and trusts none of it blindly.
EXIT_NO_ARTIFACTS=96  # kdist.remote.hostside.EXIT_NO_ARTIFACTS
EXIT_TOO_MANY=95      # kdist.remote.hostside.EXIT_TOO_MANY
artifacts=$1
workdir=$2
attempt=$3
max_size=$4
max_entries=$5
LC_ALL=C
export LC_ALL

# The start marker, made absolute before the cd below (a relative WORKDIR is taken from the
# login directory, like every other kdist path on the host).
start_marker=$workdir/.kdist/attempts/$attempt.start
case $start_marker in /*) ;; *) start_marker=$PWD/$start_marker ;; esac
[ -f "$start_marker" ] || start_marker=

cd "$artifacts" 2>/dev/null || {
  echo "kdist: no artifacts directory $artifacts" >&2
  exit "$EXIT_NO_ARTIFACTS"
}

# sha256sum is coreutils; shasum (Perl) stands in on macOS.
if command -v sha256sum >/dev/null 2>&1; then hash_tool=sha256sum
elif command -v shasum >/dev/null 2>&1; then hash_tool=shasum
else hash_tool=
fi
sha256_of_stdin() {
  if [ "$hash_tool" = sha256sum ]; then sha256sum; else shasum -a 256; fi
}

# Every name, dot files included: `.[!.]*` and `..?*` match those but not `.` and `..`. A
# pattern that matches nothing stays as it is, and the existence tests drop it.
set -- * .[!.]* ..?*
count=0
for name do
  if [ -e "$name" ] || [ -L "$name" ]; then
    count=$((count + 1))
    [ "$count" -le "$max_entries" ] || break
  fi
done
if [ "$count" -gt "$max_entries" ]; then
  echo "more than $max_entries entries"
  exit "$EXIT_TOO_MANY"
fi

for name do
  [ -e "$name" ] || [ -L "$name" ] || continue
  size=- digest=- fresh=0
  if [ -L "$name" ]; then
    kind=l
  elif [ -f "$name" ]; then
    kind=f
    # GNU stat, BSD stat, or reading the whole file when neither is there.
    size=$(stat -c %s -- "./$name" 2>/dev/null || stat -f %z -- "./$name" 2>/dev/null ||
      wc -c <"./$name" 2>/dev/null)
    # Drop the blanks some wc implementations pad the number with.
    # shellcheck disable=SC2086,SC2116 # the unquoted echo is the trim
    size=$(echo $size)
    case $size in "" | *[!0-9]*) continue ;; esac
    if [ -n "$hash_tool" ] && [ "$size" -le "$max_size" ]; then
      digest=$(sha256_of_stdin <"./$name" 2>/dev/null)
      digest=${digest%% *}
      case $digest in *[!0-9a-f]* | "") digest=- ;; esac
      [ "${#digest}" -eq 64 ] || digest=-
    fi
  elif [ -d "$name" ]; then
    kind=d
  else
    kind=o
  fi
  if [ -n "$start_marker" ] &&
    [ -n "$(find "./$name" -prune -newer "$start_marker" 2>/dev/null)" ]; then
    fresh=1
  fi
  name_hex=$(printf %s "$name" | od -An -v -tx1 | tr -d " \n")
  printf "%s\t%s\t%s\t%s\t%s\n" "$kind" "$size" "$digest" "$fresh" "$name_hex"
done
exit 0
