# shellcheck shell=sh
# The repository kdist shipped for a tree's git answers, made the tree's .git (MODE install), or
# every trace of it taken away (MODE remove: the profile asks for no git answers):
#   sh -c GIT_ANSWERS kdist-git TREE MODE
# TREE/.git is the host's own: HEAD, the index git refreshes here, and `commondir` naming the
# shipped repository in TREE/.kdist/git (objects, refs, settings; git's link to a shared
# repository, as linked worktrees use), so a sync never overwrites the refreshed index.
EXIT_NO_WORKDIR=97  # kdist.remote.argv.NO_WORKDIR
tree=$1
mode=$2

cd "$tree" 2>/dev/null || {
  echo "kdist: no directory $tree" >&2
  exit "$EXIT_NO_WORKDIR"
}
if [ "$mode" != install ]; then
  rm -rf .git .kdist/git
  exit 0
fi
shipped=$PWD/.kdist/git
[ -f "$shipped/kdist/HEAD" ] || {
  echo "kdist: no repository in $shipped" >&2
  exit 1
}
[ -d .git ] || rm -f .git
mkdir -p .git || exit 1
printf '%s\n' "$shipped" >.git/commondir.tmp && mv -f .git/commondir.tmp .git/commondir || exit 1
cp -f "$shipped/kdist/HEAD" .git/HEAD.tmp && mv -f .git/HEAD.tmp .git/HEAD || exit 1
# A new index only when HEAD's tree or the staged changes moved: git's own refresh of the
# last one (stat data of this host's files) stays, so status need not hash every file again.
want=$(cat "$shipped/kdist/index.key")
have=$(cat .git/kdist-index.key 2>/dev/null)
if [ "$want" != "$have" ] || [ ! -f .git/index ]; then
  cp -f "$shipped/kdist/index" .git/index.tmp && mv -f .git/index.tmp .git/index &&
    printf '%s\n' "$want" >.git/kdist-index.key || exit 1
fi
