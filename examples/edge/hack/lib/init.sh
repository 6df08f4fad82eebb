#!/usr/bin/env bash
# Sourced by the hack/ scripts: where the tree is, and the version functions.
set -o errexit
set -o nounset
set -o pipefail

KUBE_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd -P)"
export KUBE_ROOT
KUBE_OUTPUT="${KUBE_ROOT}/_output/local"
export KUBE_OUTPUT_BIN="${KUBE_OUTPUT}/bin"

# shellcheck source=hack/lib/version.sh
source "${KUBE_ROOT}/hack/lib/version.sh"
