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

# Stand-in for the scripts under hack/e2e-internal/ (shipped in the portable
# test tarball), which report on the cluster used by e2e tests. This one
# prints the version of the local kubectl build, if any.

set -o errexit
set -o nounset
set -o pipefail

KUBE_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)

if [[ -x "${KUBE_ROOT}/_output/bin/kubectl" ]]; then
  "${KUBE_ROOT}/_output/bin/kubectl" --version
else
  echo "no local kubectl build (make all WHAT=cmd/kubectl)"
fi
