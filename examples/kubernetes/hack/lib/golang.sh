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

# Mirrors kubernetes/kubernetes hack/lib/golang.sh (2024 revision, v1.30-v1.32):
# the same supported platform lists, target lists, binary lists and
# KUBE_BUILD_PLATFORMS / KUBE_FASTBUILD handling. The build itself is simpler
# than in Kubernetes:
#  - everything is built with CGO_ENABLED=0 (there are no cross C compilers),
#    so KUBE_STATIC_BINARIES is informational only;
#  - the host Go is always used (GOTOOLCHAIN=local, GOPROXY=off): .go-version
#    is reported but never used to download a toolchain;
#  - binaries are written straight to ${KUBE_OUTPUT_BIN}/<os>/<arch>/ (no
#    GOPATH/bin plus rsync step), platforms are built one after the other;
#  - the `ginkgo` target is the stub at test/tools/ginkgo, not
#    github.com/onsi/ginkgo/v2/ginkgo (there are no module dependencies).
#
# This file can also be sourced on its own (it only needs bash, sort and
# uname) to read the platform and target lists.

# shellcheck disable=SC2034 # the lists are read by whatever sources this file

if [[ -z "${KUBE_ROOT:-}" ]]; then
  KUBE_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd -P)"
fi
if ! declare -F kube::util::host_arch >/dev/null; then
  # shellcheck source=hack/lib/util.sh
  source "${KUBE_ROOT}/hack/lib/util.sh"
fi

# The platforms that get server binaries (and server tarballs).
readonly KUBE_SUPPORTED_SERVER_PLATFORMS=(
  linux/amd64
  linux/arm64
  linux/s390x
  linux/ppc64le
)

# The platforms that get node binaries: the server ones plus Windows.
readonly KUBE_SUPPORTED_NODE_PLATFORMS=(
  linux/amd64
  linux/arm64
  linux/s390x
  linux/ppc64le
  windows/amd64
)

# kubectl and kubectl-convert are built for all of these.
readonly KUBE_SUPPORTED_CLIENT_PLATFORMS=(
  linux/amd64
  linux/386
  linux/arm
  linux/arm64
  linux/s390x
  linux/ppc64le
  darwin/amd64
  darwin/arm64
  windows/amd64
  windows/386
  windows/arm64
)

# The platforms that get the test binaries (ginkgo, e2e.test, go-runner).
readonly KUBE_SUPPORTED_TEST_PLATFORMS=(
  linux/amd64
  linux/arm64
  linux/s390x
  linux/ppc64le
  darwin/amd64
  darwin/arm64
  windows/amd64
  windows/arm64
)

# Server binaries, built for the server platforms only (Linux).
kube::golang::server_targets() {
  local targets=(
    cmd/kube-proxy
    cmd/kube-apiserver
    cmd/kube-controller-manager
    cmd/kubelet
    cmd/kubeadm
    cmd/kube-scheduler
    staging/src/k8s.io/component-base/logs/kube-log-runner
    staging/src/k8s.io/kube-aggregator
    staging/src/k8s.io/apiextensions-apiserver
    cluster/gce/gci/mounter
  )
  echo "${targets[@]}"
}

IFS=" " read -ra KUBE_SERVER_TARGETS <<< "$(kube::golang::server_targets)"
readonly KUBE_SERVER_TARGETS
readonly KUBE_SERVER_BINARIES=("${KUBE_SERVER_TARGETS[@]##*/}")

# Server binaries that Kubernetes also wraps in container images.
kube::golang::server_image_targets() {
  local targets=(
    cmd/kube-apiserver
    cmd/kube-controller-manager
    cmd/kube-scheduler
    cmd/kube-proxy
    cmd/kubectl
  )
  echo "${targets[@]}"
}

IFS=" " read -ra KUBE_SERVER_IMAGE_TARGETS <<< "$(kube::golang::server_image_targets)"
readonly KUBE_SERVER_IMAGE_TARGETS
readonly KUBE_SERVER_IMAGE_BINARIES=("${KUBE_SERVER_IMAGE_TARGETS[@]##*/}")

# What goes into the conformance image.
kube::golang::conformance_image_targets() {
  local targets=(
    ginkgo
    test/e2e/e2e.test
    test/conformance/image/go-runner
    cmd/kubectl
  )
  echo "${targets[@]}"
}

IFS=" " read -ra KUBE_CONFORMANCE_IMAGE_TARGETS <<< "$(kube::golang::conformance_image_targets)"
readonly KUBE_CONFORMANCE_IMAGE_TARGETS

# Node binaries (the node tarballs hold these plus the client binaries).
kube::golang::node_targets() {
  local targets=(
    cmd/kube-proxy
    cmd/kubeadm
    cmd/kubelet
    staging/src/k8s.io/component-base/logs/kube-log-runner
  )
  echo "${targets[@]}"
}

IFS=" " read -ra KUBE_NODE_TARGETS <<< "$(kube::golang::node_targets)"
readonly KUBE_NODE_TARGETS
readonly KUBE_NODE_BINARIES=("${KUBE_NODE_TARGETS[@]##*/}")
readonly KUBE_NODE_BINARIES_WIN=("${KUBE_NODE_BINARIES[@]/%/.exe}")

# Prints, one per line and sorted, the words that occur more than once among
# the arguments. Given two lists without duplicates of their own, that is
# their intersection (the same `sort | uniq -d` trick Kubernetes uses).
kube::golang::dups() {
  printf '%s\n' "$@" | LC_ALL=C sort | uniq -d
}

# KUBE_BUILD_PLATFORMS (space separated; commas are accepted too) restricts
# every class to its intersection with the user's list. Otherwise
# KUBE_FASTBUILD=true builds for the host architecture only, and by default
# every supported platform is built.
kube::golang::setup_platforms() {
  if [[ -n "${KUBE_BUILD_PLATFORMS:-}" ]]; then
    # Split the user's list into words (spaces, tabs, newlines or commas).
    local -a platforms=()
    IFS=$' \t\n' read -r -d '' -a platforms <<< "${KUBE_BUILD_PLATFORMS//,/ }" || true

    # A platform named twice by the user would otherwise look like a match
    # to kube::golang::dups, so drop repeats first.
    if (( ${#platforms[@]} > 0 )); then
      mapfile -t platforms < <(printf '%s\n' "${platforms[@]}" | LC_ALL=C sort -u)
    fi

    # Each class keeps only the user's platforms that it supports.
    mapfile -t KUBE_SERVER_PLATFORMS < <(kube::golang::dups \
        "${platforms[@]}" \
        "${KUBE_SUPPORTED_SERVER_PLATFORMS[@]}" \
      )
    readonly KUBE_SERVER_PLATFORMS

    mapfile -t KUBE_NODE_PLATFORMS < <(kube::golang::dups \
        "${platforms[@]}" \
        "${KUBE_SUPPORTED_NODE_PLATFORMS[@]}" \
      )
    readonly KUBE_NODE_PLATFORMS

    mapfile -t KUBE_TEST_PLATFORMS < <(kube::golang::dups \
        "${platforms[@]}" \
        "${KUBE_SUPPORTED_TEST_PLATFORMS[@]}" \
      )
    readonly KUBE_TEST_PLATFORMS

    mapfile -t KUBE_CLIENT_PLATFORMS < <(kube::golang::dups \
        "${platforms[@]}" \
        "${KUBE_SUPPORTED_CLIENT_PLATFORMS[@]}" \
      )
    readonly KUBE_CLIENT_PLATFORMS

  elif [[ "${KUBE_FASTBUILD:-}" == "true" ]]; then
    local host_arch
    host_arch=$(kube::util::host_arch)
    if [[ "${host_arch}" != "amd64" && "${host_arch}" != "arm64" && "${host_arch}" != "ppc64le" && "${host_arch}" != "s390x" ]]; then
      # Only these four have server builds; fall back to amd64 elsewhere.
      host_arch="amd64"
    fi
    KUBE_SERVER_PLATFORMS=("linux/${host_arch}")
    readonly KUBE_SERVER_PLATFORMS
    KUBE_NODE_PLATFORMS=("linux/${host_arch}")
    readonly KUBE_NODE_PLATFORMS
    if [[ "${KUBE_BUILDER_OS:-}" == "darwin"* ]]; then
      KUBE_TEST_PLATFORMS=(
        "darwin/${host_arch}"
        "linux/${host_arch}"
      )
      readonly KUBE_TEST_PLATFORMS
      KUBE_CLIENT_PLATFORMS=(
        "darwin/${host_arch}"
        "linux/${host_arch}"
      )
      readonly KUBE_CLIENT_PLATFORMS
    else
      KUBE_TEST_PLATFORMS=("linux/${host_arch}")
      readonly KUBE_TEST_PLATFORMS
      KUBE_CLIENT_PLATFORMS=("linux/${host_arch}")
      readonly KUBE_CLIENT_PLATFORMS
    fi
  else
    KUBE_SERVER_PLATFORMS=("${KUBE_SUPPORTED_SERVER_PLATFORMS[@]}")
    readonly KUBE_SERVER_PLATFORMS

    KUBE_NODE_PLATFORMS=("${KUBE_SUPPORTED_NODE_PLATFORMS[@]}")
    readonly KUBE_NODE_PLATFORMS

    KUBE_CLIENT_PLATFORMS=("${KUBE_SUPPORTED_CLIENT_PLATFORMS[@]}")
    readonly KUBE_CLIENT_PLATFORMS

    KUBE_TEST_PLATFORMS=("${KUBE_SUPPORTED_TEST_PLATFORMS[@]}")
    readonly KUBE_TEST_PLATFORMS
  fi
}

kube::golang::setup_platforms

# Client binaries, built for every client platform.
readonly KUBE_CLIENT_TARGETS=(
  cmd/kubectl
  cmd/kubectl-convert
)
readonly KUBE_CLIENT_BINARIES=("${KUBE_CLIENT_TARGETS[@]##*/}")
readonly KUBE_CLIENT_BINARIES_WIN=("${KUBE_CLIENT_BINARIES[@]/%/.exe}")

# Test binaries, built for every test platform.
kube::golang::test_targets() {
  local targets=(
    ginkgo
    test/e2e/e2e.test
    test/conformance/image/go-runner
  )
  echo "${targets[@]}"
}
IFS=" " read -ra KUBE_TEST_TARGETS <<< "$(kube::golang::test_targets)"
readonly KUBE_TEST_TARGETS
readonly KUBE_TEST_BINARIES=("${KUBE_TEST_TARGETS[@]##*/}")
readonly KUBE_TEST_BINARIES_WIN=("${KUBE_TEST_BINARIES[@]/%/.exe}")
readonly KUBE_TEST_PORTABLE=(
  test/e2e/testing-manifests
  test/kubemark
  hack/e2e-internal
  hack/get-build.sh
  hack/ginkgo-e2e.sh
  hack/lib
)

# Test binaries that run on cluster machines, so they are built for the
# server platforms only; they also go into the kubernetes-test tarballs.
# e2e_node.test is listed only when this file is sourced on Linux, exactly
# as in Kubernetes.
kube::golang::server_test_targets() {
  local targets=(
    cmd/kubemark
    ginkgo
  )

  if [[ "${OSTYPE:-}" == "linux"* ]]; then
    targets+=( test/e2e_node/e2e_node.test )
  fi

  echo "${targets[@]}"
}

IFS=" " read -ra KUBE_TEST_SERVER_TARGETS <<< "$(kube::golang::server_test_targets)"
readonly KUBE_TEST_SERVER_TARGETS
readonly KUBE_TEST_SERVER_BINARIES=("${KUBE_TEST_SERVER_TARGETS[@]##*/}")
readonly KUBE_TEST_SERVER_PLATFORMS=("${KUBE_SERVER_PLATFORMS[@]:+"${KUBE_SERVER_PLATFORMS[@]}"}")

# Gigabytes necessary for parallel platform builds (read by release tooling;
# this example always builds platforms in series).
readonly KUBE_PARALLEL_BUILD_MEMORY=${KUBE_PARALLEL_BUILD_MEMORY:-20}

readonly KUBE_ALL_TARGETS=(
  "${KUBE_SERVER_TARGETS[@]}"
  "${KUBE_CLIENT_TARGETS[@]}"
  "${KUBE_TEST_TARGETS[@]}"
  "${KUBE_TEST_SERVER_TARGETS[@]}"
)
readonly KUBE_ALL_BINARIES=("${KUBE_ALL_TARGETS[@]##*/}")

# The binaries Kubernetes links statically (CGO_ENABLED=0). In this example
# every binary is built with CGO_ENABLED=0; the list is kept for tools that
# read it.
readonly KUBE_STATIC_BINARIES=(
  apiextensions-apiserver
  kube-aggregator
  kube-apiserver
  kube-controller-manager
  kube-scheduler
  kube-proxy
  kube-log-runner
  kubeadm
  kubectl
  kubectl-convert
  kubemark
  mounter
)

# The oldest Go this tree builds with (go.mod says `go 1.22`).
readonly KUBE_MINIMUM_GO_VERSION=go1.22

# Maps a build target (as in WHAT=...) to a directory of this module,
# relative to KUBE_ROOT, like kube::golang::best_guess_go_targets. A
# `*.test` target maps to the directory of its package.
#   ginkgo, github.com/onsi/ginkgo/v2/ginkgo -> test/tools/ginkgo
#   k8s.io/kubernetes/cmd/kubectl, ./cmd/kubectl/ -> cmd/kubectl
#   k8s.io/kube-aggregator -> staging/src/k8s.io/kube-aggregator
kube::golang::target_dir() {
  local target="${1%/}"
  case "${target}" in
    ginkgo | github.com/onsi/ginkgo/v2/ginkgo | vendor/github.com/onsi/ginkgo/v2/ginkgo)
      target=test/tools/ginkgo
      ;;
    "${KUBE_GO_PACKAGE:-k8s.io/kubernetes}"/*)
      target="${target#"${KUBE_GO_PACKAGE:-k8s.io/kubernetes}"/}"
      ;;
    ./*)
      target="${target#./}"
      ;;
    k8s.io/*)
      if [[ -d "${KUBE_ROOT}/staging/src/${target%.test}" || -d "${KUBE_ROOT}/staging/src/$(dirname "${target}")" ]]; then
        target="staging/src/${target}"
      fi
      ;;
  esac
  if [[ "${target}" == *.test ]]; then
    target="$(dirname "${target}")"
  fi
  echo "${target}"
}

# Checks that the host Go is new enough. The toolchain is never switched or
# downloaded: GOTOOLCHAIN=local and GOPROXY=off are exported by setup_env.
kube::golang::verify_go_version() {
  if ! command -v go >/dev/null 2>&1; then
    kube::log::error "Can't find 'go' in PATH, please fix and retry." \
      "See http://golang.org/doc/install for installation instructions."
    return 2
  fi

  local go_version minimum
  go_version=$(GOTOOLCHAIN=local go env GOVERSION)
  minimum="${KUBE_MINIMUM_GO_VERSION}"
  if [[ "${go_version}" != go* || "$(printf '%s\n%s\n' "${minimum#go}" "${go_version#go}" | sort -s -t. -k 1,1n -k 2,2n -k 3,3n | head -n1)" != "${minimum#go}" ]]; then
    kube::log::error "Detected go version: ${go_version}." \
      "Kubernetes requires ${minimum} or greater." \
      "Please install ${minimum} or later."
    return 2
  fi

  local wanted=""
  if [[ -r "${KUBE_ROOT}/.go-version" ]]; then
    wanted="$(tr -d '[:space:]' < "${KUBE_ROOT}/.go-version")"
  fi
  if [[ -n "${wanted}" && "go${wanted}" != "${go_version}" ]]; then
    V=3 kube::log::info "Using host ${go_version} (.go-version asks for go${wanted}; toolchain downloads are disabled)."
  fi
}

# Sets up the Go environment for building: the host toolchain only, no
# network, no cgo, no VCS stamping, and a build cache under _output unless
# GOCACHE is already set.
kube::golang::setup_env() {
  kube::golang::verify_go_version

  export GOTOOLCHAIN=local
  export GOPROXY=off
  export CGO_ENABLED=0
  export GOWORK=off
  # Unset GOBIN in case it already exists in the current session.
  # Cross-compiles will not work with it set.
  unset GOBIN
  unset GO111MODULE

  # Set GOROOT so binaries that parse code can work properly, and call the
  # toolchain's own go binary rather than any wrapper found in PATH.
  GOROOT="$(go env GOROOT)"
  export GOROOT
  export PATH="${GOROOT}/bin:${PATH}"

  KUBE_GOPATH="${KUBE_OUTPUT}/go"
  export KUBE_GOPATH
  export GOPATH="${KUBE_GOPATH}"
  export GOCACHE="${GOCACHE:-${KUBE_GOPATH}/cache/build}"
  export GOMODCACHE="${GOMODCACHE:-${KUBE_GOPATH}/cache/mod}"

  # The .git directory is not copied to build hosts, and stamping VCS data
  # would make binaries depend on the host's git state.
  case " ${GOFLAGS:-} " in
    *" -buildvcs="*) ;;
    *) export GOFLAGS="${GOFLAGS:+${GOFLAGS} }-buildvcs=false" ;;
  esac

  cd "${KUBE_ROOT}" || return 1
}

# Builds one platform's binaries straight into ${KUBE_OUTPUT_BIN}/<os>/<arch>.
# Reads the arrays and flags set up by kube::golang::build_binaries.
kube::golang::build_binaries_for_platform() {
  local platform=$1
  local goos="${platform%/*}"
  local goarch="${platform#*/}"
  local outdir="${KUBE_OUTPUT_BIN}/${goos}/${goarch}"
  local exe=""
  if [[ "${goos}" == "windows" ]]; then
    exe=".exe"
  fi
  mkdir -p "${outdir}"

  local -a build_args=("-tags=${gotags}" "-ldflags=${goldflags}")
  if [[ -n "${gogcflags}" ]]; then
    build_args+=("-gcflags=${gogcflags}")
  fi
  if [[ "${DBG:-}" != 1 ]]; then
    build_args+=(-trimpath)
  fi

  kube::log::status "Building go targets for ${platform}:" "${targets[@]}"

  if (( ${#packages[@]} > 0 )); then
    GOOS="${goos}" GOARCH="${goarch}" CGO_ENABLED=0 \
      go build -o "${outdir}/" "${build_args[@]}" "${packages[@]}"
  fi

  local i
  for (( i = 0; i < ${#tests[@]}; i++ )); do
    GOOS="${goos}" GOARCH="${goarch}" CGO_ENABLED=0 \
      go test -c -o "${outdir}/${test_names[i]}${exe}" "${build_args[@]}" "./${tests[i]}"
  done
}

# Build binaries targets specified
#
# Input:
#   $@ - targets and go flags.  If no targets are set then all binaries targets
#     are built.
#   KUBE_BUILD_PLATFORMS - Incoming variable of targets to build for.  If unset
#     then just the host architecture is built.
kube::golang::build_binaries() {
  # Create a sub-shell so that we don't pollute the outer environment
  (
    kube::golang::setup_env

    # Work out the version once; this exits if it is not valid semver.
    kube::version::get_version_vars

    local goldflags gogcflags gotags
    goldflags="all=$(kube::version::ldflags_from_vars) ${GOLDFLAGS:-}"
    gogcflags="${GOGCFLAGS:-}"
    gotags="selinux,notest"
    if [[ "${DBG:-}" == 1 ]]; then
      # Debug build: no optimisation or inlining, symbols kept, no -trimpath.
      gogcflags="${gogcflags} all=-N -l"
    else
      # Release build: strip the symbol table and DWARF.
      goldflags="${goldflags} -s -w"
    fi
    # Build tags given in GOFLAGS (-tags=a,b) are merged into ours, since a
    # -tags on the command line would otherwise override them.
    local -a goflags_in=() goflags_out=()
    local goflag
    IFS=$' \t\n' read -r -d '' -a goflags_in <<< "${GOFLAGS:-}" || true
    for goflag in "${goflags_in[@]}"; do
      case "${goflag}" in
        -tags=*) gotags="${gotags},${goflag#-tags=}" ;;
        *) goflags_out+=("${goflag}") ;;
      esac
    done
    export GOFLAGS="${goflags_out[*]}"

    local -a targets=()
    local arg
    for arg; do
      if [[ -n "${arg}" && "${arg}" != -* ]]; then
        targets+=("${arg}")
      fi
    done
    if (( ${#targets[@]} == 0 )); then
      targets=("${KUBE_ALL_TARGETS[@]}")
    fi

    # Split into binaries (one `go build`) and test binaries (`go test -c`),
    # dropping duplicates (e.g. ginkgo in the test and test-server lists).
    local -a packages=() tests=() test_names=()
    local -A seen=()
    local target dir
    for target in "${targets[@]}"; do
      dir="$(kube::golang::target_dir "${target}")"
      if [[ "${dir}" != *...* && ! -d "${KUBE_ROOT}/${dir}" ]]; then
        kube::log::error "Unknown build target ${target} (no directory ${dir})"
        exit 1
      fi
      if [[ -n "${seen[${target%/}]:-}" ]]; then
        continue
      fi
      seen[${target%/}]=1
      if [[ "${target%/}" == *.test ]]; then
        tests+=("${dir}")
        test_names+=("$(basename "${target%/}")")
      else
        packages+=("./${dir}")
      fi
    done

    local -a platforms=()
    local wanted_platforms="${KUBE_BUILD_PLATFORMS:-}"
    IFS=$' \t\n' read -r -d '' -a platforms <<< "${wanted_platforms//,/ }" || true
    if (( ${#platforms[@]} == 0 )); then
      platforms=("$(go env GOHOSTOS)/$(go env GOHOSTARCH)")
    else
      # Drop duplicates, keeping the order given.
      mapfile -t platforms < <(printf '%s\n' "${platforms[@]}" | awk '!seen[$0]++')
    fi

    local platform
    for platform in "${platforms[@]}"; do
      if [[ ! "${platform}" =~ ^[a-z0-9]+/[a-z0-9]+$ ]]; then
        kube::log::error "Invalid platform ${platform} in KUBE_BUILD_PLATFORMS (want <os>/<arch>)"
        exit 1
      fi
    done

    kube::log::status "Go: $(go env GOVERSION), version stamp: ${KUBE_GIT_VERSION}"
    for platform in "${platforms[@]}"; do
      kube::golang::build_binaries_for_platform "${platform}"
    done
  )
}

# Kubernetes copies the binaries from GOPATH/bin to ${KUBE_OUTPUT_BIN} here.
# They are already there in this example, so this only points the
# ${KUBE_ROOT}/_output/bin symlink at the host platform's binaries (a relative
# link when the output is under _output, so the tree can be copied around).
kube::golang::place_bins() {
  local host_platform
  host_platform="$(kube::util::host_platform)"
  local platform_dir="${KUBE_OUTPUT_BIN}/${host_platform}"
  if [[ ! -d "${platform_dir}" ]]; then
    return 0
  fi
  local link_target="${platform_dir}"
  if [[ "${platform_dir}" == "${KUBE_ROOT}/_output/"* ]]; then
    link_target="${platform_dir#"${KUBE_ROOT}/_output/"}"
  fi
  rm -f "${THIS_PLATFORM_BIN}"
  mkdir -p "$(dirname "${THIS_PLATFORM_BIN}")"
  ln -s "${link_target}" "${THIS_PLATFORM_BIN}"
}
