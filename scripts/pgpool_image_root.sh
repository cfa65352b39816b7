#!/usr/bin/env bash
# Builds the root filesystem of the pgpool/pgpool image for one Pgpool-II release and prints its path:
#   scripts/pgpool_image_root.sh 4.6.1|4.7.2
# As the image's Dockerfile.pgpool builds it (../shared/vendor/pgpool2_on_k8s-0134b5e/pgpool.docker/), on
# Debian 13 instead of Alpine, since no registry serves the image:
# - Pgpool-II's release tarball (as Debian's pool ships it, checked against a pinned SHA-256), patched
#   with the Dockerfile's fix_compile_error.patch where it still applies, configured with the
#   Dockerfile's `--prefix=/opt/pgpool-II --with-openssl` (so without memcached), compiled in a Debian 13
#   build root and installed into /opt/pgpool-II;
# - the runtime packages the Dockerfile adds (bash, the PostgreSQL client, openssl, sed, sudo, with its
#   two sudoers lines), user and group postgres with uid/gid 70, /var/run/pgpool and /var/run/postgresql
#   owned by it, and the image's entrypoint.sh and start.sh, unchanged, in /opt/pgpool-II/bin.
# The image's ENV, USER, ENTRYPOINT and CMD lines are not a file system's: read them from the Dockerfile.
# Built once per release and stamp into the cache ($PGPOOL_K8S_CACHE/roots), never into the repository.
# Needs root (debootstrap, chroot) and ../shared/vendor beside the repository (or PGPOOL_K8S_VENDOR, see
# scripts/env.sh). Progress and times on stderr.
set -euo pipefail

scripts_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)"
# shellcheck source=scripts/env.sh
source "$scripts_dir/env.sh"

log() { echo "[pgpool-image-root] $*" >&2; }

# Release -> SHA-256 of pgpool2_<release>.orig.tar.gz in Debian's pool. 4.6.1: from trixie's signed Sources
# index (source package 4.6.1-2). 4.7.2: the pool's file (forky has moved on to 4.7.3-1, whose source files
# the pool may no longer serve), the same digest as recorded by third parties that package it.
declare -A tarball_sha256=(
    [4.6.1]=0f8805d93bc40002c8019dc40ae03a71a3d144bd39f3dffe6fa01f7fc19bb8e8
    [4.7.2]=e72b9d0ff3620f7da7e33a58dda44b77919d056752dc9bd86b2985c4988d1938
)
release="${1:-}"
if [[ -z "$release" || -z "${tarball_sha256[$release]:-}" ]]; then
    (IFS='|'; echo "usage: $0 ${!tarball_sha256[*]}" >&2)
    exit 2
fi

suite=trixie
mirror="${PGPOOL_K8S_DEBIAN_MIRROR:-http://deb.debian.org/debian}"
docker_dir="$PGPOOL_K8S_VENDOR/pgpool2_on_k8s-0134b5e/pgpool.docker"
roots="$PGPOOL_K8S_CACHE/roots"
build_packages=gcc,make,bison,flex,file,patch,libc6-dev,libssl-dev,libpq-dev
runtime_packages=bash,postgresql-client,openssl,sed,sudo,hostname,ca-certificates
build_root="$roots/pgpool-build-$suite"
runtime_root="$roots/pgpool-runtime-$suite"
root="$roots/pgpool-image-$release"
stamp="$release ${tarball_sha256[$release]} $runtime_packages $(cat "$docker_dir"/{Dockerfile.pgpool,entrypoint.sh,start.sh,fix_compile_error.patch} 2>/dev/null | sha256sum | cut -c1-16) 1"

stamped() { [[ "$(cat "$1/.stamp" 2>/dev/null)" == "$2" ]]; }

if stamped "$root" "$stamp"; then
    echo "$root"
    exit 0
fi
if [[ ! -f "$docker_dir/Dockerfile.pgpool" ]]; then
    log "the image's build files are missing: expected $docker_dir (../shared/vendor beside the repository, or set PGPOOL_K8S_VENDOR)"
    exit 1
fi
if [[ "$(id -u)" -ne 0 ]]; then
    log "building a root needs root (debootstrap, chroot); run: sudo $0 $release"
    exit 1
fi
command -v debootstrap >/dev/null || "$scripts_dir/install_test_packages.sh"
mkdir -p "$roots"
exec 9>"$roots/pgpool-image.lock"  # one build at a time; whoever waited may find it built
flock 9
if stamped "$root" "$stamp"; then
    echo "$root"
    exit 0
fi

# debootstrap_once DIR PACKAGES: a minbase Debian root with PACKAGES (shared by every release), unless built.
debootstrap_once() {
    local dir="$1" packages="$2" start=$SECONDS
    stamped "$dir" "$suite $packages" && return 0
    rm -rf "$dir.building"
    log "debootstrap $suite (minbase + $packages) into $dir ..."
    if ! debootstrap --variant=minbase --include="$packages" "$suite" "$dir.building" "$mirror" > "$dir.log" 2>&1; then
        tail -n 20 "$dir.log" >&2
        log "debootstrap failed (full log: $dir.log)"
        exit 1
    fi
    rm -rf "$dir.building/var/cache/apt/archives"/*.deb "$dir.building/var/lib/apt/lists"/*_dists_*
    echo "$suite $packages" > "$dir.building/.stamp"
    rm -rf "$dir"
    mv "$dir.building" "$dir"
    log "debootstrap $suite ... done in $((SECONDS - start))s"
}

debootstrap_once "$build_root" "$build_packages"
debootstrap_once "$runtime_root" "$runtime_packages"

# Compile in the build root, install under a DESTDIR there (the prefix compiled in stays /opt/pgpool-II).
start=$SECONDS
work="/build/pgpool-$release"
rm -rf "${build_root:?}$work"
mkdir -p "$build_root$work"
tarball="$build_root$work/pgpool2_$release.orig.tar.gz"
curl -fsS -o "$tarball" "$mirror/pool/main/p/pgpool2/pgpool2_$release.orig.tar.gz"
if ! echo "${tarball_sha256[$release]}  $tarball" | sha256sum --check --status; then
    log "pgpool2_$release.orig.tar.gz from $mirror does not have the pinned SHA-256 ${tarball_sha256[$release]}"
    exit 1
fi
cp "$docker_dir/fix_compile_error.patch" "$build_root$work/"
log "compiling Pgpool-II $release (configure --prefix=/opt/pgpool-II --with-openssl) ..."
if ! chroot "$build_root" /bin/sh -ec "
    cd $work && mkdir src && tar -xzf pgpool2_$release.orig.tar.gz -C src --strip-components 1 && cd src
    # The Dockerfile's patch fixes a missing include that newer releases have fixed themselves.
    if patch -p1 --dry-run --forward < ../fix_compile_error.patch >/dev/null 2>&1; then patch -p1 < ../fix_compile_error.patch; fi
    ./configure --prefix=/opt/pgpool-II --with-openssl
    make -j $(nproc)
    make install DESTDIR=$work/dest" > "$root.build.log" 2>&1; then
    tail -n 30 "$root.build.log" >&2
    log "compiling Pgpool-II $release failed (full log: $root.build.log)"
    exit 1
fi
log "compiling Pgpool-II $release ... done in $((SECONDS - start))s"

building="$root.building"
rm -rf "$building"
cp -a "$runtime_root" "$building"
cp -a "$build_root$work/dest/opt/pgpool-II" "$building/opt/"
rm -rf "${build_root:?}$work"
install -m 0755 "$docker_dir/entrypoint.sh" "$docker_dir/start.sh" "$building/opt/pgpool-II/bin/"
# The Dockerfile's user, directories and sudoers lines (addgroup/adduser -S: system account, no home made).
chroot "$building" /bin/sh -ec '
    groupadd --system --gid 70 postgres
    useradd --system --uid 70 --gid postgres --no-create-home --home-dir /var/lib/pgsql --shell /bin/sh postgres
    mkdir -p /var/lib/pgsql /var/run/pgpool /var/run/postgresql
    chown -R postgres:postgres /var/lib/pgsql /var/run/pgpool /var/run/postgresql /opt/pgpool-II
    echo "postgres ALL=NOPASSWD: /sbin/ip" >> /etc/sudoers
    echo "postgres ALL=NOPASSWD: /usr/sbin/arping" >> /etc/sudoers'
version="$(chroot "$building" /opt/pgpool-II/bin/pgpool --version 2>&1)"
echo "$stamp" > "$building/.stamp"
rm -rf "$root"
mv "$building" "$root"
log "$version in $root ($(du -sh "$root" | cut -f1))"
echo "$root"
