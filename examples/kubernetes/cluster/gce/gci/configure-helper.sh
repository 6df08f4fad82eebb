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

# Stand-in for cluster/gce/gci/configure-helper.sh, which in Kubernetes sets
# up a GCE control-plane or node VM at boot. The release ships it in
# kubernetes-manifests.tar.gz as gci-trusty/gci-configure-helper.sh. This
# version only fills the {{ }} placeholders of a manifest given on the
# command line, so it can be tried out locally.
#
# Usage: configure-helper.sh <manifest> <kube_docker_tag>

set -o errexit
set -o nounset
set -o pipefail

function main() {
  local manifest=${1:?usage: configure-helper.sh <manifest> <kube_docker_tag>}
  local tag=${2:?usage: configure-helper.sh <manifest> <kube_docker_tag>}
  sed -e "s/{{kube_docker_tag}}/${tag}/g" -e "s/{{cpurequest}}/100m/g" "${manifest}"
}

main "$@"
