# shellcheck shell=sh
# The private tree of one of several builds running at once on this host, made or refreshed:
#   sh -c SLOT_TREE kdist-slot TREE SLOT
# SLOT gets hard links to the files of the synced tree TREE (nothing is copied), without kdist's
# own .kdist folder, and without anything an earlier build left in SLOT outside _output/. Builds
# replace the files they write (compilers, linkers and `go build -o` write a new file), so one
# build's outputs never show up in another's tree or in TREE. SLOT's _output/ stays, as the
# synced tree's does (sync never touches it): build state kept there (Kubernetes-style
# GOPATH and Go caches) makes the next build incremental; kdist clears the artifacts folder
# before each build and takes only files the build wrote.
EXIT_NO_WORKDIR=97  # kdist.remote.argv.NO_WORKDIR
tree=$1
slot=$2

cd "$tree" 2>/dev/null || {
  echo "kdist: no directory $tree" >&2
  exit "$EXIT_NO_WORKDIR"
}
mkdir -p "$slot" || exit 1
exec rsync --archive --delete --link-dest="$PWD" --exclude=/.kdist/ --exclude=/_output/ ./ "$slot/"
