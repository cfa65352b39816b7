#!/usr/bin/env bash
# The main job: bootstrap, create or select the stack, generate missing secrets, pulumi up.
# With no cluster configured on the stack, the manifests are rendered to a directory.
set -euo pipefail
stack=${1:-dev}
cd "$(dirname "$0")/.."
scripts/bootstrap.sh
source scripts/env.sh

pulumi stack select --create --non-interactive "$stack" >/dev/null
.venv/bin/python scripts/init_stack.py --stack "$stack"
if [[ -z "$(pulumi config get kubeContext --stack "$stack" 2>/dev/null)" && \
      -z "$(pulumi config get kubeconfig --stack "$stack" 2>/dev/null)" ]]; then
  unset KUBECONFIG  # render mode needs no cluster and must not touch one
fi
pulumi up --yes --non-interactive --stack "$stack"
echo
pulumi stack output --stack "$stack"
if manifests=$(pulumi stack output renderedManifests --stack "$stack" 2>/dev/null); then
  echo
  echo "Rendered manifests: $PWD/$manifests"
  find "$manifests" -name '*.yaml' | sort | sed 's/^/  /'
fi
