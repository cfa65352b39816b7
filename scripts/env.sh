# Offline environment for the Pulumi engine and the project's tools. Source it (bash); it prints nothing.
# Tool builds live in a cache outside the repo; Pulumi state and the secrets passphrase live in .state/.

pgpool_k8s_env() {
    local project
    project="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)"

    export PGPOOL_K8S_CACHE="${PGPOOL_K8S_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/pgpool-k8s}"
    # The cache's bin/ stays off PATH: tools are called by the path scripts/tools.sh prints, so its
    # config-only pulumi never shadows an installed Pulumi CLI.
    case ":$PATH:" in
        *":$project/.venv/bin:"*) ;;
        *) PATH="$project/.venv/bin:$PATH" ;;
    esac
    export PATH

    export PULUMI_HOME="$PGPOOL_K8S_CACHE/pulumi-home"
    export PULUMI_SKIP_UPDATE_CHECK=true
    export PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION=true

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
