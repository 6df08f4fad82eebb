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

# Stand-in for test/kubemark/start-kubemark.sh (the whole test/kubemark
# directory is shipped in the portable test tarball). In Kubernetes it starts
# a kubemark cluster of hollow nodes; here it prints what it would start.

set -o errexit
set -o nounset
set -o pipefail

NUM_NODES="${NUM_NODES:-3}"
echo "Would start a kubemark cluster with ${NUM_NODES} hollow nodes (kdist example)."
