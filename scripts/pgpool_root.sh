#!/usr/bin/env bash
# Builds a Debian 13 (trixie) root holding its pgpool2 (Pgpool-II 4.6) and the PostgreSQL client, and
# prints its path: the data plane runs the generated files on this Pgpool-II too, through chroot, so they
# are proven on both sides of the pgpool/pgpool image's 4.5 (Debian 12's own pgpool2 is 4.3).
# Built once per stamp into the cache (~/.cache/pgpool-k8s/roots), never into the repository. Needs root
# (debootstrap, chroot); progress and timings go to stderr.
set -euo pipefail

scripts_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)"
# shellcheck source=scripts/env.sh
source "$scripts_dir/env.sh"

suite=trixie
packages=pgpool2,postgresql-client
mirror="${PGPOOL_K8S_DEBIAN_MIRROR:-http://deb.debian.org/debian}"
root="$PGPOOL_K8S_CACHE/roots/$suite-pgpool2"
stamp="$suite $packages 1"

log() { echo "[pgpool-root] $*" >&2; }

built() { [[ -x "$root/usr/sbin/pgpool" && "$(cat "$root/.stamp" 2>/dev/null)" == "$stamp" ]]; }

if built; then
    echo "$root"
    exit 0
fi
if [[ "$(id -u)" -ne 0 ]]; then
    log "building the $suite root needs root (debootstrap, chroot); run: sudo $0"
    exit 1
fi
command -v debootstrap >/dev/null || "$scripts_dir/install_test_packages.sh"

mkdir -p "$(dirname "$root")"
# One build at a time; whoever waited finds it built.
exec 9>"$root.lock"
flock 9
if built; then
    echo "$root"
    exit 0
fi

start=$SECONDS
building="$root.building"
rm -rf "$building"
log "debootstrap $suite (minbase + $packages) from $mirror into $root ..."
if ! debootstrap --variant=minbase --include="$packages" "$suite" "$building" "$mirror" > "$root.log" 2>&1; then
    tail -n 20 "$root.log" >&2
    log "debootstrap failed (full log: $root.log)"
    exit 1
fi
rm -rf "$building/var/cache/apt/archives"/*.deb
version="$(chroot "$building" /usr/sbin/pgpool --version 2>&1)"
echo "$stamp" > "$building/.stamp"
rm -rf "$root"
mv "$building" "$root"
log "$version in $root ($(du -sh "$root" | cut -f1)), built in $((SECONDS - start))s"
echo "$root"
