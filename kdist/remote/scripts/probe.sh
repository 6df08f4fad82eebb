# shellcheck shell=sh
# What a build host is, in one round trip: `sh -c PROBE kdist-probe WORKDIR`.
# Prints KEY=VALUE lines (kdist/remote/probe.py parses them): arch and os from uname, a version
# line per tool (empty when the tool is missing), whether WORKDIR can be created and written,
# and the free space there in KiB.
workdir=$1

printf 'arch=%s\n' "$(uname -m)"
printf 'os=%s\n' "$(uname -s)"
for tool in make go rsync git; do
  if command -v "$tool" >/dev/null 2>&1; then
    case "$tool" in
      go) version=$(go version 2>/dev/null) ;;
      make) version=$(make --version 2>/dev/null | head -n 1) ;;
      rsync) version=$(rsync --version 2>/dev/null | head -n 1) ;;
      git) version=$(git --version 2>/dev/null) ;;
    esac
    printf 'tool.%s=%s\n' "$tool" "$version"
  else
    printf 'tool.%s=\n' "$tool"
  fi
done

mkdir -p -- "$workdir" 2>/dev/null
if [ -d "$workdir" ] && [ -w "$workdir" ]; then workdir_ok=1; else workdir_ok=0; fi
printf 'workdir_ok=%s\n' "$workdir_ok"
# POSIX df output: the second line's fourth column is the space available, in KiB.
printf 'disk_free_kb=%s\n' "$(df -Pk -- "$workdir" 2>/dev/null | awk 'NR==2 {print $4}')"
