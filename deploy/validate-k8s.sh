#!/usr/bin/env bash
# Validates every Kubernetes manifest under deploy/k8s against the API schemas with
# kubernetes-validate (PyPI), installed into a virtualenv under target/ (reused across runs).
# Usage: deploy/validate-k8s.sh [KUBERNETES_VERSION]   (default: the tool's own default)
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
venv="${CARGO_TARGET_DIR:-$root/target}/kubernetes-validate-venv"
if [ ! -x "$venv/bin/kubernetes-validate" ]; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check 'kubernetes-validate>=1.31'
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
