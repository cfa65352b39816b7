#!/usr/bin/env bash
# Prepares a checkout for work, idempotently, quiet when nothing is to do: the project's and the policy
# pack's virtualenvs (rebuilt only when their requirements change), the Pulumi CLI and the Kubernetes
# resource plugin of the version requirements.txt pins. An installed Pulumi CLI at least as new as the
# pinned SDK is used as it is (scripts/env.sh), and an installed plugin of the pinned version too;
# otherwise both are built from the Go module proxy into the cache (scripts/tools.sh) and the plugin is
# registered with `pulumi plugin install --file`. With --tests, also the virtualenvs of tools only the tests
# run (scripts/test.sh passes it).
set -euo pipefail

project="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)"

log() { echo "[bootstrap] $*" >&2; }

# ensure_venv VENV_DIR REQUIREMENTS_FILE: (re)creates the venv from scratch when the requirements file's
# hash differs from the one stamped in it, so packages dropped from the file do not linger.
ensure_venv() {
    local venv="$1" requirements="$2"
    local stamp_file="$venv/.requirements.sha256" wanted
    wanted="$(sha256sum "$requirements" | cut -d' ' -f1)"
    if [[ -x "$venv/bin/python" && "$(cat "$stamp_file" 2>/dev/null)" == "$wanted" ]]; then
        return 0
    fi
    local name="${venv#"$project"/}"
    log "creating $name from ${requirements#"$project"/} ..."
    local start=$SECONDS
    rm -f "$stamp_file"
    python3 -m venv --clear "$venv"
    "$venv/bin/python" -m pip install --quiet -r "$requirements"
    echo "$wanted" > "$stamp_file"
    log "creating $name ... done in $((SECONDS - start))s"
}

ensure_venv "$project/.venv" "$project/requirements.txt"
ensure_venv "$project/policies/.venv" "$project/policies/requirements.txt"

# shellcheck source=scripts/env.sh
source "$project/scripts/env.sh"
if [[ "${1:-}" == "--tests" ]]; then
    # checkov (tests/engine/test_checkov.py) pins dependencies of its own: a virtualenv apart, in the cache.
    ensure_venv "$PGPOOL_K8S_CACHE/venvs/checkov" "$project/tests/checkov-requirements.txt"
fi
if [[ ! -x "$PGPOOL_K8S_PULUMI" ]]; then
    "$project/scripts/tools.sh" pulumi >/dev/null
fi

provider_version="$(sed -n 's/^pulumi-kubernetes==//p' "$project/requirements.txt")"
if ! "$PGPOOL_K8S_PULUMI" plugin ls --json 2>/dev/null | "$project/.venv/bin/python" -c '
import json, sys
plugins = json.load(sys.stdin) or []
sys.exit(not any(p["name"] == "kubernetes" and p["kind"] == "resource" and p["version"] == sys.argv[1] for p in plugins))
' "$provider_version"; then
    provider="$("$project/scripts/tools.sh" pulumi-resource-kubernetes)"
    log "registering the kubernetes resource plugin v$provider_version ..."
    "$PGPOOL_K8S_PULUMI" plugin install resource kubernetes "v$provider_version" --file "$provider" >&2
fi
