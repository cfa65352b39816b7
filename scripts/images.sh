#!/usr/bin/env bash
# Builds the local cluster's container images without a registry and prints, for each NAME asked for, a line
# "REFERENCE ARCHIVE": the image's name (localhost/pgpool-k8s/NAME:VERSION, the version of what it holds) and
# an OCI archive (an OCI image layout in a tar) that `ctr images import` takes. Each image's root file system
# is made from Debian's packages or from what scripts/tools.sh builds, packed by Debian's umoci. Built once
# per stamp into the cache ($PGPOOL_K8S_CACHE/images), never into the repository; needs root (debootstrap,
# file ownership) and ../shared/vendor beside the repository (PGPOOL_K8S_VENDOR names another copy; exits 3
# without it). Progress and timings go to stderr.
#   scripts/images.sh pause                 the pod sandbox: pause.c of Kubernetes v1.37.2, static
#   scripts/images.sh pgpool                Pgpool-II 4.7.2 as Dockerfile.pgpool builds it (scripts/pgpool_image_root.sh)
#   scripts/images.sh coredns               CoreDNS v1.15.0
#   scripts/images.sh pgpool2_exporter      pgpool2_exporter v1.2.2 on busybox, started by its Dockerfile's CMD
#   scripts/images.sh prometheus            the Prometheus v3.5.0 server on busybox, as its Dockerfile lays it out
#   scripts/images.sh postgresql            Debian 12's PostgreSQL 15 and postgres_exporter (uid 70), the start
#                                           script of the local cluster's stand-in for KubeDB; also the password
#                                           Job's client image (sh, psql, pg_isready)
#   scripts/images.sh all                   all of them
set -euo pipefail

scripts_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)"
# shellcheck source=scripts/env.sh
source "$scripts_dir/env.sh"

prefix=localhost/pgpool-k8s
mirror="${PGPOOL_K8S_DEBIAN_MIRROR:-http://deb.debian.org/debian}"
vendor_dir="$PGPOOL_K8S_VENDOR"  # ../shared/vendor beside the repository unless set (scripts/env.sh)
coredns_version=1.15.0
pgpool2_exporter_version=1.2.2
prometheus_version=3.5.0
images_dir="$PGPOOL_K8S_CACHE/images"

log() { echo "[images] $*" >&2; }

tool() { "$scripts_dir/tools.sh" "$1"; }

# pack NAME TAG ROOT [UMOCI CONFIG OPTIONS...]: an OCI archive of the directory ROOT as one layer, with the
# image configuration the options give; prints its path.
pack() {
    local name="$1" tag="$2" root="$3"
    shift 3
    local layout="$images_dir/$name/layout" archive="$images_dir/$name/$name-$tag.oci.tar"
    rm -rf "$layout" "$archive"
    umoci init --layout "$layout"
    umoci new --image "$layout:$tag"
    umoci insert --image "$layout:$tag" "$root" / >/dev/null
    umoci config --image "$layout:$tag" --author pgpool-k8s --config.label "org.opencontainers.image.version=$tag" "$@"
    umoci gc --layout "$layout"
    tar -C "$layout" -cf "$archive" .
    rm -rf "$layout"
    echo "$archive"
}

# dockerfile_config DOCKERFILE: the umoci config options of its ENV, USER, ENTRYPOINT, CMD and EXPOSE lines,
# into the array `config`.
dockerfile_config() {
    [[ -f "$1" ]] || { log "missing $1 (../shared/vendor beside the repository, or set PGPOOL_K8S_VENDOR)"; return 1; }
    mapfile -d '' config < <(python3 "$scripts_dir/localcluster/image_config.py" "$1")
}

# busybox_root DIR: a root with Debian's static busybox as /bin/sh and every other applet, and the users
# root and nobody (the upstream images' quay.io/prometheus/busybox base has the same).
busybox_root() {
    local root="$1"
    mkdir -p "$root/bin" "$root/etc" "$root/tmp"
    chmod 1777 "$root/tmp"
    cp /bin/busybox "$root/bin/busybox"
    for applet in $(/bin/busybox --list); do
        [[ -e "$root/bin/$applet" ]] || ln -s busybox "$root/bin/$applet"
    done
    printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/home:/bin/false\n' > "$root/etc/passwd"
    printf 'root:x:0:\nnobody:x:65534:\n' > "$root/etc/group"
}

# build_once NAME STAMP BUILD_FUNCTION: runs BUILD_FUNCTION (which prints the archive it made) unless the
# image was built for this STAMP; prints "REFERENCE ARCHIVE".
build_once() {
    local name="$1" stamp="$2" build="$3" dir="$images_dir/$1"
    mkdir -p "$dir"
    exec 8>"$dir.lock"
    flock 8  # one build at a time; whoever waited finds it built
    if [[ "$(cat "$dir/stamp" 2>/dev/null)" != "$stamp" || ! -s "$(cat "$dir/archive" 2>/dev/null)" ]]; then
        rm -f "$dir/stamp" "$dir/archive"
        log "building $name ($stamp) ..."
        local start=$SECONDS archive
        archive="$("$build")"
        echo "$archive" > "$dir/archive"
        echo "$stamp" > "$dir/stamp"
        log "building $name ... done in $((SECONDS - start))s ($(du -h "$archive" | cut -f1))"
    fi
    exec 8>&-
    local archive tag
    archive="$(cat "$dir/archive")"
    tag="${archive##*/"$name"-}"
    echo "$prefix/$name:${tag%.oci.tar} $archive"
}

pause_version=3.10.2

# As build/pause/Makefile of k8s.io/kubernetes v1.37.2 compiles it (its TAG is 3.10.2).
build_pause() {
    local root="$images_dir/pause/root" source
    source="$(cd "$scripts_dir/tools/kubernetes" && go mod download -json k8s.io/kubernetes | \
              sed -n 's/^\t"Dir": "\(.*\)",$/\1/p')/build/pause/linux/pause.c"
    rm -rf "$root" && mkdir -p "$root"
    gcc -Os -Wall -Werror -static -DVERSION="v$pause_version-pgpool-k8s" -o "$root/pause" "$source"
    pack pause "$pause_version" "$root" --config.entrypoint /pause --config.user 65535:65535
}

build_coredns() {
    local root="$images_dir/coredns/root"
    rm -rf "$root" && mkdir -p "$root"
    cp "$(tool coredns)" "$root/coredns"
    # Upstream's image: distroless, USER nonroot (65532), ENTRYPOINT ["/coredns"].
    pack coredns "$coredns_version" "$root" --config.entrypoint /coredns --config.user 65532:65532 \
        --config.exposedports 53/udp --config.exposedports 53/tcp
}

# As its Dockerfile (beside the binary: scripts/tools.sh puts the image's build context there) builds it:
# FROM quay.io/prometheus/busybox (Debian's static busybox here), the binary in /bin; its ENV, CMD (the
# shell command line that makes DATA_SOURCE_* of them) and EXPOSE read from it.
build_pgpool2_exporter() {
    local root="$images_dir/pgpool2_exporter/root" binary config
    binary="$(tool pgpool2_exporter)"
    rm -rf "$root" && busybox_root "$root"
    cp "$binary" "$root/bin/pgpool2_exporter"
    dockerfile_config "$(dirname "$binary")/Dockerfile"
    pack pgpool2_exporter "$pgpool2_exporter_version" "$root" "${config[@]}"
}

# As upstream's Dockerfile: the server in /bin, /etc/prometheus for its configuration, /prometheus for its
# data owned by nobody, USER nobody, ENTRYPOINT the server with the default configuration file as CMD.
build_prometheus() {
    local root="$images_dir/prometheus/root"
    rm -rf "$root" && busybox_root "$root"
    cp "$(tool prometheus)" "$root/bin/prometheus"
    mkdir -p "$root/etc/prometheus" "$root/prometheus"
    chown 65534:65534 "$root/prometheus"
    pack prometheus "$prometheus_version" "$root" --config.user nobody --config.workingdir /prometheus \
        --config.entrypoint /bin/prometheus --config.cmd --config.file=/etc/prometheus/prometheus.yml \
        --config.cmd --storage.tsdb.path=/prometheus --config.exposedports 9090/tcp --config.volume /prometheus
}

postgresql_suite=bookworm
postgresql_major=15
postgresql_packages="postgresql-$postgresql_major,prometheus-postgres-exporter"

# debootstrap of Debian's packages; the postgres user renumbered to uid/gid 70, as in the postgres (and
# KubeDB's) images the stack's pods and Job expect; the package's own default cluster removed. Kept (with a
# stamp of its own) so that a changed start script repacks the image without bootstrapping it again.
build_postgresql_root() {
    local root="$1" wanted
    wanted="$postgresql_suite $postgresql_packages $(declare -f build_postgresql_root | sha256sum | cut -c1-16)"
    [[ "$(cat "$root.stamp" 2>/dev/null)" == "$wanted" ]] && return 0
    rm -rf "$root" "$root.stamp"
    if ! debootstrap --variant=minbase --include="$postgresql_packages" "$postgresql_suite" "$root" "$mirror" \
        > "$root.log" 2>&1; then
        tail -n 20 "$root.log" >&2
        log "debootstrap failed (full log: $root.log)"
        return 1
    fi
    local uid gid
    uid="$(chroot "$root" id -u postgres)" gid="$(chroot "$root" id -g postgres)"
    chroot "$root" groupmod -g 70 postgres
    chroot "$root" usermod -u 70 -g 70 postgres
    find "$root" -xdev \( -uid "$uid" -o -gid "$gid" \) -exec chown -h 70:70 {} +
    # What Debian's slim images leave out too (documentation, manual pages, translations), and the apt caches.
    rm -rf "$root/var/lib/postgresql/$postgresql_major/main" "$root/etc/postgresql/$postgresql_major/main" \
           "$root/var/cache/apt/archives"/*.deb "$root/var/lib/apt/lists"/* "$root/usr/share/doc"/* \
           "$root/usr/share/man"/* "$root/usr/share/locale"/*
    echo "$wanted" > "$root.stamp"
}

build_postgresql() {
    local root="$images_dir/postgresql/root"
    build_postgresql_root "$root" >&2
    install -m 0755 "$scripts_dir/localcluster/postgres-start.sh" "$root/usr/local/bin/pgpool-k8s-postgres"
    local version
    version="$(chroot "$root" dpkg-query -W -f='${Version}' "postgresql-$postgresql_major")"
    log "PostgreSQL $version, postgres_exporter $(chroot "$root" dpkg-query -W -f='${Version}' prometheus-postgres-exporter)"
    pack postgresql "$postgresql_major" "$root" --config.user 70:70 \
        --config.env "PATH=/usr/lib/postgresql/$postgresql_major/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin" \
        --config.label "org.opencontainers.image.description=PostgreSQL $version (Debian $postgresql_suite)" \
        --config.cmd pgpool-k8s-postgres --config.exposedports 5432/tcp
}

pgpool_release=4.7.2

pgpool_dockerfile="$vendor_dir/pgpool2_on_k8s-0134b5e/pgpool.docker/Dockerfile.pgpool"

# The root of scripts/pgpool_image_root.sh with the ENV, USER, ENTRYPOINT, CMD and EXPOSE lines of
# Dockerfile.pgpool, and the PATH of its base image (alpine's), which the image contract expects.
build_pgpool() {
    local root config
    root="$("$scripts_dir/pgpool_image_root.sh" "$pgpool_release")"
    dockerfile_config "$pgpool_dockerfile"
    pack pgpool "$pgpool_release" "$root" --config.env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
        "${config[@]}"
}

# stamp FUNCTION [WORDS...]: what decides an image: the versions and digests of its inputs (WORDS) and of
# the functions that build it.
stamp() {
    echo "${*:2} $({ declare -f "$1" pack busybox_root dockerfile_config; cat "$scripts_dir/localcluster/image_config.py"; } |
                   sha256sum | cut -c1-16)"
}

# digest FILE: a short digest, for a built input in a stamp.
digest() {
    sha256sum "$1" | cut -c1-16
}

image() {
    case "$1" in
        pause) build_once pause "$(stamp build_pause "$pause_version")" build_pause ;;
        pgpool)
            local root
            root="$("$scripts_dir/pgpool_image_root.sh" "$pgpool_release")"
            build_once pgpool "$(stamp build_pgpool "$pgpool_release" "$(digest "$root/.stamp")" \
                "$(digest "$pgpool_dockerfile")")" build_pgpool
            ;;
        coredns) build_once coredns "$(stamp build_coredns "$coredns_version" "$(digest "$(tool coredns)")")" build_coredns ;;
        pgpool2_exporter)
            local binary
            binary="$(tool pgpool2_exporter)"
            build_once pgpool2_exporter "$(stamp build_pgpool2_exporter "$pgpool2_exporter_version" \
                "$(digest "$binary")" "$(digest "$(dirname "$binary")/Dockerfile")")" build_pgpool2_exporter
            ;;
        prometheus)
            build_once prometheus "$(stamp build_prometheus "$prometheus_version" "$(digest "$(tool prometheus)")")" \
                build_prometheus
            ;;
        postgresql)
            build_once postgresql "$(stamp build_postgresql "$postgresql_suite" "$postgresql_packages" \
                "$(declare -f build_postgresql_root | sha256sum | cut -c1-16)" \
                "$(digest "$scripts_dir/localcluster/postgres-start.sh")")" build_postgresql
            ;;
        *)
            echo "usage: $0 pause|pgpool|coredns|pgpool2_exporter|prometheus|postgresql|all ..." >&2
            exit 2
            ;;
    esac
}

[[ $# -gt 0 ]] || set -- all
if [[ ! -d "$vendor_dir" ]]; then
    # As scripts/tools.sh pgpool2_exporter does: the tests that need these images skip on 3.
    log "the vendored sources of the pgpool and pgpool2_exporter images are missing: expected $vendor_dir" \
        "(../shared/vendor beside the repository, or set PGPOOL_K8S_VENDOR)"
    exit 3
fi
if [[ "$(id -u)" -ne 0 ]]; then
    log "building images needs root (debootstrap, file ownership); run: sudo $0 $*"
    exit 1
fi
for name in "$@"; do
    if [[ "$name" == all ]]; then
        for each in pause pgpool coredns pgpool2_exporter prometheus postgresql; do image "$each"; done
    else
        image "$name"
    fi
done
