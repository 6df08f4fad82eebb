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

# Stand-in for cluster/gce/gci/configure-kubeapiserver.sh, which Kubernetes'
# configure-helper.sh sources to start kube-apiserver on a GCE control-plane
# VM. Shipped in kubernetes-manifests.tar.gz; here it only prints the flags it
# would use.

set -o errexit
set -o nounset
set -o pipefail

function start-kube-apiserver {
  local params="--allow-privileged=true --v=${API_SERVER_TEST_LOG_LEVEL:-2}"
  params+=" --etcd-servers=${ETCD_SERVERS:-http://127.0.0.1:2379}"
  echo "kube-apiserver ${params}"
}

if [[ "${BASH_SOURCE[0]}" == "${0}" ]]; then
  start-kube-apiserver
fi
