#!/usr/bin/env bash
# Build WHAT (default: every cmd/) for GOOS/GOARCH (default: this machine) into
# _output/local/bin/, with no platform in the path, as KubeEdge's hack/make-rules/build.sh does.
# CGO_ENABLED and CC come from the environment: edgecore links its C part when cgo is on.
# shellcheck source=hack/lib/init.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib/init.sh"

targets=("$@")
if [[ ${#targets[@]} -eq 0 ]]; then
  targets=(cmd/keadm cmd/edgecore)
fi
goos=${GOOS:-$(go env GOHOSTOS)}
goarch=${GOARCH:-$(go env GOHOSTARCH)}
kube::version::get_version_vars
go_ldflags="-s -w $(kube::version::ldflags)"
echo "Building ${targets[*]} ${KUBE_GIT_VERSION} for ${goos}/${goarch} (CGO_ENABLED=${CGO_ENABLED:-default})"
mkdir -p "${KUBE_OUTPUT_BIN}"
cd "${KUBE_ROOT}" || exit 1
for target in "${targets[@]}"; do
  GOOS=${goos} GOARCH=${goarch} GOTOOLCHAIN=local GOPROXY=off \
    go build -trimpath -ldflags "${go_ldflags}" -o "${KUBE_OUTPUT_BIN}/$(basename "${target}")" "./${target}"
done
