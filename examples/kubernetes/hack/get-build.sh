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

# Stand-in for hack/get-build.sh (shipped in the portable test tarball), which
# in Kubernetes prints or downloads the build named by a release label such as
# "release/stable". This example has no release bucket: it prints the label.

set -o errexit
set -o nounset
set -o pipefail

usage() {
  echo "${0} [-v] (ci|release)/(latest|stable)" >&2
}

print_version=false
while getopts ":vh" opt; do
  case ${opt} in
    v) print_version=true ;;
    h) usage; exit 0 ;;
    *) usage; exit 1 ;;
  esac
done
shift $((OPTIND - 1))

if [[ $# -ne 1 ]]; then
  usage
  exit 1
fi

if [[ "${print_version}" == "true" ]]; then
  echo "${1}: no release bucket in the kdist example"
else
  echo "Would download the build for ${1} (kdist example: no downloads are made)."
fi
