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

# Mirrors kubernetes/kubernetes hack/lib/init.sh, cut down to what the kdist
# example needs: it finds KUBE_ROOT, defines the output paths and sources the
# rest of hack/lib. Every hack/make-rules script sources this file first.

set -o errexit
set -o nounset
set -o pipefail

# Unset CDPATH so that path interpolation can work correctly
# https://github.com/kubernetes/kubernetes/issues/52255
unset CDPATH

# The root of the build/dist directory
KUBE_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd -P)"

# Where host builds put their output. KUBE_OUTPUT_SUBPATH is relative to
# KUBE_ROOT, as in Kubernetes (the dockerized build uses _output/dockerized).
# Unlike Kubernetes, an absolute KUBE_OUTPUT_SUBPATH is used as it is.
KUBE_OUTPUT_SUBPATH="${KUBE_OUTPUT_SUBPATH:-_output/local}"
if [[ "${KUBE_OUTPUT_SUBPATH}" == /* ]]; then
  KUBE_OUTPUT="${KUBE_OUTPUT_SUBPATH}"
else
  KUBE_OUTPUT="${KUBE_ROOT}/${KUBE_OUTPUT_SUBPATH}"
fi
KUBE_OUTPUT_BIN="${KUBE_OUTPUT}/bin"

# This is a symlink to binaries for "this platform", e.g. build tools.
export THIS_PLATFORM_BIN="${KUBE_ROOT}/_output/bin"

# The Go package (module path) of this tree.
readonly KUBE_GO_PACKAGE=k8s.io/kubernetes

export KUBE_ROOT KUBE_OUTPUT_SUBPATH KUBE_OUTPUT KUBE_OUTPUT_BIN

# shellcheck source=hack/lib/logging.sh
source "${KUBE_ROOT}/hack/lib/logging.sh"
# shellcheck source=hack/lib/util.sh
source "${KUBE_ROOT}/hack/lib/util.sh"
# shellcheck source=hack/lib/version.sh
source "${KUBE_ROOT}/hack/lib/version.sh"
# shellcheck source=hack/lib/golang.sh
source "${KUBE_ROOT}/hack/lib/golang.sh"
