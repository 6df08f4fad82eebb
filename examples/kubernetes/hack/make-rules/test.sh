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

# A much smaller hack/make-rules/test.sh (`make test`): runs the unit tests of
# the given packages (WHAT), by default the version packages, on the host with
# the same Go setup as the build (host toolchain, no network, no cgo).

set -o errexit
set -o nounset
set -o pipefail

KUBE_ROOT=$(dirname "${BASH_SOURCE[0]}")/../..
# shellcheck source=hack/lib/init.sh
source "${KUBE_ROOT}/hack/lib/init.sh"

kube::golang::setup_env

packages=()
for arg; do
  if [[ -n "${arg}" ]]; then
    packages+=("${arg}")
  fi
done
if (( ${#packages[@]} == 0 )); then
  packages=(./staging/src/k8s.io/component-base/version/...)
fi

kube::log::status "Running tests for ${packages[*]}"
go test -count=1 "-timeout=${KUBE_TIMEOUT:-180s}" "${packages[@]}"
