#!/usr/bin/env bash
# Validates every Kubernetes manifest under deploy/k8s against the API schemas with
# kubernetes-validate (PyPI), installed into a virtualenv under target/ (reused across runs).
# Usage: deploy/validate-k8s.sh [KUBERNETES_VERSION]   (default: the tool's own default)
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
# Pinned, so a new release's schemas cannot turn CI red without a change here.
pinned="1.37.0"
venv="${CARGO_TARGET_DIR:-$root/target}/kubernetes-validate-venv"
if [ "$("$venv/bin/kubernetes-validate" --version 2>/dev/null || true)" != "$pinned" ]; then
    rm -rf "$venv"
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check "kubernetes-validate==$pinned"
fi
version_args=()
if [ $# -ge 1 ]; then
    version_args=(--kubernetes-version "$1")
fi
shopt -s nullglob
manifests=("$root"/deploy/k8s/*.yaml)
if [ ${#manifests[@]} -eq 0 ]; then
    echo "no manifests under deploy/k8s" >&2
    exit 1
fi
"$venv/bin/kubernetes-validate" --strict "${version_args[@]}" "${manifests[@]}"
