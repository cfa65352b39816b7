#!/usr/bin/env bash
# Builds a test tool from the Go module proxy into the cache's bin/ (once per pinned version) and
# prints its path on stdout. Progress and timings go to stderr.
#   scripts/tools.sh pulumi            Pulumi CLI v3.274.1
#   scripts/tools.sh promtool          promtool of Prometheus v3.5.0 (Go module v0.305.0)
#   scripts/tools.sh pgpool2_exporter  pgpool2_exporter v1.2.2
# Tools whose upstream go.mod has replace lines are built from a wrapper module in scripts/tools/NAME.
set -euo pipefail

scripts_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)"
# shellcheck source=scripts/env.sh
source "$scripts_dir/env.sh"
bin_dir="$PGPOOL_K8S_CACHE/bin"

log() { echo "[tools] $*" >&2; }

# build_once NAME STAMP BUILD_FUNCTION: runs the build unless bin/NAME was built for this STAMP.
build_once() {
    local name="$1" stamp="$2" build="$3"
    local stamp_file="$bin_dir/.$name.stamp"
    if [[ -x "$bin_dir/$name" && "$(cat "$stamp_file" 2>/dev/null)" == "$stamp" ]]; then
        echo "$bin_dir/$name"
        return
    fi
    mkdir -p "$bin_dir"
    log "building $name ($stamp) ..."
    local start=$SECONDS
    "$build"
    echo "$stamp" > "$stamp_file"
    log "building $name ... done in $((SECONDS - start))s"
    echo "$bin_dir/$name"
}

# wrapper_stamp NAME VERSION: the version plus a digest of the wrapper's go.mod and go.sum, so a
# changed dependency pin rebuilds the tool too.
wrapper_stamp() {
    echo "$2 $(cat "$scripts_dir/tools/$1/go.mod" "$scripts_dir/tools/$1/go.sum" | sha256sum | cut -c1-16)"
}

pulumi_version=v3.274.1

# Tags and version ldflag as in upstream's release build; CGO off for a static binary.
# -mod=readonly: the committed go.mod/go.sum decide every dependency version.
build_pulumi() {
    (
        cd "$scripts_dir/tools/pulumi"
        CGO_ENABLED=0 go build -p 2 -mod=readonly -trimpath -tags osusergo,grpcnotrace \
            -ldflags "-X github.com/pulumi/pulumi/sdk/v3/go/common/version.Version=$pulumi_version" \
            -o "$bin_dir/pulumi" github.com/pulumi/pulumi/pkg/v3/cmd/pulumi
    )
}

promtool_prometheus_version=3.5.0
promtool_module_version=v0.305.0

# Service discovery (kubernetes_sd_configs included) is compiled in through promtool's import of
# prometheus/plugins; no build tag selects it. Upstream's other tag, builtinassets, only concerns the
# web UI, which promtool does not link.
build_promtool() {
    (
        cd "$scripts_dir/tools/promtool"
        CGO_ENABLED=0 go build -p 2 -mod=readonly -trimpath -tags netgo \
            -ldflags "-X github.com/prometheus/common/version.Version=$promtool_prometheus_version" \
            -o "$bin_dir/promtool" github.com/prometheus/prometheus/cmd/promtool
    )
}

kubernetes_provider_version=4.25.0
kubernetes_provider_module=github.com/pulumi/pulumi-kubernetes/provider/v4

# Upstream's release build: cmd/pulumi-resource-kubernetes embeds a schema that its generate.go writes,
# so the command's sources are copied beside the wrapper's go.mod in a build directory of the cache.
build_pulumi_resource_kubernetes() {
    local build_dir="$PGPOOL_K8S_CACHE/build/pulumi-resource-kubernetes"
    rm -rf "$build_dir"
    mkdir -p "$build_dir"
    cp "$scripts_dir/tools/pulumi-resource-kubernetes/go.mod" "$scripts_dir/tools/pulumi-resource-kubernetes/go.sum" "$build_dir/"
    (
        cd "$build_dir"
        local source_dir
        source_dir="$(go list -mod=readonly -m -f '{{.Dir}}' "$kubernetes_provider_module")/cmd/pulumi-resource-kubernetes"
        cp "$source_dir"/{main.go,generate.go,schema.json,terraform-mapping.json} .
        chmod u+w ./*
        VERSION="$kubernetes_provider_version" go run -mod=readonly generate.go
        CGO_ENABLED=0 go build -p 2 -mod=readonly -trimpath \
            -ldflags "-X $kubernetes_provider_module/pkg/version.Version=$kubernetes_provider_version" \
            -o "$bin_dir/pulumi-resource-kubernetes" .
    )
    rm -rf "$build_dir"
}

pgpool2_exporter_version=v1.2.2

# Tags and CGO setting as in the upstream .promu.yml.
build_pgpool2_exporter() {
    CGO_ENABLED=0 GOBIN="$bin_dir" go install -p 2 -trimpath -tags netgo,static_build \
        -ldflags "-X github.com/prometheus/common/version.Version=${pgpool2_exporter_version#v}" \
        "github.com/pgpool/pgpool2_exporter/cmd/pgpool2_exporter@$pgpool2_exporter_version"
}

case "${1:-}" in
    pulumi)
        build_once pulumi "$(wrapper_stamp pulumi "$pulumi_version")" build_pulumi
        ;;
    pulumi-resource-kubernetes)
        build_once pulumi-resource-kubernetes \
            "$(wrapper_stamp pulumi-resource-kubernetes "$kubernetes_provider_version")" build_pulumi_resource_kubernetes
        ;;
    promtool)
        build_once promtool "$(wrapper_stamp promtool "$promtool_module_version")" build_promtool
        ;;
    pgpool2_exporter)
        build_once pgpool2_exporter "$pgpool2_exporter_version" build_pgpool2_exporter
        ;;
    *)
        echo "usage: $0 pulumi|promtool|pgpool2_exporter" >&2
        exit 2
        ;;
esac
