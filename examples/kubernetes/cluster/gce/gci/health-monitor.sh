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

# Stand-in for cluster/gce/gci/health-monitor.sh, which in Kubernetes
# restarts the container runtime or kubelet when their health checks fail.
# Shipped in kubernetes-manifests.tar.gz. This version checks a URL once.
#
# Usage: health-monitor.sh [healthz-url]

set -o errexit
set -o nounset
set -o pipefail

function check_healthz {
  local url=${1:-http://127.0.0.1:10248/healthz}
  if command -v curl >/dev/null 2>&1 && curl -m 2 -fsS "${url}" >/dev/null 2>&1; then
    echo "healthy: ${url}"
  else
    echo "unhealthy: ${url}"
    return 1
  fi
}

check_healthz "$@"
