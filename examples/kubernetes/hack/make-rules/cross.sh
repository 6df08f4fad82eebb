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

# Mirrors kubernetes/kubernetes hack/make-rules/cross.sh (`make cross`): one
# `make all` per class of binaries (server, node, client, test, test-server),
# each for that class's platforms as narrowed by KUBE_BUILD_PLATFORMS or
# KUBE_FASTBUILD (see kube::golang::setup_platforms).
#
# One difference: a class left with no platforms is skipped. Kubernetes runs
# `make all KUBE_BUILD_PLATFORMS=""` for it, which builds that class for the
# host platform (so `make cross KUBE_BUILD_PLATFORMS=linux/386` there also
# builds the server binaries for the host).

set -o errexit
set -o nounset
set -o pipefail

KUBE_ROOT=$(dirname "${BASH_SOURCE[0]}")/../..
# shellcheck source=hack/lib/init.sh
source "${KUBE_ROOT}/hack/lib/init.sh"
cd "${KUBE_ROOT}"

# make_class <class> <targets, space separated> <platforms, space separated>
make_class() {
  local class=$1 class_targets=$2 class_platforms=$3
  if [[ -z "${class_platforms}" ]]; then
    kube::log::status "No ${class} platforms selected; skipping ${class} targets."
    return 0
  fi
  kube::log::status "Cross-building ${class} targets for: ${class_platforms}"
  make --no-print-directory all WHAT="${class_targets}" KUBE_BUILD_PLATFORMS="${class_platforms}"
}

# NOTE: "${array[*]}" is meant here: each list is passed as one word.
make_class server "${KUBE_SERVER_TARGETS[*]}" "${KUBE_SERVER_PLATFORMS[*]}"
make_class node "${KUBE_NODE_TARGETS[*]}" "${KUBE_NODE_PLATFORMS[*]}"
make_class client "${KUBE_CLIENT_TARGETS[*]}" "${KUBE_CLIENT_PLATFORMS[*]}"
make_class test "${KUBE_TEST_TARGETS[*]}" "${KUBE_TEST_PLATFORMS[*]}"
make_class test-server "${KUBE_TEST_SERVER_TARGETS[*]}" "${KUBE_TEST_SERVER_PLATFORMS[*]}"
