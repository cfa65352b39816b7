# Environment for the Pulumi engine and the project's tools. Source it (bash); it prints nothing.
# Whatever the user has set wins: PULUMI_HOME, PULUMI_BACKEND_URL, PULUMI_CONFIG_PASSPHRASE(_FILE).
# Otherwise state and the secrets passphrase live in the project's .state/ and tool builds in a cache
# outside the repository.

pgpool_k8s_env() {
    local project
    project="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)"

    export PGPOOL_K8S_CACHE="${PGPOOL_K8S_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/pgpool-k8s}"
    # The unchanged third-party sources the tests build from: ../shared/vendor beside the repository, unless
    # set (a checkout elsewhere, such as a git worktree, points it at them).
    export PGPOOL_K8S_VENDOR="${PGPOOL_K8S_VENDOR:-$(dirname "$project")/shared/vendor}"
    case ":$PATH:" in
        *":$project/.venv/bin:"*) ;;
        *) PATH="$project/.venv/bin:$PATH" ;;
    esac

    # The Pulumi CLI: an installed one at least as new as the Python SDK the project pins, else the one
    # scripts/bootstrap.sh builds into the cache (with a PULUMI_HOME of its own unless the user set one).
    local built_cli_dir="$PGPOOL_K8S_CACHE/tools/pulumi/bin" sdk_version installed="" path_without_built
    sdk_version="$(sed -n 's/^pulumi==//p' "$project/requirements.txt")"
    path_without_built="$(echo ":$PATH:" | sed "s#:$built_cli_dir:#:#g; s#^:##; s#:\$##")"
    installed="$(PATH="$path_without_built" command -v pulumi || true)"
    if [[ -n "$installed" ]] && [[ "$(printf '%s\n' "v$sdk_version" "$("$installed" version 2>/dev/null || echo v0)" \
                                      | sort -V | head -n1)" == "v$sdk_version" ]]; then
        export PGPOOL_K8S_PULUMI="$installed"
    else
        export PGPOOL_K8S_PULUMI="$built_cli_dir/pulumi"
        PATH="$built_cli_dir:$path_without_built"
        export PULUMI_HOME="${PULUMI_HOME:-$PGPOOL_K8S_CACHE/pulumi-home}"
    fi
    export PATH
    export PULUMI_SKIP_UPDATE_CHECK="${PULUMI_SKIP_UPDATE_CHECK:-true}"
    export PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION="${PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION:-true}"

    if [[ -z "${PULUMI_BACKEND_URL:-}" ]]; then
        mkdir -p "$project/.state/backend"
        export PULUMI_BACKEND_URL="file://$project/.state/backend"
    fi

    if [[ -z "${PULUMI_CONFIG_PASSPHRASE:-}" && -z "${PULUMI_CONFIG_PASSPHRASE_FILE:-}" ]]; then
        local passphrase_file="$project/.state/passphrase"
        if [[ ! -s "$passphrase_file" ]]; then
            mkdir -p "$project/.state"
            # Written under a temporary name, then hard-linked into place: the link fails if another shell
            # won the race, so a passphrase already used to encrypt state is never replaced.
            local tmp
            tmp="$(umask 077 && mktemp "$project/.state/passphrase.XXXXXX")"
            head -c 32 /dev/urandom | base64 > "$tmp"
            ln "$tmp" "$passphrase_file" 2>/dev/null || true
            rm -f "$tmp"
        fi
        export PULUMI_CONFIG_PASSPHRASE_FILE="$passphrase_file"
    fi
}

pgpool_k8s_env
unset -f pgpool_k8s_env
