#!/usr/bin/env bash
# The main job: bootstrap, create or select the stack, generate missing secrets, pulumi up.
# With no cluster configured on the stack, the manifests are rendered to a directory.
set -euo pipefail
stack=${1:-dev}
cd "$(dirname "$0")/.."
scripts/bootstrap.sh
source scripts/env.sh

cli_version=v3.272.0        # matches pulumi==3.272.0 in requirements.txt
kubernetes_plugin=4.34.2    # matches pulumi-kubernetes==4.34.2
if [[ "$(pulumi version 2>/dev/null)" != "$cli_version" ]]; then
  cat >&2 <<MSG
make up needs the Pulumi CLI $cli_version (found: $(pulumi version 2>/dev/null || echo none)) with its Python
language host, and the kubernetes resource plugin v$kubernetes_plugin. Install them with Pulumi's installer:
  curl -fsSL https://get.pulumi.com | sh -s -- --version ${cli_version#v}
Offline they cannot be built from the Go module proxy of this workplace: it answers 403 "This module
version is not available" for github.com/pulumi/pulumi/pkg/v3@$cli_version, for the language host
github.com/pulumi/pulumi/sdk/python/cmd/pulumi-language-python/v3 and for
github.com/pulumi/pulumi-kubernetes/provider/v4 (see README, "The Pulumi engine").
MSG
  exit 1
fi
if ! pulumi plugin ls 2>/dev/null | grep -Eq "^kubernetes +resource +$kubernetes_plugin "; then
  PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION=false pulumi plugin install resource kubernetes "v$kubernetes_plugin"
fi

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
