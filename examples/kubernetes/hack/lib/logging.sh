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

# Mirrors the message helpers of kubernetes/kubernetes hack/lib/logging.sh
# (kube::log::status / info / error), without the stack traces.

# Controls verbosity of the script output and logging.
KUBE_VERBOSE="${KUBE_VERBOSE:-2}"

kube::log::_timestamp() {
  date -u +"%m%d %H:%M:%S"
}

# Print a status line. Formatted to show up in a stream of output.
kube::log::status() {
  local V="${V:-0}"
  if (( KUBE_VERBOSE < V )); then
    return
  fi
  echo "+++ [$(kube::log::_timestamp)] $1"
  shift
  local message
  for message; do
    echo "    ${message}"
  done
}

# Print out some info that isn't a top level status line.
kube::log::info() {
  local V="${V:-0}"
  if (( KUBE_VERBOSE < V )); then
    return
  fi
  local message
  for message; do
    echo "${message}"
  done
}

# Log an error but keep going. Don't dump the stack or exit.
kube::log::error() {
  echo "!!! [$(kube::log::_timestamp)] ${1-}" >&2
  shift || true
  local message
  for message; do
    echo "    ${message}" >&2
  done
}
