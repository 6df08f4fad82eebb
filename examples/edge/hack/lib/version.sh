#!/usr/bin/env bash
# Shaped like the hack/lib/version.sh that KubeEdge and many other Kubernetes-family projects
# copied from Kubernetes, without Kubernetes' KUBE_GIT_VERSION_FILE escape hatch: the version
# is whatever git says in the tree being built, on whatever machine builds it.
#
#    KUBE_GIT_COMMIT      git rev-parse "HEAD^{commit}"
#    KUBE_GIT_TREE_STATE  "clean" when `git status --porcelain` prints nothing, else "dirty"
#    KUBE_GIT_VERSION     git describe --tags --match='v*' --abbrev=14, as semver, plus -dirty
#    build date           the commit time (git show -s --format=%ct HEAD)

KUBE_VERSION_GO_PACKAGE="example.com/edgekit/pkg/version"

kube::version::get_version_vars() {
  local git=(git --work-tree "${KUBE_ROOT}")
  KUBE_GIT_COMMIT=$("${git[@]}" rev-parse "HEAD^{commit}" 2>/dev/null) || KUBE_GIT_COMMIT=""
  if [[ -z "${KUBE_GIT_COMMIT}" ]]; then
    KUBE_GIT_VERSION="v0.0.0-master+unknown"
    KUBE_GIT_TREE_STATE="unknown"
    return
  fi
  local git_status
  if git_status=$("${git[@]}" status --porcelain 2>/dev/null) && [[ -z "${git_status}" ]]; then
    KUBE_GIT_TREE_STATE="clean"
  else
    KUBE_GIT_TREE_STATE="dirty"
  fi
  if KUBE_GIT_VERSION=$("${git[@]}" describe --tags --match='v*' --abbrev=14 "${KUBE_GIT_COMMIT}^{commit}" 2>/dev/null); then
    # v1.2.0-alpha.1-5-g<hex> -> v1.2.0-alpha.1.5+<hex>; v1.2.0-5-g<hex> -> v1.2.0-5+<hex>
    local dashes="${KUBE_GIT_VERSION//[^-]/}"
    if [[ "${dashes}" == "---" ]]; then
      # shellcheck disable=SC2001
      KUBE_GIT_VERSION=$(echo "${KUBE_GIT_VERSION}" | sed "s/-\([0-9]\{1,\}\)-g\([0-9a-f]\{14\}\)$/.\1\+\2/")
    elif [[ "${dashes}" == "--" ]]; then
      # shellcheck disable=SC2001
      KUBE_GIT_VERSION=$(echo "${KUBE_GIT_VERSION}" | sed "s/-g\([0-9a-f]\{14\}\)$/+\1/")
    fi
  else
    KUBE_GIT_VERSION="v0.0.0-master+${KUBE_GIT_COMMIT:0:14}"
  fi
  if [[ "${KUBE_GIT_TREE_STATE}" == "dirty" ]]; then
    KUBE_GIT_VERSION+="-dirty"
  fi
}

# The commit time, so two builds of one commit stamp the same date.
kube::version::build_date() {
  local when
  when=$(git --work-tree "${KUBE_ROOT}" show -s --format=format:%ct HEAD 2>/dev/null) || when=0
  date --date="@${when}" -u +'%Y-%m-%dT%H:%M:%SZ'
}

# The -X flags for go build -ldflags, from the variables get_version_vars set.
kube::version::ldflags() {
  local -a ldflags=(
    "-X '${KUBE_VERSION_GO_PACKAGE}.buildDate=$(kube::version::build_date)'"
    "-X '${KUBE_VERSION_GO_PACKAGE}.gitCommit=${KUBE_GIT_COMMIT}'"
    "-X '${KUBE_VERSION_GO_PACKAGE}.gitTreeState=${KUBE_GIT_TREE_STATE}'"
    "-X '${KUBE_VERSION_GO_PACKAGE}.gitVersion=${KUBE_GIT_VERSION}'"
  )
  echo "${ldflags[*]}"
}
