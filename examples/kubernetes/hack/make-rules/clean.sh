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

# Mirrors what `make clean` does in kubernetes/kubernetes (build/make-clean.sh
# and hack/make-rules/clean.sh) for a host-only build: remove _output, after
# making the Go caches in it writable (the module cache is read-only).

set -o errexit
set -o nounset
set -o pipefail

KUBE_ROOT=$(dirname "${BASH_SOURCE[0]}")/../..
# shellcheck source=hack/lib/init.sh
source "${KUBE_ROOT}/hack/lib/init.sh"

out_dir="${KUBE_ROOT}/${OUT_DIR:-_output}"
if [[ -d "${out_dir}" ]]; then
  kube::log::status "Removing ${out_dir}"
  chmod -R u+w "${out_dir}" 2>/dev/null || true
  rm -rf "${out_dir}"
fi
rm -rf "${KUBE_ROOT}/.make"
