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

# Stand-in for hack/ginkgo-e2e.sh (shipped in the portable test tarball),
# which runs e2e.test through ginkgo against a cluster. This version finds the
# two binaries for the host platform and runs e2e.test directly with the
# arguments given (e.g. --version, or -test.v).

set -o errexit
set -o nounset
set -o pipefail

KUBE_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

case "$(uname -m)" in
  x86_64) arch=amd64 ;;
  aarch64 | arm64) arch=arm64 ;;
  *) arch="$(uname -m)" ;;
esac
os="$(uname -s | tr '[:upper:]' '[:lower:]')"

e2e_test=""
for dir in "${KUBE_ROOT}/_output/bin" \
           "${KUBE_ROOT}/_output/local/bin/${os}/${arch}" \
           "${KUBE_ROOT}/_output/dockerized/bin/${os}/${arch}" \
           "${KUBE_ROOT}/test/bin"; do
  if [[ -x "${dir}/e2e.test" ]]; then
    e2e_test="${dir}/e2e.test"
    break
  fi
done

if [[ -z "${e2e_test}" ]]; then
  echo "e2e.test not found; build it with: make all WHAT=test/e2e/e2e.test" >&2
  exit 1
fi

exec "${e2e_test}" "$@"
