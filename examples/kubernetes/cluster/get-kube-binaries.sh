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

# Stand-in for cluster/get-kube-binaries.sh. In Kubernetes, kubernetes.tar.gz
# no longer carries binaries; this script downloads the client and server
# tarballs that match kubernetes/version. This example has no download site,
# so it only prints the tarball names it would fetch.

set -o errexit
set -o nounset
set -o pipefail

KUBE_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

version="$(cat "${KUBE_ROOT}/version" 2>/dev/null || echo unknown)"
os="${KUBERNETES_CLIENT_OS:-$(uname -s | tr '[:upper:]' '[:lower:]')}"
case "$(uname -m)" in
  x86_64) arch=amd64 ;;
  aarch64 | arm64) arch=arm64 ;;
  *) arch="$(uname -m)" ;;
esac
arch="${KUBERNETES_CLIENT_ARCH:-${arch}}"
server_arch="${KUBERNETES_SERVER_ARCH:-${arch}}"

echo "Kubernetes release: ${version}"
echo "Would download: kubernetes-client-${os}-${arch}.tar.gz"
echo "Would download: kubernetes-server-linux-${server_arch}.tar.gz"
echo "(kdist example: no downloads are made.)"
