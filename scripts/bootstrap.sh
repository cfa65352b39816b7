#!/usr/bin/env bash
# Prepares a checkout for work: the project's and the policy pack's virtualenvs, each rebuilt only when
# its requirements file changed. Safe to run repeatedly; quick when nothing changed.
set -euo pipefail

project="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)"

log() { echo "[bootstrap] $*"; }

# ensure_venv VENV_DIR REQUIREMENTS_FILE: (re)creates the venv from scratch when the requirements file's
# hash differs from the one stamped in it, so packages dropped from the file do not linger.
ensure_venv() {
    local venv="$1" requirements="$2"
    [[ -f "$requirements" ]] || return 0
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
