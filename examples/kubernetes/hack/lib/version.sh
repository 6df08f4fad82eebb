#!/usr/bin/env bash

# Copyright The Kubernetes Authors.
#
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at
#
#     http://www.apache.org/licenses/LICENSE-2.0
#
# Unless required by applicable law or agreed to in writing, software
# distributed under the License is distributed on an "AS IS" BASIS,
# WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
# See the License for the specific language governing permissions and
# limitations under the License.

# -----------------------------------------------------------------------------
# Mirrors kubernetes/kubernetes hack/lib/version.sh. These functions set, save
# and load the following variables:
#
#    KUBE_GIT_COMMIT - The git commit id corresponding to this source code.
#    KUBE_GIT_TREE_STATE - "clean" indicates no changes since the git commit id
#        "dirty" indicates source code changes after the git commit id
#        "archive" indicates the tree was produced by 'git archive'
#    KUBE_GIT_VERSION - "vX.Y" used to indicate the last release version.
#    KUBE_GIT_MAJOR - The major part of the version
#    KUBE_GIT_MINOR - The minor component of the version
#
# Differences from Kubernetes, all so that every binary always carries a
# version string:
#  - git is only asked when KUBE_ROOT is the top of its own work tree (this
#    example usually sits inside another repository, kdist's, whose commits
#    and tags say nothing about it);
#  - with a commit but no v* tag, KUBE_GIT_VERSION is
#    v0.0.0-master+<14 hex of the commit> (plus -dirty);
#  - with no git at all, KUBE_GIT_VERSION is v0.0.0-master+unknown.

# The Go package that the version is stamped into (see
# staging/src/k8s.io/component-base/version/base.go).
KUBE_VERSION_GO_PACKAGE="${KUBE_VERSION_GO_PACKAGE:-k8s.io/kubernetes/staging/src/k8s.io/component-base/version}"

# Succeeds when KUBE_ROOT is the top of a git work tree of its own.
kube::version::_own_git_tree() {
  local top root
  command -v git >/dev/null 2>&1 || return 1
  top=$(git -C "${KUBE_ROOT}" rev-parse --show-toplevel 2>/dev/null) || return 1
  top=$(cd "${top}" && pwd -P) || return 1
  root=$(cd "${KUBE_ROOT}" && pwd -P) || return 1
  [[ "${top}" == "${root}" ]]
}

# Sets the KUBE_GIT_* variables: from KUBE_GIT_VERSION_FILE when that is set,
# else from the placeholders that `git archive` fills in, else from git.
kube::version::get_version_vars() {
  if [[ -n ${KUBE_GIT_VERSION_FILE-} ]]; then
    kube::version::load_version_vars "${KUBE_GIT_VERSION_FILE}"
    return
  fi

  # hack/lib/.gitattributes marks this file export-subst, so in a tree made
  # by `git archive` the $Format placeholders below hold the commit and its
  # ref names, and the first test is true.
  # shellcheck disable=SC2016,SC2050 # the text is rewritten by git, not bash
  if [[ '$Format:%%$' == "%" ]]; then
    KUBE_GIT_COMMIT='$Format:%H$'
    KUBE_GIT_TREE_STATE="archive"
    # The ref names read like 'HEAD -> main, tag: v1.8.3'; take the tag.
    if [[ '$Format:%D$' =~ tag:\ (v[^ ,]+) ]]; then
      KUBE_GIT_VERSION="${BASH_REMATCH[1]}"
    fi
  fi

  local git=(git -C "${KUBE_ROOT}")

  if [[ -z ${KUBE_GIT_COMMIT-} ]] && kube::version::_own_git_tree; then
    KUBE_GIT_COMMIT=$("${git[@]}" rev-parse "HEAD^{commit}" 2>/dev/null) || KUBE_GIT_COMMIT=""
  fi

  if [[ -n ${KUBE_GIT_COMMIT-} ]]; then
    if [[ -z ${KUBE_GIT_TREE_STATE-} ]]; then
      # Any output from `git status --porcelain` (or a failure) means dirty.
      local git_status
      if git_status=$("${git[@]}" status --porcelain 2>/dev/null) && [[ -z ${git_status} ]]; then
        KUBE_GIT_TREE_STATE="clean"
      else
        KUBE_GIT_TREE_STATE="dirty"
      fi
    fi

    # The nearest v* tag, e.g. v1.2.0-alpha.1-5-g<14 hex>.
    if [[ -n ${KUBE_GIT_VERSION-} ]] || KUBE_GIT_VERSION=$("${git[@]}" describe --tags --match='v*' --abbrev=14 "${KUBE_GIT_COMMIT}^{commit}" 2>/dev/null); then
      # Turn `git describe` output into semver:
      #   v1.2.0-alpha.1-5-g<hex> -> v1.2.0-alpha.1.5+<hex>  (three dashes)
      #   v1.2.0-5-g<hex>         -> v1.2.0-5+<hex>          (two dashes)
      local dashes="${KUBE_GIT_VERSION//[^-]/}"
      if [[ "${dashes}" == "---" ]]; then
        # shellcheck disable=SC2001
        KUBE_GIT_VERSION=$(echo "${KUBE_GIT_VERSION}" | sed "s/-\([0-9]\{1,\}\)-g\([0-9a-f]\{14\}\)$/.\1\+\2/")
      elif [[ "${dashes}" == "--" ]]; then
        # shellcheck disable=SC2001
        KUBE_GIT_VERSION=$(echo "${KUBE_GIT_VERSION}" | sed "s/-g\([0-9a-f]\{14\}\)$/+\1/")
      fi
    else
      # No v* tag reachable: not in Kubernetes, which then stamps no version.
      KUBE_GIT_VERSION="v0.0.0-master+${KUBE_GIT_COMMIT:0:14}"
    fi
    if [[ "${KUBE_GIT_TREE_STATE}" == "dirty" ]]; then
      # Decided from `git status` (which sees untracked files too), not from
      # `git describe --dirty`.
      KUBE_GIT_VERSION+="-dirty"
    fi
  fi

  if [[ -z ${KUBE_GIT_VERSION-} ]]; then
    # Not a git tree (e.g. the .git directory was not copied to a build host)
    # and no version file: same value as a plain `go build`.
    KUBE_GIT_VERSION="v0.0.0-master+unknown"
  fi

  # Major and minor from the version; the minor gets a "+" when there is a
  # pre-release or distance part after the patch number.
  if [[ "${KUBE_GIT_VERSION}" =~ ^v([0-9]+)\.([0-9]+)(\.[0-9]+)?([-].*)?([+].*)?$ ]]; then
    KUBE_GIT_MAJOR=${BASH_REMATCH[1]}
    KUBE_GIT_MINOR=${BASH_REMATCH[2]}
    if [[ -n "${BASH_REMATCH[4]}" ]]; then
      KUBE_GIT_MINOR+="+"
    fi
  fi

  kube::version::verify_semver
}

# If KUBE_GIT_VERSION is not a valid Semantic Version, then refuse to build.
kube::version::verify_semver() {
  if ! [[ "${KUBE_GIT_VERSION-}" =~ ^v([0-9]+)\.([0-9]+)(\.[0-9]+)?(-[0-9A-Za-z.-]+)?(\+[0-9A-Za-z.-]+)?$ ]]; then
    kube::log::error "KUBE_GIT_VERSION should be a valid Semantic Version. Current value: ${KUBE_GIT_VERSION-}" \
      "Please see more details here: https://semver.org"
    exit 1
  fi
}

# Saves the environment flags to $1
kube::version::save_version_vars() {
  local version_file=${1-}
  [[ -n ${version_file} ]] || {
    echo "!!! Internal error.  No file specified in kube::version::save_version_vars" >&2
    return 1
  }

  cat <<EOV >"${version_file}"
KUBE_GIT_COMMIT='${KUBE_GIT_COMMIT-}'
KUBE_GIT_TREE_STATE='${KUBE_GIT_TREE_STATE-}'
KUBE_GIT_VERSION='${KUBE_GIT_VERSION-}'
KUBE_GIT_MAJOR='${KUBE_GIT_MAJOR-}'
KUBE_GIT_MINOR='${KUBE_GIT_MINOR-}'
EOV
}

# Loads up the version variables from file $1
kube::version::load_version_vars() {
  local version_file=${1-}
  [[ -n ${version_file} ]] || {
    echo "!!! Internal error.  No file specified in kube::version::load_version_vars" >&2
    return 1
  }
  if [[ ! -r "${version_file}" ]]; then
    kube::log::error "KUBE_GIT_VERSION_FILE ${version_file} is not readable"
    return 1
  fi

  # shellcheck disable=SC1090
  source "${version_file}"
}

# The build date: SOURCE_DATE_EPOCH when set (reproducible builds), else now.
kube::version::build_date() {
  date ${SOURCE_DATE_EPOCH:+"--date=@${SOURCE_DATE_EPOCH}"} -u +'%Y-%m-%dT%H:%M:%SZ'
}

# Prints the -X flags (for go build -ldflags) that stamp the version into
# KUBE_VERSION_GO_PACKAGE.
kube::version::ldflags() {
  kube::version::get_version_vars
  kube::version::ldflags_from_vars
}

# Like kube::version::ldflags, for when get_version_vars has already run in
# this shell (running it twice would add a second -dirty).
kube::version::ldflags_from_vars() {
  local -a ldflags
  function add_ldflag() {
    local key=${1}
    local val=${2}
    ldflags+=(
      "-X '${KUBE_VERSION_GO_PACKAGE}.${key}=${val}'"
    )
  }

  add_ldflag "buildDate" "$(kube::version::build_date)"
  if [[ -n ${KUBE_GIT_COMMIT-} ]]; then
    add_ldflag "gitCommit" "${KUBE_GIT_COMMIT}"
    add_ldflag "gitTreeState" "${KUBE_GIT_TREE_STATE-}"
  fi

  if [[ -n ${KUBE_GIT_VERSION-} ]]; then
    add_ldflag "gitVersion" "${KUBE_GIT_VERSION}"
  fi

  if [[ -n ${KUBE_GIT_MAJOR-} && -n ${KUBE_GIT_MINOR-} ]]; then
    add_ldflag "gitMajor" "${KUBE_GIT_MAJOR}"
    add_ldflag "gitMinor" "${KUBE_GIT_MINOR}"
  fi

  # One string: -ldflags takes a single argument.
  echo "${ldflags[*]-}"
}
