#!/usr/bin/env bash
# Builds a tool from the Go module proxy into the cache (once per pinned version) and prints its path on
# stdout. Progress and timings go to stderr. Each tool has a directory of its own, $PGPOOL_K8S_CACHE/tools/
# NAME/bin, so that putting one on PATH (the Pulumi CLI) never puts another there.
#   scripts/tools.sh pulumi                      Pulumi CLI v3.274.1
#   scripts/tools.sh pulumi-resource-kubernetes  Kubernetes resource provider v4.25.0
#   scripts/tools.sh kubernetes                  kube-apiserver, -controller-manager, -scheduler v1.37.2 (prints their directory)
#   scripts/tools.sh etcd                        etcd v3.7.3
#   scripts/tools.sh kwok                        kwok v0.8.0 (simulated nodes and pods)
#   scripts/tools.sh promtool                    promtool of Prometheus v3.5.0 (Go module v0.305.0)
#   scripts/tools.sh prometheus                  the Prometheus v3.5.0 server, built with promtool
#   scripts/tools.sh kubernetes-node             kubelet and kube-proxy v1.37.2 (prints their directory)
#   scripts/tools.sh containerd                  containerd, its runc shim and ctr v2.4.2 (prints their directory)
#   scripts/tools.sh runc                        runc v1.5.3 (cgo, with seccomp: needs libseccomp-dev)
#   scripts/tools.sh coredns                     CoreDNS v1.15.0
#   scripts/tools.sh pgpool2_exporter            pgpool2_exporter v1.2.2 (from ../shared/vendor; exits 3 without it)
# Tools whose upstream go.mod has replace lines are built from a wrapper module in scripts/tools/NAME,
# whose committed go.mod and go.sum decide every dependency version (-mod=readonly).
set -euo pipefail

scripts_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)"
# shellcheck source=scripts/env.sh
source "$scripts_dir/env.sh"

log() { echo "[tools] $*" >&2; }

# build_once NAME STAMP BUILD_FUNCTION PRINTED: runs BUILD_FUNCTION (which writes into $bin_dir) unless the
# tool was built for this STAMP, then prints $bin_dir/PRINTED (the directory itself when PRINTED is empty).
build_once() {
    local name="$1" stamp="$2" build="$3" printed="${4-$1}"
    bin_dir="$PGPOOL_K8S_CACHE/tools/$name/bin"
    local stamp_file="$PGPOOL_K8S_CACHE/tools/$name/stamp"
    if [[ "$(cat "$stamp_file" 2>/dev/null)" != "$stamp" ]]; then
        rm -rf "$bin_dir" "$stamp_file"
        mkdir -p "$bin_dir"
        log "building $name ($stamp) ..."
        local start=$SECONDS
        "$build"
        echo "$stamp" > "$stamp_file"
        log "building $name ... done in $((SECONDS - start))s"
    fi
    echo "$bin_dir${printed:+/$printed}"
}

# wrapper_stamp NAME VERSION: the version plus a digest of the wrapper module, so a changed dependency pin
# rebuilds the tool too.
wrapper_stamp() {
    echo "$2 $(cat "$scripts_dir/tools/$1"/go.* "$scripts_dir/tools/$1"/*.go 2>/dev/null | sha256sum | cut -c1-16)"
}

# module_dir MODULE[@VERSION]: where a module's source is, downloading it when the cache has not got it
# (go list -m alone names no directory for a module never downloaded).
module_dir() {
    go mod download -json "$1" | sed -n 's/^\t"Dir": "\(.*\)",$/\1/p'
}

# go_build DIR [GO BUILD ARGS...]: builds in the module at DIR (a wrapper module or a build directory with its
# go.mod), statically, reproducibly.
go_build() {
    local module="$1"
    shift
    (cd "$module" && CGO_ENABLED=0 go build -p 2 -mod=readonly -trimpath "$@")
}

pulumi_version=v3.274.1

# Tags and version ldflag as in upstream's release build.
build_pulumi() {
    go_build "$scripts_dir/tools/pulumi" -tags osusergo,grpcnotrace \
        -ldflags "-X github.com/pulumi/pulumi/sdk/v3/go/common/version.Version=$pulumi_version" \
        -o "$bin_dir/pulumi" github.com/pulumi/pulumi/pkg/v3/cmd/pulumi
}

kubernetes_provider_version=4.25.0
kubernetes_provider_module=github.com/pulumi/pulumi-kubernetes/provider/v4

# Upstream's release build: cmd/pulumi-resource-kubernetes embeds a schema that its generate.go writes,
# so the command's sources are copied beside the wrapper's go.mod in a build directory of the cache.
build_pulumi_resource_kubernetes() {
    local build_dir="$PGPOOL_K8S_CACHE/build/pulumi-resource-kubernetes"
    rm -rf "$build_dir"
    mkdir -p "$build_dir"
    cp "$scripts_dir/tools/pulumi-resource-kubernetes"/go.{mod,sum} "$build_dir/"
    (
        cd "$build_dir"
        local source_dir
        source_dir="$(module_dir "$kubernetes_provider_module")/cmd/pulumi-resource-kubernetes"
        cp "$source_dir"/{main.go,generate.go,schema.json,terraform-mapping.json} .
        chmod u+w ./*
        VERSION="$kubernetes_provider_version" go run -mod=readonly generate.go
    )
    go_build "$build_dir" -ldflags "-X $kubernetes_provider_module/pkg/version.Version=$kubernetes_provider_version" \
        -o "$bin_dir/pulumi-resource-kubernetes" .
    rm -rf "$build_dir"
}

kubernetes_version=v1.37.2

# The version ldflags of upstream's build (hack/lib/version.sh); without them clients see v0.0.0.
kubernetes_ldflags() {
    local minor="${kubernetes_version#v1.}"
    echo "-X k8s.io/component-base/version.gitVersion=$kubernetes_version -X k8s.io/component-base/version.gitMajor=1 \
        -X k8s.io/component-base/version.gitMinor=${minor%%.*} -X k8s.io/component-base/version.gitTreeState=clean"
}

build_kubernetes() {
    go_build "$scripts_dir/tools/kubernetes" -o "$bin_dir/" -ldflags "$(kubernetes_ldflags)" \
        k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager \
        k8s.io/kubernetes/cmd/kube-scheduler
}

# The node's binaries, from the same release. Upstream links kubelet with cgo; nothing the local node uses
# needs it, and a static build shares Go's build cache with the control plane's.
build_kubernetes_node() {
    go_build "$scripts_dir/tools/kubernetes-node" -o "$bin_dir/" -ldflags "$(kubernetes_ldflags)" \
        k8s.io/kubernetes/cmd/kubelet k8s.io/kubernetes/cmd/kube-proxy
}

etcd_version=v3.7.3

build_etcd() {
    go_build "$scripts_dir/tools/etcd" -ldflags "-X go.etcd.io/etcd/api/v3/version.GitSHA=$etcd_version" -o "$bin_dir/etcd" .
}

kwok_version=v0.8.0

# kwok reads its stages (how simulated nodes and pods change state) from its config; beside the binary
# goes the set kwokctl gives it by default, from kwok's own module: nodes initialized and kept alive
# with leases, pods made Ready, completed and deleted.
build_kwok() {
    CGO_ENABLED=0 GOBIN="$bin_dir" go install -p 2 -trimpath \
        -ldflags "-X sigs.k8s.io/kwok/pkg/consts.Version=${kwok_version#v}" "sigs.k8s.io/kwok/cmd/kwok@$kwok_version"
    local stages
    stages="$(module_dir "sigs.k8s.io/kwok@$kwok_version")/kustomize/stage"
    for stage in node/fast/node-initialize node/heartbeat-with-lease/node-heartbeat-with-lease \
                 pod/fast/pod-ready pod/fast/pod-complete pod/fast/pod-delete; do
        echo "---"
        cat "$stages/$stage.yaml"
    done > "$bin_dir/kwok-stages.yaml"
}

promtool_prometheus_version=3.5.0
promtool_module_version=v0.305.0

# promtool and the server of the local cluster's Prometheus image, in one build. Service discovery
# (kubernetes_sd_configs included) is compiled in through the import of prometheus/plugins; no build tag
# selects it. Upstream's other tag, builtinassets, embeds the web UI's compiled assets, which the module
# does not carry: the server answers its HTTP API and health endpoints, not the UI's pages.
build_promtool() {
    go_build "$scripts_dir/tools/promtool" -tags netgo \
        -ldflags "-X github.com/prometheus/common/version.Version=$promtool_prometheus_version" \
        -o "$bin_dir/" github.com/prometheus/prometheus/cmd/promtool github.com/prometheus/prometheus/cmd/prometheus
}

pgpool2_exporter_version=v1.2.2
# The Go module proxy does not serve github.com/pgpool/pgpool2_exporter: it is built from the unchanged
# source of its tag beside the repository (../shared/vendor, or PGPOOL_K8S_VENDOR, see scripts/env.sh and its
# README.md; PGPOOL2_EXPORTER_SOURCE names another copy), with the command in scripts/tools/pgpool2_exporter that the snapshot lacks. A missing
# source exits 3, which the tests that need the exporter skip on.
pgpool2_exporter_source="${PGPOOL2_EXPORTER_SOURCE:-$PGPOOL_K8S_VENDOR/pgpool2_exporter-${pgpool2_exporter_version#v}}"

pgpool2_exporter_stamp() {
    if [[ ! -f "$pgpool2_exporter_source/go.mod" ]]; then
        echo "pgpool2_exporter: no source at $pgpool2_exporter_source (the module proxy does not serve" \
            "github.com/pgpool/pgpool2_exporter; put its $pgpool2_exporter_version source there)" >&2
        exit 3
    fi
    echo "$(wrapper_stamp pgpool2_exporter "$pgpool2_exporter_version")" \
        "$(cat "$pgpool2_exporter_source"/{go.mod,go.sum,Dockerfile,*.go} | sha256sum | cut -c1-16)"
}

# In a writable copy in the cache (go needs the command beside the module); tags, CGO setting and version
# ldflag as in the upstream .promu.yml. The module's own go.mod and go.sum decide every dependency. Beside
# the binary goes the image's Dockerfile (ENV defaults, COPY, CMD): the directory is that image's build
# context, and the data plane runs the binary by the Dockerfile's command line.
build_pgpool2_exporter() {
    local build_dir="$PGPOOL_K8S_CACHE/build/pgpool2_exporter"
    rm -rf "$build_dir"
    mkdir -p "$build_dir"
    cp -R "$pgpool2_exporter_source/." "$build_dir/"
    chmod -R u+w "$build_dir"
    mkdir -p "$build_dir/cmd/pgpool2_exporter"
    cp "$scripts_dir/tools/pgpool2_exporter/main.go" "$build_dir/cmd/pgpool2_exporter/"
    go_build "$build_dir" -tags netgo,static_build \
        -ldflags "-X github.com/prometheus/common/version.Version=${pgpool2_exporter_version#v}" \
        -o "$bin_dir/pgpool2_exporter" ./cmd/pgpool2_exporter
    cp "$pgpool2_exporter_source/Dockerfile" "$bin_dir/"
    rm -rf "$build_dir"
}

containerd_version=v2.4.2

# Kubernetes v1.37 supports containerd 2.3 and 2.4 only (containerd's RELEASES.md). The tags and the
# CGO setting of containerd's own Makefile; no_btrfs leaves out the one snapshotter that needs cgo.
build_containerd() {
    local module=github.com/containerd/containerd/v2
    CGO_ENABLED=0 GOBIN="$bin_dir" go install -p 2 -trimpath -tags "urfave_cli_no_docs no_btrfs" \
        -ldflags "-X $module/version.Version=$containerd_version -X $module/version.Package=$module" \
        "$module/cmd/containerd@$containerd_version" "$module/cmd/ctr@$containerd_version" \
        "$module/cmd/containerd-shim-runc-v2@$containerd_version"
}

runc_version=v1.5.3

# Linked with libseccomp (the seccomp tag, as upstream's release), so RuntimeDefault profiles apply.
build_runc() {
    CGO_ENABLED=1 GOBIN="$bin_dir" go install -p 2 -trimpath -tags seccomp "github.com/opencontainers/runc@$runc_version"
}

coredns_version=v1.15.0

build_coredns() {
    CGO_ENABLED=0 GOBIN="$bin_dir" go install -p 2 -trimpath "github.com/coredns/coredns@$coredns_version"
}

case "${1:-}" in
    pulumi) build_once pulumi "$(wrapper_stamp pulumi "$pulumi_version")" build_pulumi ;;
    pulumi-resource-kubernetes)
        build_once pulumi-resource-kubernetes \
            "$(wrapper_stamp pulumi-resource-kubernetes "$kubernetes_provider_version")" build_pulumi_resource_kubernetes
        ;;
    kubernetes) build_once kubernetes "$(wrapper_stamp kubernetes "$kubernetes_version")" build_kubernetes "" ;;
    etcd) build_once etcd "$(wrapper_stamp etcd "$etcd_version")" build_etcd ;;
    kwok) build_once kwok "$kwok_version with stages" build_kwok ;;
    promtool | prometheus)
        build_once promtool "$(wrapper_stamp promtool "$promtool_module_version")" build_promtool "$1"
        ;;
    kubernetes-node)
        build_once kubernetes-node "$(wrapper_stamp kubernetes-node "$kubernetes_version")" build_kubernetes_node ""
        ;;
    containerd) build_once containerd "$containerd_version" build_containerd "" ;;
    runc) build_once runc "$runc_version" build_runc ;;
    coredns) build_once coredns "$coredns_version" build_coredns ;;
    pgpool2_exporter)
        stamp="$(pgpool2_exporter_stamp)" || exit
        build_once pgpool2_exporter "$stamp" build_pgpool2_exporter
        ;;
    *)
        echo "usage: $0 pulumi|pulumi-resource-kubernetes|kubernetes|kubernetes-node|etcd|kwok|promtool|prometheus|" \
             "containerd|runc|coredns|pgpool2_exporter" >&2
        exit 2
        ;;
esac
