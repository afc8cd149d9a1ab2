#!/usr/bin/env bash
# Validates the Kubernetes manifests in deploy/kubernetes/ against the
# Kubernetes API schemas, strictly (unknown fields are errors), with PyPI's
# kubernetes-validate, which carries the schemas and needs no cluster. The
# tool lives in a virtualenv cached outside the clone. Nothing is applied
# to a cluster: no Kubernetes runs here.
set -euo pipefail
cd "$(dirname "$0")/.."

version=1.37.0
venv="${EDDY_TOOLS:-$HOME/.cache/eddy}/kubernetes-validate-$version"
if [ ! -x "$venv/bin/kubernetes-validate" ]; then
    echo "== installing kubernetes-validate $version"
    if ! python3 -c 'import ensurepip' 2>/dev/null; then
        sudo_if_needed=()
        [ "$(id -u)" -eq 0 ] || sudo_if_needed=(sudo)
        "${sudo_if_needed[@]}" apt-get update -qq
        DEBIAN_FRONTEND=noninteractive "${sudo_if_needed[@]}" apt-get install -y -qq python3-venv >/dev/null
    fi
    rm -rf "$venv"
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q "kubernetes-validate==$version"
fi
"$venv/bin/kubernetes-validate" --strict --quiet deploy/kubernetes/*.yaml
echo "manifests valid (Kubernetes $version schemas)"
